//! The control plane's own configuration: a TOML file, overridden by `WEIR_*` environment
//! variables. Everything else (providers, models, keys, policies) lives in Postgres.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why the settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        source: Box<toml::de::Error>,
    },
    #[error("{name}={value:?} is not valid: {reason}")]
    Env {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error("{name}: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("no data-plane token: set WEIR_DATAPLANE_TOKEN (or auth.dataplane_token); data planes must authenticate to receive config")]
    NoDataplaneToken,
}

/// The resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Postgres URL; `None` runs the embedded cluster under `data_dir`.
    pub database_url: Option<String>,
    /// Where the embedded cluster and other local state live.
    pub data_dir: PathBuf,
    /// gRPC listen address (config stream, log ingest, admin).
    pub grpc_listen: SocketAddr,
    /// HTTP listen address: the admin API as JSON (`/api/v1/admin/...`), its OpenAPI document,
    /// the feedback endpoint for gateway keys, and `/healthz`.
    pub http_listen: SocketAddr,
    /// A platform-admin token to accept (its hash is stored at start).
    pub admin_token: Option<String>,
    /// The fleet-wide token data planes present on the config and ingest streams (any group).
    pub dataplane_token: String,
    /// Bootstrap tokens that admit only nodes of one fleet group, by group.
    pub group_tokens: std::collections::BTreeMap<String, String>,
    /// This replica's name in logs and in the `dataplanes` table.
    pub replica_id: String,
    /// PEM certificate chain and key: when both are set, gRPC (config stream, log ingest,
    /// admin) is served over TLS only.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Key sealing provider secrets stored in Postgres (64 hex digits); without it, the
    /// embedded cluster's data dir holds a generated one.
    pub secrets_key: Option<Hidden>,
    /// Request-log retention: whether the schedule runs, how long logs stay, when it runs.
    pub purge: crate::purge_policy::PurgePolicy,
    /// Where providers' cost reports are fetched from, and which environment variables hold
    /// their admin keys (`[reconcile.openai]`, `WEIR_RECONCILE_OPENAI_URL` / `_KEY_ENV`, and
    /// the same for Anthropic).
    pub reconcile: crate::reconcile::fetch::Sources,
}

/// A setting whose value never appears in debug output.
#[derive(Clone)]
pub struct Hidden(pub String);

impl std::fmt::Debug for Hidden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(hidden)")
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    server: ServerSection,
    #[serde(default)]
    database: DatabaseSection,
    #[serde(default)]
    auth: AuthSection,
    #[serde(default)]
    request_logging: RequestLoggingSection,
    #[serde(default)]
    reconcile: ReconcileSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReconcileSection {
    #[serde(default)]
    openai: SourceSection,
    #[serde(default)]
    anthropic: SourceSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceSection {
    base_url: Option<String>,
    key_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestLoggingSection {
    #[serde(default)]
    purge: PurgeSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeSection {
    enabled: Option<bool>,
    retention: Option<String>,
    schedule: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSection {
    grpc_listen: Option<SocketAddr>,
    http_listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    replica_id: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DatabaseSection {
    url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthSection {
    admin_token: Option<String>,
    dataplane_token: Option<String>,
    secrets_key: Option<String>,
    #[serde(default)]
    group_tokens: std::collections::BTreeMap<String, String>,
}

/// Default HTTP address (admin API as JSON).
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8090";

/// Default gRPC address.
pub const DEFAULT_GRPC_LISTEN: &str = "127.0.0.1:50051";

impl Settings {
    /// Loads `path` (if given) and applies the environment on top.
    pub fn load(path: Option<&Path>) -> Result<Self, SettingsError> {
        let file = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| SettingsError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                toml::from_str(&text).map_err(|e| SettingsError::Parse {
                    path: p.display().to_string(),
                    source: Box::new(e),
                })?
            }
            None => File::default(),
        };
        Self::resolve(file, |k| std::env::var(k).ok())
    }

    fn resolve(file: File, env: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let grpc_listen = match env("WEIR_GRPC_LISTEN") {
            Some(v) => v
                .parse()
                .map_err(|e: std::net::AddrParseError| SettingsError::Env {
                    name: "WEIR_GRPC_LISTEN",
                    value: v,
                    reason: e.to_string(),
                })?,
            None => file
                .server
                .grpc_listen
                .unwrap_or_else(|| DEFAULT_GRPC_LISTEN.parse().expect("valid default")),
        };
        let http_listen = match env("WEIR_HTTP_LISTEN") {
            Some(v) => v
                .parse()
                .map_err(|e: std::net::AddrParseError| SettingsError::Env {
                    name: "WEIR_HTTP_LISTEN",
                    value: v,
                    reason: e.to_string(),
                })?,
            None => file
                .server
                .http_listen
                .unwrap_or_else(|| DEFAULT_HTTP_LISTEN.parse().expect("valid default")),
        };
        let purge = {
            let p = file.request_logging.purge;
            let enabled = match env("WEIR_PURGE_ENABLED") {
                Some(v) => match v.as_str() {
                    "true" | "1" => true,
                    "false" | "0" | "" => false,
                    _ => {
                        return Err(SettingsError::Env {
                            name: "WEIR_PURGE_ENABLED",
                            value: v,
                            reason: "use true or false".into(),
                        })
                    }
                },
                None => p.enabled.unwrap_or(false),
            };
            let retention = env("WEIR_PURGE_RETENTION")
                .or(p.retention)
                .unwrap_or_else(|| "7d".into())
                .parse()
                .map_err(|reason| SettingsError::Invalid {
                    name: "request_logging.purge.retention (WEIR_PURGE_RETENTION)",
                    reason,
                })?;
            let schedule = env("WEIR_PURGE_SCHEDULE")
                .or(p.schedule)
                .unwrap_or_else(|| crate::purge_policy::DEFAULT_SCHEDULE.into())
                .parse()
                .map_err(|reason| SettingsError::Invalid {
                    name: "request_logging.purge.schedule (WEIR_PURGE_SCHEDULE)",
                    reason,
                })?;
            crate::purge_policy::PurgePolicy {
                enabled,
                retention,
                schedule,
            }
        };
        let reconcile = {
            let d = crate::reconcile::fetch::Sources::default();
            let source = |s: SourceSection,
                          default: crate::reconcile::fetch::Source,
                          url_var: &str,
                          key_var: &str| crate::reconcile::fetch::Source {
                base_url: env(url_var)
                    .or(s.base_url)
                    .filter(|v| !v.is_empty())
                    .unwrap_or(default.base_url),
                key_env: env(key_var)
                    .or(s.key_env)
                    .filter(|v| !v.is_empty())
                    .unwrap_or(default.key_env),
            };
            crate::reconcile::fetch::Sources {
                openai: source(
                    file.reconcile.openai,
                    d.openai,
                    "WEIR_RECONCILE_OPENAI_URL",
                    "WEIR_RECONCILE_OPENAI_KEY_ENV",
                ),
                anthropic: source(
                    file.reconcile.anthropic,
                    d.anthropic,
                    "WEIR_RECONCILE_ANTHROPIC_URL",
                    "WEIR_RECONCILE_ANTHROPIC_KEY_ENV",
                ),
            }
        };
        let dataplane_token = env("WEIR_DATAPLANE_TOKEN")
            .or(file.auth.dataplane_token)
            .filter(|t| !t.is_empty())
            .ok_or(SettingsError::NoDataplaneToken)?;
        let mut group_tokens = file.auth.group_tokens;
        if let Some(v) = env("WEIR_GROUP_TOKENS") {
            for pair in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (group, token) = pair.split_once('=').ok_or_else(|| SettingsError::Env {
                    name: "WEIR_GROUP_TOKENS",
                    value: "(hidden)".into(),
                    reason: "expected group=token[,group=token…]".into(),
                })?;
                group_tokens.insert(group.trim().to_string(), token.trim().to_string());
            }
        }
        if let Some((g, _)) = group_tokens
            .iter()
            .find(|(g, t)| g.is_empty() || t.is_empty())
        {
            return Err(SettingsError::Env {
                name: "WEIR_GROUP_TOKENS",
                value: g.clone(),
                reason: "a group token needs a group name and a token".into(),
            });
        }
        let tls_cert = env("WEIR_TLS_CERT")
            .map(PathBuf::from)
            .or(file.server.tls_cert);
        let tls_key = env("WEIR_TLS_KEY")
            .map(PathBuf::from)
            .or(file.server.tls_key);
        let tls = match (tls_cert, tls_key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(SettingsError::Env {
                    name: "WEIR_TLS_CERT",
                    value: String::new(),
                    reason: "TLS needs both a certificate (WEIR_TLS_CERT) and a key (WEIR_TLS_KEY)"
                        .into(),
                })
            }
        };
        Ok(Settings {
            tls,
            secrets_key: env("WEIR_SECRETS_KEY")
                .or(file.auth.secrets_key)
                .filter(|k| !k.is_empty())
                .map(Hidden),
            group_tokens,
            database_url: env("WEIR_DATABASE_URL")
                .or(file.database.url)
                .filter(|u| !u.is_empty()),
            data_dir: env("WEIR_DATA_DIR")
                .map(PathBuf::from)
                .or(file.server.data_dir)
                .unwrap_or_else(|| PathBuf::from(".weir")),
            grpc_listen,
            http_listen,
            purge,
            reconcile,
            admin_token: env("WEIR_ADMIN_TOKEN")
                .or(file.auth.admin_token)
                .filter(|t| !t.is_empty()),
            dataplane_token,
            replica_id: env("WEIR_REPLICA_ID")
                .or(file.server.replica_id)
                .unwrap_or_else(default_replica_id),
        })
    }
}

fn default_replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "control-plane".into());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn env_overrides_file() {
        let file: File = toml::from_str(
            "[server]\ngrpc_listen = \"0.0.0.0:1\"\n[auth]\ndataplane_token = \"f\"\n",
        )
        .unwrap();
        let s = Settings::resolve(
            file,
            env(&[
                ("WEIR_GRPC_LISTEN", "127.0.0.1:2"),
                ("WEIR_DATAPLANE_TOKEN", "e"),
            ]),
        )
        .unwrap();
        assert_eq!(s.grpc_listen.port(), 2);
        assert_eq!(s.dataplane_token, "e");
        assert!(s.database_url.is_none());
        assert_eq!(s.data_dir, PathBuf::from(".weir"));
    }

    #[test]
    fn reconcile_sources_default_to_the_providers_and_take_file_then_env() {
        let s = Settings::resolve(File::default(), env(&[("WEIR_DATAPLANE_TOKEN", "t")])).unwrap();
        assert_eq!(s.reconcile, crate::reconcile::fetch::Sources::default());
        assert_eq!(s.reconcile.openai.key_env, "OPENAI_ADMIN_KEY");
        let file: File = toml::from_str(
            "[auth]\ndataplane_token = \"f\"\n[reconcile.openai]\nkey_env = \"OAI_ADMIN\"\n\
             [reconcile.anthropic]\nbase_url = \"https://proxy.example/anthropic\"\n",
        )
        .unwrap();
        let s = Settings::resolve(
            file,
            env(&[("WEIR_RECONCILE_ANTHROPIC_KEY_ENV", "ANT_ADMIN")]),
        )
        .unwrap();
        assert_eq!(s.reconcile.openai.key_env, "OAI_ADMIN");
        assert_eq!(s.reconcile.openai.base_url, "https://api.openai.com");
        assert_eq!(
            s.reconcile.anthropic.base_url,
            "https://proxy.example/anthropic"
        );
        assert_eq!(s.reconcile.anthropic.key_env, "ANT_ADMIN");
        assert!(toml::from_str::<File>("[reconcile.azure]\nkey_env = \"X\"\n").is_err());
    }

    #[test]
    fn the_secrets_key_is_read_and_never_printed() {
        let key = "ab".repeat(32);
        let s = Settings::resolve(
            File::default(),
            env(&[("WEIR_DATAPLANE_TOKEN", "t"), ("WEIR_SECRETS_KEY", &key)]),
        )
        .unwrap();
        assert_eq!(s.secrets_key.as_ref().unwrap().0, key);
        assert!(!format!("{s:?}").contains(&key));
        let file: File =
            toml::from_str("[auth]\ndataplane_token = \"f\"\nsecrets_key = \"k\"\n").unwrap();
        let s = Settings::resolve(file, env(&[])).unwrap();
        assert_eq!(s.secrets_key.unwrap().0, "k");
    }

    #[test]
    fn group_tokens_from_file_and_env() {
        let file: File = toml::from_str(
            "[auth]\ndataplane_token = \"f\"\n[auth.group_tokens]\npublic = \"p\"\n",
        )
        .unwrap();
        let s =
            Settings::resolve(file, env(&[("WEIR_GROUP_TOKENS", "internal=i, edge=e")])).unwrap();
        assert_eq!(s.group_tokens.len(), 3);
        assert_eq!(s.group_tokens["internal"], "i");
        let err = Settings::resolve(
            File::default(),
            env(&[
                ("WEIR_DATAPLANE_TOKEN", "t"),
                ("WEIR_GROUP_TOKENS", "nogroup"),
            ]),
        )
        .unwrap_err();
        assert!(
            !err.to_string().contains("nogroup"),
            "token values are never echoed: {err}"
        );
    }

    #[test]
    fn purge_policy_from_file_and_env_and_bad_values_refused() {
        let file: File = toml::from_str(
            "[auth]\ndataplane_token = \"f\"\n[request_logging.purge]\nenabled = true\nretention = \"3d\"\nschedule = \"30 2 * * *\"\n",
        )
        .unwrap();
        let s = Settings::resolve(file, env(&[])).unwrap();
        assert!(s.purge.enabled);
        assert_eq!(s.purge.retention.name(), "3d");
        assert_eq!(s.purge.schedule.text(), "30 2 * * *");
        let s = Settings::resolve(File::default(), env(&[("WEIR_DATAPLANE_TOKEN", "t")])).unwrap();
        assert!(!s.purge.enabled, "off by default");
        assert_eq!(s.purge.retention.name(), "7d");
        let cases = [
            ("WEIR_PURGE_RETENTION", "30d", "1d, 3d or 7d"),
            (
                "WEIR_PURGE_SCHEDULE",
                "*/10 * * * *",
                "more than once a day",
            ),
            ("WEIR_PURGE_SCHEDULE", "0 3 * *", "5-field"),
            ("WEIR_PURGE_ENABLED", "yes", "true or false"),
        ];
        for (name, value, want) in cases {
            let err = Settings::resolve(
                File::default(),
                env(&[("WEIR_DATAPLANE_TOKEN", "t"), (name, value)]),
            )
            .unwrap_err()
            .to_string();
            assert!(
                err.contains(want) && err.contains(name),
                "{name}={value}: {err}"
            );
        }
    }

    #[test]
    fn missing_dataplane_token_is_an_error() {
        let err = Settings::resolve(File::default(), env(&[])).unwrap_err();
        assert!(err.to_string().contains("WEIR_DATAPLANE_TOKEN"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = Settings::resolve(
            File::default(),
            env(&[("WEIR_GRPC_LISTEN", "nope"), ("WEIR_DATAPLANE_TOKEN", "t")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("WEIR_GRPC_LISTEN"), "{err}");
        let err = toml::from_str::<File>("[server]\nbogus = 1\n").unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }
}
