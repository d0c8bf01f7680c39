//! Telemetry sink presets: what each LLM back end needs to receive OTLP traces (transport, path,
//! headers, resource attributes), so an operator names the back end and its secrets instead of
//! assembling URLs and headers. Pure; shared by the control plane (validation) and the nodes
//! (expansion with their own environment). Sources are cited per preset; check them when a
//! back end changes its intake.

use crate::config::TelemetrySink;
use crate::validate::Invalid;

/// How one header's value is made.
#[derive(Debug, Clone, Copy)]
enum Value {
    /// A fixed value.
    Fixed(&'static str),
    /// An option's value, with a prefix.
    Option(&'static str, &'static str),
    /// A secret read from the node's environment, with a prefix (e.g. `Bearer `).
    Secret(&'static str, &'static str),
    /// `Basic base64(user:password)` from two secrets.
    Basic(&'static str, &'static str),
}

struct Preset {
    kind: &'static str,
    /// Default base URL; `{site}` is replaced by the `site` option. `None`: `base_url` required.
    base: Option<&'static str>,
    /// Appended to the base.
    path: &'static str,
    /// Option names and whether each is required (`base_url` is always accepted).
    options: &'static [(&'static str, bool)],
    /// Secret names and whether each is required.
    secrets: &'static [(&'static str, bool)],
    /// Headers; a header whose option or secret is not given is left out.
    headers: &'static [(&'static str, Value)],
    /// Resource attributes taken from options: (attribute, option).
    resource: &'static [(&'static str, &'static str)],
    /// The back end drops spans whose parent it never received: server spans start new roots.
    new_root: bool,
}

/// Every preset. Metrics are not sent to any of them: Langfuse and Phoenix discard or refuse
/// OTLP metrics, Datadog wants delta temporality (Weir's are cumulative), and LangSmith and
/// Openlayer do not document them.
const PRESETS: &[Preset] = &[
    // https://langfuse.com/integrations/native/opentelemetry: OTLP/HTTP only, Basic auth with
    // the project's public and secret keys, ingestion version 4 for prompt processing.
    Preset {
        kind: "langfuse",
        base: Some("https://cloud.langfuse.com"),
        path: "/api/public/otel/v1/traces",
        options: &[],
        secrets: &[("public_key", true), ("secret_key", true)],
        headers: &[
            ("authorization", Value::Basic("public_key", "secret_key")),
            ("x-langfuse-ingestion-version", Value::Fixed("4")),
        ],
        resource: &[],
        new_root: false,
    },
    // https://arize.com/docs/phoenix: OTLP/HTTP protobuf at <host>/v1/traces (Phoenix Cloud:
    // https://app.phoenix.arize.com/s/<space>), Bearer API key when auth is on, the project from
    // the `openinference.project.name` resource attribute.
    Preset {
        kind: "phoenix",
        base: None,
        path: "/v1/traces",
        options: &[("project", false)],
        secrets: &[("api_key", false)],
        headers: &[("authorization", Value::Secret("api_key", "Bearer "))],
        resource: &[("openinference.project.name", "project")],
        new_root: false,
    },
    // https://docs.datadoghq.com/llm_observability/instrumentation/otel_instrumentation:
    // https://otlp.<site>/v1/traces, dd-api-key, dd-otlp-source: llmobs, optional dd-ml-app.
    Preset {
        kind: "datadog",
        base: Some("https://otlp.{site}"),
        path: "/v1/traces",
        options: &[("site", false), ("ml_app", false)],
        secrets: &[("api_key", true)],
        headers: &[
            ("dd-api-key", Value::Secret("api_key", "")),
            ("dd-otlp-source", Value::Fixed("llmobs")),
            ("dd-ml-app", Value::Option("ml_app", "")),
        ],
        resource: &[],
        new_root: false,
    },
    // https://docs.langchain.com/langsmith/trace-with-opentelemetry: <base>/otel/v1/traces,
    // x-api-key, optional Langsmith-Project; a span whose parent never arrives is dropped.
    Preset {
        kind: "langsmith",
        base: Some("https://api.smith.langchain.com/otel"),
        path: "/v1/traces",
        options: &[("project", false)],
        secrets: &[("api_key", true)],
        headers: &[
            ("x-api-key", Value::Secret("api_key", "")),
            ("langsmith-project", Value::Option("project", "")),
        ],
        resource: &[],
        new_root: true,
    },
    // https://docs.openlayer.com/integrations/opentelemetry: protobuf over HTTPS at
    // https://api.openlayer.com/v1/otel/v1/traces, Bearer API key, the inference pipeline in
    // x-bt-parent.
    Preset {
        kind: "openlayer",
        base: Some("https://api.openlayer.com/v1/otel"),
        path: "/v1/traces",
        options: &[("pipeline_id", true)],
        secrets: &[("api_key", true)],
        headers: &[
            ("authorization", Value::Secret("api_key", "Bearer ")),
            ("x-bt-parent", Value::Option("pipeline_id", "pipeline_id:")),
        ],
        resource: &[],
        new_root: false,
    },
];

/// The preset kinds.
pub fn kinds() -> impl Iterator<Item = &'static str> {
    PRESETS.iter().map(|p| p.kind)
}

fn preset(kind: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.kind == kind)
}

fn bad(code: &'static str, message: String) -> Invalid {
    Invalid { code, message }
}

/// Checks a preset sink: known and required options and secrets, variable names, no endpoint
/// of its own, HTTP/protobuf, no metrics.
pub fn validate(s: &TelemetrySink) -> Result<(), Invalid> {
    let Some(p) = preset(&s.kind) else {
        return Err(bad(
            "unknown_sink_kind",
            format!("telemetry sink {:?} has kind {:?}", s.name, s.kind),
        ));
    };
    if !s.endpoint.is_empty() {
        return Err(bad(
            "preset_endpoint",
            format!(
                "telemetry sink {:?}: a {} sink derives its endpoint; set the base_url option to point it elsewhere",
                s.name, p.kind
            ),
        ));
    }
    if !matches!(s.protocol.as_str(), "" | "http/protobuf") {
        return Err(bad(
            "invalid_protocol",
            format!(
                "telemetry sink {:?}: {} takes OTLP over HTTP (http/protobuf) only",
                s.name, p.kind
            ),
        ));
    }
    if s.metrics {
        return Err(bad(
            "preset_metrics",
            format!(
                "telemetry sink {:?}: Weir does not send metrics to {}",
                s.name, p.kind
            ),
        ));
    }
    if !s.headers_from_env.is_empty() {
        return Err(bad(
            "preset_headers",
            format!(
                "telemetry sink {:?}: a {} sink sets its own headers; give secrets by name instead",
                s.name, p.kind
            ),
        ));
    }
    for key in s.options.keys() {
        if key != "base_url" && !p.options.iter().any(|(o, _)| o == key) {
            return Err(bad(
                "unknown_option",
                format!(
                    "telemetry sink {:?}: {} has no option {key:?} (it takes base_url{})",
                    s.name,
                    p.kind,
                    p.options
                        .iter()
                        .map(|(o, _)| format!(", {o}"))
                        .collect::<String>()
                ),
            ));
        }
    }
    for (o, required) in p.options {
        if *required && s.options.get(*o).is_none_or(|v| v.is_empty()) {
            return Err(bad(
                "missing_option",
                format!(
                    "telemetry sink {:?}: {} needs the option {o}",
                    s.name, p.kind
                ),
            ));
        }
    }
    match (p.base, s.options.get("base_url")) {
        (None, None) => {
            return Err(bad(
                "missing_option",
                format!(
                    "telemetry sink {:?}: {} needs the option base_url (e.g. http://phoenix:6006)",
                    s.name, p.kind
                ),
            ))
        }
        (_, Some(u))
            if !(u.starts_with("http://") || u.starts_with("https://"))
                || u.parse::<http::Uri>().is_err() =>
        {
            return Err(bad(
                "invalid_endpoint",
                format!(
                    "telemetry sink {:?}: base_url {u:?} must be an absolute http(s) URL",
                    s.name
                ),
            ))
        }
        _ => {}
    }
    for key in s.secrets_from_env.keys() {
        if !p.secrets.iter().any(|(k, _)| k == key) {
            return Err(bad(
                "unknown_secret",
                format!(
                    "telemetry sink {:?}: {} takes the secrets {}",
                    s.name,
                    p.kind,
                    p.secrets
                        .iter()
                        .map(|(k, _)| *k)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    for (k, required) in p.secrets {
        match s.secrets_from_env.get(*k) {
            None if *required => {
                return Err(bad(
                    "missing_secret_name",
                    format!("telemetry sink {:?}: {} needs the secret {k} (the name of an environment variable on the nodes)", s.name, p.kind),
                ))
            }
            Some(var) if !crate::validate::is_env_name(var) => {
                return Err(bad(
                    "invalid_header_env",
                    format!("telemetry sink {:?}: secret {k} must name an environment variable, not hold a value", s.name),
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// What a node sends to a preset sink.
#[derive(Debug, PartialEq)]
pub struct Expanded {
    /// The full traces URL.
    pub endpoint: String,
    /// Headers, values included (secrets read from the environment).
    pub headers: Vec<(String, String)>,
    /// Extra resource attributes.
    pub resource: Vec<(String, String)>,
    /// Whether server spans start new roots linked to the caller.
    pub new_root: bool,
}

/// Expands a validated preset sink with the node's environment; a named secret that is unset
/// is an error (the node NACKs).
pub fn expand(
    s: &TelemetrySink,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Expanded, Invalid> {
    validate(s)?;
    let p = preset(&s.kind).expect("validated");
    let secret = |name: &str| -> Result<Option<String>, Invalid> {
        match s.secrets_from_env.get(name) {
            None => Ok(None),
            Some(var) => env(var).filter(|v| !v.is_empty()).map(Some).ok_or_else(|| {
                bad(
                    "missing_secret",
                    format!("telemetry sink {:?} needs environment variable {var} on this node, and it is not set", s.name),
                )
            }),
        }
    };
    let option = |name: &str| s.options.get(name).filter(|v| !v.is_empty()).cloned();
    let base = match option("base_url") {
        Some(b) => b,
        None => p.base.expect("validated").replace(
            "{site}",
            &option("site").unwrap_or_else(|| "datadoghq.com".into()),
        ),
    };
    let endpoint = format!("{}{}", base.trim_end_matches('/'), p.path);
    let mut headers = Vec::new();
    for (name, how) in p.headers {
        let value = match how {
            Value::Fixed(v) => Some(v.to_string()),
            Value::Option(o, prefix) => option(o).map(|v| format!("{prefix}{v}")),
            Value::Secret(k, prefix) => secret(k)?.map(|v| format!("{prefix}{v}")),
            Value::Basic(user, pass) => match (secret(user)?, secret(pass)?) {
                (Some(u), Some(pw)) => {
                    Some(format!("Basic {}", base64(format!("{u}:{pw}").as_bytes())))
                }
                _ => None,
            },
        };
        if let Some(v) = value {
            headers.push((name.to_string(), v));
        }
    }
    let resource = p
        .resource
        .iter()
        .filter_map(|(attr, o)| option(o).map(|v| (attr.to_string(), v)))
        .collect();
    Ok(Expanded {
        endpoint,
        headers,
        resource,
        new_root: p.new_root,
    })
}

/// Standard base64 with padding (RFC 4648), for Basic credentials.
fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(kind: &str, options: &[(&str, &str)], secrets: &[(&str, &str)]) -> TelemetrySink {
        TelemetrySink {
            name: "s".into(),
            kind: kind.into(),
            sample_ratio: 1.0,
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            secrets_from_env: secrets
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    fn env(name: &str) -> Option<String> {
        Some(format!("value-of-{name}"))
    }

    #[test]
    fn base64_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("pk-lf-1:sk-lf-2", "cGstbGYtMTpzay1sZi0y"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn every_preset_expands_to_its_back_ends_intake() {
        let cases = [
            (
                sink(
                    "langfuse",
                    &[],
                    &[("public_key", "PK"), ("secret_key", "SK")],
                ),
                "https://cloud.langfuse.com/api/public/otel/v1/traces",
                vec![
                    (
                        "authorization",
                        format!("Basic {}", base64(b"value-of-PK:value-of-SK")),
                    ),
                    ("x-langfuse-ingestion-version", "4".to_string()),
                ],
            ),
            (
                sink(
                    "phoenix",
                    &[("base_url", "http://phoenix:6006"), ("project", "p1")],
                    &[("api_key", "PX")],
                ),
                "http://phoenix:6006/v1/traces",
                vec![("authorization", "Bearer value-of-PX".to_string())],
            ),
            (
                sink(
                    "datadog",
                    &[("site", "datadoghq.eu"), ("ml_app", "gw")],
                    &[("api_key", "DD")],
                ),
                "https://otlp.datadoghq.eu/v1/traces",
                vec![
                    ("dd-api-key", "value-of-DD".to_string()),
                    ("dd-otlp-source", "llmobs".to_string()),
                    ("dd-ml-app", "gw".to_string()),
                ],
            ),
            (
                sink("langsmith", &[("project", "prod")], &[("api_key", "LS")]),
                "https://api.smith.langchain.com/otel/v1/traces",
                vec![
                    ("x-api-key", "value-of-LS".to_string()),
                    ("langsmith-project", "prod".to_string()),
                ],
            ),
            (
                sink(
                    "openlayer",
                    &[("pipeline_id", "pl-1")],
                    &[("api_key", "OL")],
                ),
                "https://api.openlayer.com/v1/otel/v1/traces",
                vec![
                    ("authorization", "Bearer value-of-OL".to_string()),
                    ("x-bt-parent", "pipeline_id:pl-1".to_string()),
                ],
            ),
        ];
        for (s, endpoint, headers) in cases {
            let e = expand(&s, &env).unwrap_or_else(|e| panic!("{}: {e:?}", s.kind));
            assert_eq!(e.endpoint, endpoint, "{}", s.kind);
            let want: Vec<(String, String)> = headers
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            assert_eq!(e.headers, want, "{}", s.kind);
            assert_eq!(e.new_root, s.kind == "langsmith");
        }
        let phoenix = expand(
            &sink(
                "phoenix",
                &[("base_url", "http://p"), ("project", "p1")],
                &[],
            ),
            &env,
        )
        .unwrap();
        assert_eq!(
            phoenix.resource,
            vec![("openinference.project.name".to_string(), "p1".to_string())]
        );
        assert!(phoenix.headers.is_empty(), "no api key, no header");
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            (
                sink("langfuse", &[], &[("public_key", "PK")]),
                "missing_secret_name",
            ),
            (
                sink(
                    "langfuse",
                    &[],
                    &[("public_key", "PK"), ("secret_key", "sk-lf-123 value")],
                ),
                "invalid_header_env",
            ),
            (sink("phoenix", &[], &[]), "missing_option"),
            (
                sink("openlayer", &[], &[("api_key", "OL")]),
                "missing_option",
            ),
            (
                sink("datadog", &[("region", "eu")], &[("api_key", "DD")]),
                "unknown_option",
            ),
            (
                sink(
                    "datadog",
                    &[("base_url", "otlp.example")],
                    &[("api_key", "DD")],
                ),
                "invalid_endpoint",
            ),
            (
                sink("langsmith", &[], &[("api_key", "LS"), ("token", "T")]),
                "unknown_secret",
            ),
        ];
        for (s, code) in cases {
            assert_eq!(validate(&s).unwrap_err().code, code, "{s:?}");
        }
        let mut with_endpoint = sink("langsmith", &[], &[("api_key", "LS")]);
        with_endpoint.endpoint = "https://x".into();
        assert_eq!(
            validate(&with_endpoint).unwrap_err().code,
            "preset_endpoint"
        );
        let mut metrics = sink("langsmith", &[], &[("api_key", "LS")]);
        metrics.metrics = true;
        assert_eq!(validate(&metrics).unwrap_err().code, "preset_metrics");
        let unset = |_: &str| None;
        assert_eq!(
            expand(&sink("langsmith", &[], &[("api_key", "LS")]), &unset)
                .unwrap_err()
                .code,
            "missing_secret"
        );
    }
}
