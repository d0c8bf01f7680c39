//! Config validation that both planes apply: the control plane before it stores or pushes a
//! resource, the data plane before it ACKs one. Written once so the two never disagree; a data
//! plane NACK then means something only that node can know (an older build, say).

use crate::config::{PayloadPolicy, Provider, Route};

/// Provider kinds this build can speak.
pub const PROVIDER_KINDS: [&str; 2] = ["openai", "anthropic"];

/// Operations a model can serve.
pub const OPERATIONS: [&str; 4] = ["chat_completions", "responses", "embeddings", "messages"];

/// Most upstream attempts a route may make for one request.
pub const MAX_ATTEMPTS: u32 = 10;

/// Capture modes of the payload policy.
pub const CAPTURE_MODES: [&str; 3] = ["disabled", "summary_only", "redacted_payloads"];

/// A resource that cannot be used, with a stable code and a message naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    /// Stable, machine-readable, e.g. `unknown_provider_kind`.
    pub code: &'static str,
    /// Names the resource and the field.
    pub message: String,
}

fn invalid(code: &'static str, message: String) -> Invalid {
    Invalid { code, message }
}

/// Keys of providers and models: what clients and routes refer to them by.
pub fn validate_key(what: &str, key: &str) -> Result<(), Invalid> {
    let ok = !key.is_empty()
        && key.len() <= 128
        && key.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'@')
        });
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "invalid_key",
            format!(
                "{what} key {key:?} must be 1-128 characters of letters, digits and - _ . : / @"
            ),
        ))
    }
}

/// Fleet group names: what nodes declare and resources are scoped to.
pub fn validate_group(g: &str) -> Result<(), Invalid> {
    let ok = !g.is_empty()
        && g.len() <= 63
        && g.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        });
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "invalid_group",
            format!("fleet group {g:?} must be 1-63 characters of a-z 0-9 - _ ."),
        ))
    }
}

/// Checks one provider.
pub fn validate_provider(p: &Provider) -> Result<(), Invalid> {
    validate_key("provider", &p.key)?;
    if !PROVIDER_KINDS.contains(&p.kind.as_str()) {
        return Err(invalid(
            "unknown_provider_kind",
            format!(
                "provider {:?} has kind {:?}; this build knows {}",
                p.key,
                p.kind,
                PROVIDER_KINDS.join(", ")
            ),
        ));
    }
    let scheme_ok = p.base_url.starts_with("http://") || p.base_url.starts_with("https://");
    let url = p.base_url.replace("{model}", "model");
    if !scheme_ok || url.parse::<http::Uri>().is_err() {
        return Err(invalid(
            "invalid_base_url",
            format!(
                "provider {:?} has base_url {:?}; it must be an absolute http(s) URL",
                p.key, p.base_url
            ),
        ));
    }
    if !p.api_key_env.is_empty() && !is_env_name(&p.api_key_env) {
        return Err(invalid(
            "invalid_api_key_env",
            format!(
                "provider {:?}: api_key_env {:?} must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*), not a secret",
                p.key, p.api_key_env
            ),
        ));
    }
    if !p.api_key_env.is_empty() && !p.api_key.is_empty() {
        return Err(invalid(
            "conflicting_secrets",
            format!(
                "provider {:?} has both a stored secret and api_key_env; give one",
                p.key
            ),
        ));
    }
    if !p.api_key.is_empty() && http::HeaderValue::from_str(&p.api_key).is_err() {
        // The value itself is never echoed.
        return Err(invalid(
            "invalid_secret",
            format!(
                "provider {:?}: the stored secret is not a valid header value (control characters?)",
                p.key
            ),
        ));
    }
    if !p.auth_header.is_empty() && http::HeaderName::from_bytes(p.auth_header.as_bytes()).is_err()
    {
        return Err(invalid(
            "invalid_header",
            format!(
                "provider {:?}: auth_header {:?} is not a header name",
                p.key, p.auth_header
            ),
        ));
    }
    for (name, value) in &p.extra_headers {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err()
            || http::HeaderValue::from_str(value).is_err()
        {
            return Err(invalid(
                "invalid_header",
                format!(
                    "provider {:?}: extra header {name:?} is not a valid HTTP header",
                    p.key
                ),
            ));
        }
    }
    Ok(())
}

/// Checks one route against the providers it may use.
pub fn validate_route(r: &Route, provider_exists: impl Fn(&str) -> bool) -> Result<(), Invalid> {
    validate_key("model", &r.model_key)?;
    if r.targets.is_empty() {
        return Err(invalid(
            "no_targets",
            format!("model {:?} has no targets", r.model_key),
        ));
    }
    for t in &r.targets {
        if !provider_exists(&t.provider_key) {
            return Err(invalid(
                "unknown_provider",
                format!(
                    "model {:?} targets provider {:?}, which does not exist",
                    r.model_key, t.provider_key
                ),
            ));
        }
        if t.upstream_model.is_empty() {
            return Err(invalid(
                "invalid_target",
                format!(
                    "model {:?}: target on {:?} has no upstream model",
                    r.model_key, t.provider_key
                ),
            ));
        }
    }
    if r.targets.iter().all(|t| t.weight == 0) {
        return Err(invalid(
            "invalid_target",
            format!("model {:?}: every target has weight 0", r.model_key),
        ));
    }
    for g in &r.fleet_groups {
        validate_group(g)?;
    }
    for op in &r.operations {
        if !OPERATIONS.contains(&op.as_str()) {
            return Err(invalid(
                "unknown_operation",
                format!(
                    "model {:?}: operation {op:?} is not one of {}",
                    r.model_key,
                    OPERATIONS.join(", ")
                ),
            ));
        }
    }
    if let Some(p) = &r.policy {
        if p.max_attempts > MAX_ATTEMPTS {
            return Err(invalid(
                "invalid_policy",
                format!(
                    "model {:?}: max_attempts {} is above {MAX_ATTEMPTS}",
                    r.model_key, p.max_attempts
                ),
            ));
        }
        if let Some(s) = p.retry_on_status.iter().find(|s| !(100..=599).contains(*s)) {
            return Err(invalid(
                "invalid_policy",
                format!(
                    "model {:?}: retry status {s} is not an HTTP status",
                    r.model_key
                ),
            ));
        }
    }
    Ok(())
}

/// Checks the payload policy.
pub fn validate_payload_policy(p: &PayloadPolicy) -> Result<(), Invalid> {
    if !CAPTURE_MODES.contains(&p.capture_mode.as_str()) {
        return Err(invalid(
            "invalid_capture_mode",
            format!(
                "capture_mode {:?} must be one of {}",
                p.capture_mode,
                CAPTURE_MODES.join(", ")
            ),
        ));
    }
    crate::redaction_path::validate_all(&p.redaction_paths)
        .map_err(|e| invalid("invalid_redaction_path", e.to_string()))?;
    for (name, v) in [
        ("request_max_bytes", p.request_max_bytes),
        ("response_max_bytes", p.response_max_bytes),
        ("stream_max_events", p.stream_max_events),
    ] {
        if v == 0 {
            return Err(invalid(
                "invalid_cap",
                format!("{name} must be greater than 0"),
            ));
        }
    }
    Ok(())
}

/// Checks one telemetry sink: a plain OTLP one here, a preset in [`crate::sink_presets`].
pub fn validate_telemetry_sink(s: &crate::config::TelemetrySink) -> Result<(), Invalid> {
    validate_key("telemetry sink", &s.name)?;
    if s.kind != "otlp" {
        if !crate::sink_presets::kinds().any(|k| k == s.kind) {
            return Err(invalid(
                "unknown_sink_kind",
                format!(
                    "telemetry sink {:?} has kind {:?}; this build knows otlp, {}",
                    s.name,
                    s.kind,
                    crate::sink_presets::kinds().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        crate::sink_presets::validate(s)?;
    } else {
        if !s.options.is_empty() || !s.secrets_from_env.is_empty() {
            return Err(invalid(
                "preset_fields",
                format!(
                    "telemetry sink {:?}: options and secrets belong to presets; an otlp sink takes headers from environment variables",
                    s.name
                ),
            ));
        }
        let url_ok = (s.endpoint.starts_with("http://") || s.endpoint.starts_with("https://"))
            && s.endpoint.parse::<http::Uri>().is_ok();
        if !url_ok {
            return Err(invalid(
                "invalid_endpoint",
                format!(
                    "telemetry sink {:?}: endpoint {:?} must be an absolute http(s) URL",
                    s.name, s.endpoint
                ),
            ));
        }
        if !matches!(s.protocol.as_str(), "grpc" | "http/protobuf") {
            return Err(invalid(
                "invalid_protocol",
                format!(
                    "telemetry sink {:?}: protocol {:?} must be grpc or http/protobuf",
                    s.name, s.protocol
                ),
            ));
        }
    }
    for (header, env) in &s.headers_from_env {
        if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
            return Err(invalid(
                "invalid_header",
                format!(
                    "telemetry sink {:?}: {header:?} is not a header name",
                    s.name
                ),
            ));
        }
        if !is_env_name(env) {
            return Err(invalid(
                "invalid_header_env",
                format!(
                    "telemetry sink {:?}: header {header} must name an environment variable ([A-Za-z_][A-Za-z0-9_]*), not hold a value",
                    s.name
                ),
            ));
        }
    }
    if s.legacy_attributes && !s.capture_content {
        return Err(invalid(
            "legacy_attributes_need_content",
            format!(
                "telemetry sink {:?}: legacy_attributes carry message content; set capture_content too",
                s.name
            ),
        ));
    }
    if !(s.sample_ratio > 0.0 && s.sample_ratio <= 1.0) {
        return Err(invalid(
            "invalid_sample_ratio",
            format!(
                "telemetry sink {:?}: sample_ratio {} must be above 0 and at most 1",
                s.name, s.sample_ratio
            ),
        ));
    }
    Ok(())
}

/// Whether `s` is an environment variable name (`[A-Za-z_][A-Za-z0-9_]*`).
pub fn is_env_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Target;

    fn provider(kind: &str, url: &str, env: &str) -> Provider {
        Provider {
            key: "p".into(),
            kind: kind.into(),
            base_url: url.into(),
            api_key_env: env.into(),
            extra_headers: Default::default(),
            auth_header: String::new(),
            api_key: String::new(),
            price_multiplier_ppm: None,
        }
    }

    #[test]
    fn telemetry_sinks() {
        let ok = crate::config::TelemetrySink {
            name: "collector".into(),
            kind: "otlp".into(),
            endpoint: "http://otel:4317".into(),
            protocol: "grpc".into(),
            headers_from_env: [("authorization".to_string(), "OTLP_AUTH".to_string())].into(),
            sample_ratio: 1.0,
            metrics: true,
            capture_content: false,
            legacy_attributes: false,
            new_root: false,
            options: Default::default(),
            secrets_from_env: Default::default(),
        };
        assert!(validate_telemetry_sink(&ok).is_ok());
        type Change = fn(&mut crate::config::TelemetrySink);
        let cases: Vec<(Change, &str)> = vec![
            (|s| s.name = "has space".into(), "invalid_key"),
            (|s| s.kind = "langfuse".into(), "preset_endpoint"),
            (|s| s.kind = "zipkin".into(), "unknown_sink_kind"),
            (|s| s.endpoint = "otel:4317".into(), "invalid_endpoint"),
            (|s| s.protocol = "http/json".into(), "invalid_protocol"),
            (
                |s| s.headers_from_env = [("x".to_string(), "Bearer abc".to_string())].into(),
                "invalid_header_env",
            ),
            (
                |s| s.headers_from_env = [("bad header".to_string(), "E".to_string())].into(),
                "invalid_header",
            ),
            (|s| s.sample_ratio = 0.0, "invalid_sample_ratio"),
            (
                |s| s.legacy_attributes = true,
                "legacy_attributes_need_content",
            ),
            (|s| s.sample_ratio = 1.5, "invalid_sample_ratio"),
        ];
        for (change, code) in cases {
            let mut s = ok.clone();
            change(&mut s);
            assert_eq!(validate_telemetry_sink(&s).unwrap_err().code, code, "{s:?}");
        }
    }

    #[test]
    fn providers() {
        let cases = [
            (
                provider("openai", "https://api.openai.com/v1", "OPENAI_API_KEY"),
                None,
            ),
            (provider("anthropic", "http://127.0.0.1:1", ""), None),
            (
                provider("gemini-next", "https://x", ""),
                Some("unknown_provider_kind"),
            ),
            (
                provider("openai", "api.openai.com", ""),
                Some("invalid_base_url"),
            ),
            (provider("openai", "ftp://x", ""), Some("invalid_base_url")),
            (
                provider("openai", "https://x", "sk-live-123"),
                Some("invalid_api_key_env"),
            ),
            (
                provider("openai", "https://x", "1ABC"),
                Some("invalid_api_key_env"),
            ),
        ];
        for (p, want) in cases {
            assert_eq!(validate_provider(&p).err().map(|e| e.code), want, "{p:?}");
        }
        let mut p = provider("openai", "https://x", "");
        p.extra_headers.insert("bad header".into(), "v".into());
        assert_eq!(validate_provider(&p).unwrap_err().code, "invalid_header");
    }

    #[test]
    fn routes() {
        let t = |p: &str, m: &str, w: u32| Target {
            provider_key: p.into(),
            upstream_model: m.into(),
            weight: w,
        };
        let exists = |p: &str| p == "openai";
        let route = |key: &str, targets: Vec<Target>| Route {
            model_key: key.into(),
            targets,
            ..Default::default()
        };
        let cases = [
            (route("gpt", vec![t("openai", "gpt-4o", 1)]), None),
            (route("gpt", vec![]), Some("no_targets")),
            (
                route("gpt", vec![t("nope", "m", 1)]),
                Some("unknown_provider"),
            ),
            (
                route("gpt", vec![t("openai", "", 1)]),
                Some("invalid_target"),
            ),
            (
                route("gpt", vec![t("openai", "m", 0)]),
                Some("invalid_target"),
            ),
            (
                route("bad key", vec![t("openai", "m", 1)]),
                Some("invalid_key"),
            ),
        ];
        for (r, want) in cases {
            assert_eq!(
                validate_route(&r, exists).err().map(|e| e.code),
                want,
                "{r:?}"
            );
        }
    }

    #[test]
    fn payload_policies() {
        let ok = PayloadPolicy {
            capture_mode: "redacted_payloads".into(),
            request_max_bytes: 65536,
            response_max_bytes: 65536,
            stream_max_events: 128,
            redaction_paths: vec![],
        };
        assert!(validate_payload_policy(&ok).is_ok());
        let mut bad = ok.clone();
        bad.capture_mode = "everything".into();
        assert_eq!(
            validate_payload_policy(&bad).unwrap_err().code,
            "invalid_capture_mode"
        );
        let mut bad = ok.clone();
        bad.stream_max_events = 0;
        let e = validate_payload_policy(&bad).unwrap_err();
        assert!(e.message.contains("stream_max_events"), "{e}");
        let mut bad = ok.clone();
        bad.redaction_paths = vec!["body.ok".into(), "messages..x".into()];
        let e = validate_payload_policy(&bad).unwrap_err();
        assert_eq!(e.code, "invalid_redaction_path");
        assert!(e.message.contains("messages..x"), "{e}");
    }
}
