//! The data plane's whole configuration as one immutable value.
//!
//! A request loads the current snapshot once (`ArcSwap::load_full`) and uses that version
//! throughout; a new version is built beside it and swapped in atomically, so requests in flight
//! never see a mix and never wait.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use weir_proto::config::{discovery_response::Resources, ResourceType, RoutePolicy};
use weir_proto::pricing::PriceSheet;
use weir_proto::validate::{self, Invalid};

use crate::limits::SubjectLimits;
use crate::otlp_export::{ExportSettings, Protocol};
use crate::telemetry_sinks::SinkConfig;

/// A provider ready to send to.
#[derive(Debug)]
pub struct Provider {
    /// Its key.
    pub key: String,
    /// Wire protocol ("openai" or "anthropic").
    pub kind: String,
    /// Base URL without a trailing slash.
    pub base_url: String,
    /// The upstream credential header, resolved from the node's environment; marked sensitive.
    pub auth: Option<(HeaderName, HeaderValue)>,
    /// Headers added to every upstream request.
    pub extra_headers: HeaderMap,
    /// Multiplies computed costs of requests it serves, parts per million.
    pub price_multiplier_ppm: u32,
}

/// One target of a route.
#[derive(Debug, Clone)]
pub struct Target {
    /// Provider key, looked up in the same snapshot.
    pub provider_key: String,
    /// Model name sent upstream.
    pub upstream_model: String,
    /// Relative weight.
    pub weight: u32,
}

/// A model key's route.
#[derive(Debug)]
pub struct Route {
    /// The model key clients send.
    pub model_key: String,
    /// Targets in their configured (fallback) order.
    pub targets: Vec<Target>,
    /// Operations served; empty means all.
    pub operations: HashSet<String>,
    /// Retries, fallback and timeouts as configured (defaults applied by `route_plan`).
    pub policy: RoutePolicy,
}

impl Route {
    /// Whether the model serves `operation`.
    pub fn serves(&self, operation: &str) -> bool {
        self.operations.is_empty() || self.operations.contains(operation)
    }
}

/// A gateway key as the node knows it.
#[derive(Debug)]
pub struct KeyInfo {
    /// Key id.
    pub id: String,
    /// Display prefix, safe to show in errors.
    pub display_prefix: String,
    /// Attributed user.
    pub user_id: String,
    /// Team.
    pub team_id: String,
    /// Owning service account, if any.
    pub service_account_id: String,
    /// `None` means every model.
    pub allowed_models: Option<HashSet<String>>,
    /// Unix ms; 0 means never.
    pub expires_at_ms: i64,
    /// Whether the owner wants request logs.
    pub request_logging_enabled: bool,
    /// Multiplies computed costs of its requests, parts per million.
    pub price_multiplier_ppm: u32,
}

/// What to capture of payloads.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `disabled` | `summary_only` | `redacted_payloads`.
    pub capture_mode: String,
    /// Cap on the stored request payload.
    pub request_max_bytes: u32,
    /// Cap on the stored response payload.
    pub response_max_bytes: u32,
    /// Events kept of a stream.
    pub stream_max_events: u32,
    /// Admin redaction paths, parsed.
    pub redaction_paths: Vec<weir_proto::redaction_path::RedactionPath>,
    /// The config version this policy came with.
    pub version: String,
}

impl Policy {
    /// Whether payloads are stored.
    pub fn captures_payloads(&self) -> bool {
        self.capture_mode == "redacted_payloads"
    }
}

/// Everything a request needs, at one version per resource type.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Version held per resource type.
    pub versions: HashMap<i32, String>,
    /// Providers by key.
    pub providers: HashMap<String, Arc<Provider>>,
    /// Routes by model key.
    pub routes: HashMap<String, Arc<Route>>,
    /// Keys by SHA-256 of the key. A persistent map: a new snapshot shares all but the changed
    /// entries with the old one, so applying a one-key delta to 100,000 keys costs O(log n), not
    /// a copy.
    pub keys: imbl::HashMap<[u8; 32], Arc<KeyInfo>>,
    /// Key hashes by key id, for deltas that remove keys by id.
    pub key_hashes: imbl::HashMap<String, [u8; 32]>,
    /// Payload policy.
    pub policy: Option<Arc<Policy>>,
    /// Limits by subject (`key:<id>`, `user:<id>`, `team:<id>`).
    pub limits: HashMap<String, Arc<SubjectLimits>>,
    /// Price versions by model key: the one in force when the set came and any later ones,
    /// oldest first.
    pub prices: HashMap<String, Arc<PriceVersions>>,
    /// OTLP sinks pushed by the control plane.
    pub sinks: Arc<Vec<SinkConfig>>,
}

/// A model's price versions: (valid from, Unix ms; the sheet), oldest first.
pub type PriceVersions = Vec<(i64, Arc<PriceSheet>)>;

/// Every resource type a node subscribes to: the required ones, then the optional telemetry
/// sinks (a node serves before any sink arrives).
pub const SUBSCRIBED: [ResourceType; 7] = [
    ResourceType::Providers,
    ResourceType::Routes,
    ResourceType::ApiKeys,
    ResourceType::PayloadPolicy,
    ResourceType::Limits,
    ResourceType::Pricing,
    ResourceType::TelemetrySinks,
];

/// The resource types a node must hold before it serves.
pub const REQUIRED: [ResourceType; 6] = [
    ResourceType::Providers,
    ResourceType::Routes,
    ResourceType::ApiKeys,
    ResourceType::PayloadPolicy,
    ResourceType::Limits,
    ResourceType::Pricing,
];

impl Snapshot {
    /// Whether every required type has arrived.
    pub fn is_complete(&self) -> bool {
        REQUIRED
            .iter()
            .all(|t| self.versions.contains_key(&(*t as i32)))
    }

    /// The price version of `model` in force at `now_ms`.
    pub fn price_at(&self, model: &str, now_ms: i64) -> Option<Arc<PriceSheet>> {
        let versions = self.prices.get(model)?;
        versions
            .iter()
            .rev()
            .find(|(from, _)| *from <= now_ms)
            .map(|(_, sheet)| sheet.clone())
    }

    /// The version held for `t`, or "" when none.
    pub fn version(&self, t: ResourceType) -> &str {
        self.versions.get(&(t as i32)).map_or("", String::as_str)
    }

    /// A new snapshot with `resources` at `version` replacing the current set of its type; an
    /// error means the node must NACK and keep `self`.
    pub fn with(
        &self,
        version: &str,
        resources: &Resources,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Snapshot, Invalid> {
        let mut next = Snapshot {
            versions: self.versions.clone(),
            providers: self.providers.clone(),
            routes: self.routes.clone(),
            keys: self.keys.clone(),
            key_hashes: self.key_hashes.clone(),
            policy: self.policy.clone(),
            limits: self.limits.clone(),
            prices: self.prices.clone(),
            sinks: self.sinks.clone(),
        };
        let t = match resources {
            Resources::Providers(set) => {
                let mut providers = HashMap::with_capacity(set.providers.len());
                for p in &set.providers {
                    validate::validate_provider(p)?;
                    providers.insert(p.key.clone(), Arc::new(compile_provider(p, env)?));
                }
                next.providers = providers;
                ResourceType::Providers
            }
            Resources::Routes(set) => {
                let mut routes = HashMap::with_capacity(set.routes.len());
                for r in &set.routes {
                    // Providers may arrive after routes on a fresh stream; the handler answers
                    // 502 for a target whose provider this node does not hold.
                    validate::validate_route(r, |_| true)?;
                    routes.insert(
                        r.model_key.clone(),
                        Arc::new(Route {
                            model_key: r.model_key.clone(),
                            targets: r
                                .targets
                                .iter()
                                .map(|t| Target {
                                    provider_key: t.provider_key.clone(),
                                    upstream_model: t.upstream_model.clone(),
                                    weight: t.weight,
                                })
                                .collect(),
                            operations: r.operations.iter().cloned().collect(),
                            policy: r.policy.clone().unwrap_or_default(),
                        }),
                    );
                }
                next.routes = routes;
                ResourceType::Routes
            }
            Resources::ApiKeys(set) => {
                let (keys, hashes) =
                    apply_keys(imbl::HashMap::new(), imbl::HashMap::new(), &[], &set.keys)?;
                next.keys = keys;
                next.key_hashes = hashes;
                ResourceType::ApiKeys
            }
            Resources::ApiKeyDelta(d) => {
                if d.base_version != self.version(ResourceType::ApiKeys) {
                    return Err(Invalid {
                        code: "delta_base_mismatch",
                        message: format!(
                            "key delta is based on version {:?}; this node holds {:?}",
                            d.base_version,
                            self.version(ResourceType::ApiKeys)
                        ),
                    });
                }
                let (keys, hashes) = apply_keys(
                    self.keys.clone(),
                    self.key_hashes.clone(),
                    &d.removed_ids,
                    &d.upserts,
                )?;
                next.keys = keys;
                next.key_hashes = hashes;
                ResourceType::ApiKeys
            }
            Resources::Limits(set) => {
                let mut limits = HashMap::with_capacity(set.limits.len());
                for l in &set.limits {
                    let nonzero = |n: u64| (n > 0).then_some(n);
                    limits.insert(
                        l.subject.clone(),
                        Arc::new(SubjectLimits {
                            requests_per_minute: nonzero(l.requests_per_minute),
                            tokens_per_minute: nonzero(l.tokens_per_minute),
                            budget_pusd: l.budget_pusd,
                            fleet_spent_pusd: l.fleet_spent_pusd,
                            spent_as_of_ms: l.spent_as_of_unix_ms,
                        }),
                    );
                }
                next.limits = limits;
                ResourceType::Limits
            }
            Resources::Pricing(set) => {
                let mut prices: HashMap<String, Vec<(i64, Arc<PriceSheet>)>> = HashMap::new();
                for p in &set.prices {
                    let sheet = PriceSheet::from_config(p).map_err(|e| Invalid {
                        code: "invalid_price",
                        message: format!("price {} of {}: {e}", p.price_id, p.model_key),
                    })?;
                    prices
                        .entry(p.model_key.clone())
                        .or_default()
                        .push((p.valid_from_unix_ms, Arc::new(sheet)));
                }
                next.prices = prices
                    .into_iter()
                    .map(|(k, mut v)| {
                        v.sort_by_key(|(from, _)| *from);
                        (k, Arc::new(v))
                    })
                    .collect();
                ResourceType::Pricing
            }
            Resources::TelemetrySinks(set) => {
                let mut sinks = Vec::with_capacity(set.sinks.len());
                for s in &set.sinks {
                    validate::validate_telemetry_sink(s)?;
                    sinks.push(compile_sink(s, env)?);
                }
                next.sinks = Arc::new(sinks);
                ResourceType::TelemetrySinks
            }
            Resources::PayloadPolicy(p) => {
                validate::validate_payload_policy(p)?;
                next.policy = Some(Arc::new(Policy {
                    capture_mode: p.capture_mode.clone(),
                    request_max_bytes: p.request_max_bytes,
                    response_max_bytes: p.response_max_bytes,
                    stream_max_events: p.stream_max_events,
                    redaction_paths: weir_proto::redaction_path::validate_all(&p.redaction_paths)
                        .map_err(|e| Invalid {
                        code: "invalid_redaction_path",
                        message: e.to_string(),
                    })?,
                    version: version.to_string(),
                }));
                ResourceType::PayloadPolicy
            }
        };
        next.versions.insert(t as i32, version.to_string());
        Ok(next)
    }
}

type KeyMaps = (
    imbl::HashMap<[u8; 32], Arc<KeyInfo>>,
    imbl::HashMap<String, [u8; 32]>,
);

/// Removes keys by id, then adds or replaces keys.
fn apply_keys(
    mut keys: imbl::HashMap<[u8; 32], Arc<KeyInfo>>,
    mut hashes: imbl::HashMap<String, [u8; 32]>,
    removed_ids: &[String],
    upserts: &[weir_proto::config::ApiKey],
) -> Result<KeyMaps, Invalid> {
    for id in removed_ids {
        if let Some(h) = hashes.remove(id) {
            keys.remove(&h);
        }
    }
    for k in upserts {
        let hash: [u8; 32] = k.key_hash.as_slice().try_into().map_err(|_| Invalid {
            code: "invalid_key_hash",
            message: format!(
                "key {} has a {}-byte hash; expected 32",
                k.id,
                k.key_hash.len()
            ),
        })?;
        if let Some(old) = hashes.insert(k.id.clone(), hash) {
            keys.remove(&old);
        }
        keys.insert(
            hash,
            Arc::new(KeyInfo {
                id: k.id.clone(),
                display_prefix: k.display_prefix.clone(),
                user_id: k.user_id.clone(),
                team_id: k.team_id.clone(),
                service_account_id: k.owner_service_account_id.clone(),
                allowed_models: (!k.allowed_models.is_empty())
                    .then(|| k.allowed_models.iter().cloned().collect()),
                expires_at_ms: k.expires_at_unix_ms,
                request_logging_enabled: k.request_logging_enabled,
                price_multiplier_ppm: k
                    .price_multiplier_ppm
                    .unwrap_or(weir_proto::pricing::PPM_ONE),
            }),
        );
    }
    Ok((keys, hashes))
}

fn compile_sink(
    s: &weir_proto::config::TelemetrySink,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SinkConfig, Invalid> {
    let mut headers = Vec::new();
    for (name, var) in &s.headers_from_env {
        // Like a provider's secret: only this node knows its environment, so a missing value is
        // a NACK, not a collector rejecting every export later.
        let value = env(var).filter(|v| !v.is_empty()).ok_or_else(|| Invalid {
            code: "missing_secret",
            message: format!(
                "telemetry sink {:?} needs environment variable {var} on this node, and it is not set",
                s.name
            ),
        })?;
        let mut v = HeaderValue::from_str(&value).map_err(|_| Invalid {
            code: "invalid_secret",
            message: format!(
                "telemetry sink {:?}: the value of {var} is not a valid header value",
                s.name
            ),
        })?;
        v.set_sensitive(true);
        let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| Invalid {
            code: "invalid_header",
            message: format!("telemetry sink {:?}: {name:?} is not a header name", s.name),
        })?;
        headers.push((n, v));
    }
    let (mut endpoint, mut protocol) = (
        s.endpoint.clone(),
        if s.protocol == "http/protobuf" {
            Protocol::HttpProtobuf
        } else {
            Protocol::Grpc
        },
    );
    let (mut new_root, mut resource) = (s.new_root, Vec::new());
    if s.kind != "otlp" {
        // A back-end preset: endpoint, headers and resource attributes from its definition.
        let e = weir_proto::sink_presets::expand(s, env)?;
        endpoint = e.endpoint;
        protocol = Protocol::HttpProtobuf;
        new_root |= e.new_root;
        resource = e.resource;
        for (name, value) in e.headers {
            let mut v = HeaderValue::from_str(&value).map_err(|_| Invalid {
                code: "invalid_secret",
                message: format!(
                    "telemetry sink {:?}: header {name} would not be a valid header value",
                    s.name
                ),
            })?;
            v.set_sensitive(true);
            let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| Invalid {
                code: "invalid_header",
                message: format!("telemetry sink {:?}: {name:?} is not a header name", s.name),
            })?;
            headers.push((n, v));
        }
    }
    let metrics_endpoint = crate::otlp_export::metrics_endpoint_for(&endpoint, protocol);
    Ok(SinkConfig {
        name: s.name.clone(),
        metrics: s.metrics,
        capture_content: s.capture_content,
        legacy_attributes: s.legacy_attributes,
        new_root,
        resource,
        settings: ExportSettings {
            endpoint,
            protocol,
            headers,
            sample_ratio: s.sample_ratio,
            service_name: "weir-data-plane".into(),
            timeout: std::time::Duration::from_secs(10),
            metrics_endpoint,
            metrics_interval: std::time::Duration::from_secs(60),
        },
    })
}

fn compile_provider(
    p: &weir_proto::config::Provider,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Provider, Invalid> {
    let auth = if p.api_key_env.is_empty() && p.api_key.is_empty() {
        None
    } else {
        let secret = if !p.api_key.is_empty() {
            p.api_key.clone()
        } else {
            // Only this node knows its environment: a missing secret is a NACK, not a silent
            // 401 from the upstream later.
            env(&p.api_key_env)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| Invalid {
                    code: "missing_secret",
                    message: format!(
                        "provider {:?} needs environment variable {} on this node, and it is not set",
                        p.key, p.api_key_env
                    ),
                })?
        };
        let (name, value) = match (p.auth_header.as_str(), p.kind.as_str()) {
            ("", "anthropic") => (HeaderName::from_static("x-api-key"), secret),
            ("", _) => (http::header::AUTHORIZATION, format!("Bearer {secret}")),
            (custom, _) => (
                HeaderName::from_bytes(custom.as_bytes()).map_err(|_| Invalid {
                    code: "invalid_header",
                    message: format!(
                        "provider {:?}: auth_header {custom:?} is not a header name",
                        p.key
                    ),
                })?,
                secret,
            ),
        };
        let mut value = HeaderValue::from_str(&value).map_err(|_| Invalid {
            code: "invalid_secret",
            message: format!(
                "provider {:?}: its secret ({}) is not a valid header value",
                p.key,
                if p.api_key.is_empty() {
                    p.api_key_env.as_str()
                } else {
                    "stored by the control plane"
                }
            ),
        })?;
        value.set_sensitive(true);
        Some((name, value))
    };
    let mut extra_headers = HeaderMap::new();
    for (k, v) in &p.extra_headers {
        // validate_provider already checked both parse.
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            extra_headers.insert(k, v);
        }
    }
    Ok(Provider {
        key: p.key.clone(),
        kind: p.kind.clone(),
        base_url: p.base_url.trim_end_matches('/').to_string(),
        auth,
        extra_headers,
        price_multiplier_ppm: p
            .price_multiplier_ppm
            .unwrap_or(weir_proto::pricing::PPM_ONE),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_proto::config::{self as cfg};

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn providers(kind: &str, env: &str) -> Resources {
        Resources::Providers(cfg::ProviderSet {
            providers: vec![cfg::Provider {
                key: "p".into(),
                kind: kind.into(),
                base_url: "http://127.0.0.1:1/v1/".into(),
                api_key_env: env.into(),
                extra_headers: Default::default(),
                auth_header: String::new(),
                api_key: String::new(),
                price_multiplier_ppm: None,
            }],
        })
    }

    #[test]
    fn applies_and_versions_each_type() {
        let s = Snapshot::default();
        assert!(!s.is_complete());
        let s = s.with("1", &providers("openai", ""), &no_env).unwrap();
        assert_eq!(s.version(ResourceType::Providers), "1");
        assert_eq!(s.providers["p"].base_url, "http://127.0.0.1:1/v1");
        let s = s
            .with(
                "7",
                &Resources::Routes(cfg::RouteSet {
                    routes: vec![cfg::Route {
                        model_key: "m".into(),
                        targets: vec![cfg::Target {
                            provider_key: "p".into(),
                            upstream_model: "up".into(),
                            weight: 1,
                        }],
                        ..Default::default()
                    }],
                }),
                &no_env,
            )
            .unwrap();
        assert_eq!(s.routes["m"].targets[0].upstream_model, "up");
        assert_eq!(s.version(ResourceType::Providers), "1");
        assert_eq!(s.version(ResourceType::Routes), "7");
    }

    #[test]
    fn key_deltas_apply_on_their_base_only() {
        let key = |id: &str, secret: &str| cfg::ApiKey {
            id: id.into(),
            key_hash: weir_proto::api_key::hash(secret).to_vec(),
            ..Default::default()
        };
        let full = Resources::ApiKeys(cfg::ApiKeySet {
            keys: vec![key("a", "sa"), key("b", "sb")],
        });
        let s = Snapshot::default().with("5", &full, &no_env).unwrap();
        assert_eq!(s.keys.len(), 2);
        let delta = Resources::ApiKeyDelta(cfg::ApiKeyDelta {
            base_version: "5".into(),
            upserts: vec![key("c", "sc")],
            removed_ids: vec!["a".into()],
        });
        let s2 = s.with("6", &delta, &no_env).unwrap();
        let hashes: HashSet<[u8; 32]> = s2.keys.keys().copied().collect();
        let want: HashSet<[u8; 32]> = ["sb", "sc"]
            .iter()
            .map(|k| weir_proto::api_key::hash(k))
            .collect();
        assert_eq!(hashes, want);
        assert_eq!(s2.version(ResourceType::ApiKeys), "6");
        // The same delta on another base is refused.
        assert_eq!(
            s2.with("7", &delta, &no_env).unwrap_err().code,
            "delta_base_mismatch"
        );
        // Other types keep the keys.
        let s3 = s2.with("1", &providers("openai", ""), &no_env).unwrap();
        assert_eq!(s3.keys.len(), 2);
    }

    #[test]
    fn node_only_problems_are_nacks() {
        let s = Snapshot::default();
        let e = s
            .with("1", &providers("openai", "WEIR_TEST_UNSET_VAR"), &no_env)
            .unwrap_err();
        assert_eq!(e.code, "missing_secret");
        assert!(e.message.contains("WEIR_TEST_UNSET_VAR"));
        let e = s.with("1", &providers("bedrock", ""), &no_env).unwrap_err();
        assert_eq!(e.code, "unknown_provider_kind");
        let env = |_: &str| Some("sk-test".to_string());
        let ok = s.with("1", &providers("anthropic", "X"), &env).unwrap();
        let (name, value) = ok.providers["p"].auth.clone().unwrap();
        assert_eq!(name, "x-api-key");
        assert!(value.is_sensitive());
        let bad_hash = Resources::ApiKeys(cfg::ApiKeySet {
            keys: vec![cfg::ApiKey {
                id: "k".into(),
                key_hash: vec![1, 2, 3],
                ..Default::default()
            }],
        });
        assert_eq!(
            s.with("1", &bad_hash, &no_env).unwrap_err().code,
            "invalid_key_hash"
        );
    }
}
