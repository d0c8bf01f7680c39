//! Gateway key authentication: a presented key is hashed and looked up in the snapshot; the key
//! itself is never kept.

use std::sync::Arc;

use http::HeaderMap;

use crate::gateway_error::GatewayError;
use crate::snapshot::{KeyInfo, Snapshot};

/// The credential a request presents: `Authorization: Bearer <key>`, or `x-api-key` (the
/// Anthropic SDKs' header).
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        let (scheme, rest) = v.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim());
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Authenticates a request against `snap` at `now_ms`.
pub fn authenticate(
    snap: &Snapshot,
    headers: &HeaderMap,
    now_ms: i64,
) -> Result<Arc<KeyInfo>, GatewayError> {
    let key = presented_key(headers)
        .filter(|k| !k.is_empty())
        .ok_or(GatewayError::MissingKey)?;
    let hash = weir_proto::api_key::hash(key);
    let info = snap
        .keys
        .get(&hash)
        .ok_or_else(|| GatewayError::InvalidKey(shown(key)))?;
    if info.expires_at_ms != 0 && info.expires_at_ms <= now_ms {
        return Err(GatewayError::ExpiredKey);
    }
    Ok(info.clone())
}

/// Enough of a rejected key for its owner to recognise it, never enough to use it.
fn shown(key: &str) -> String {
    let head: String = key.chars().take(8).collect();
    if key.chars().count() > 12 {
        format!("{head}…")
    } else {
        "(redacted)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap_with(secret: &str, expires_at_ms: i64) -> Snapshot {
        let mut s = Snapshot::default();
        s.keys.insert(
            weir_proto::api_key::hash(secret),
            Arc::new(KeyInfo {
                id: "k1".into(),
                display_prefix: "weir_sk_x".into(),
                user_id: "u".into(),
                team_id: String::new(),
                service_account_id: String::new(),
                allowed_models: None,
                expires_at_ms,
                request_logging_enabled: true,
                price_multiplier_ppm: weir_proto::pricing::PPM_ONE,
            }),
        );
        s
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn table() {
        let secret = "weir_sk_0123456789012345678901234567890123456789";
        let snap = snap_with(secret, 0);
        let bearer = format!("Bearer {secret}");
        let lower = format!("bearer {secret}");
        let ok: &[&[(&str, &str)]] = &[
            &[("authorization", &bearer)],
            &[("authorization", &lower)],
            &[("x-api-key", secret)],
        ];
        for h in ok {
            assert_eq!(
                authenticate(&snap, &headers(h), 0).unwrap().id,
                "k1",
                "{h:?}"
            );
        }
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "missing_api_key"),
            (&[("authorization", "Bearer ")], "missing_api_key"),
            (&[("authorization", "Basic abc")], "missing_api_key"),
            (
                &[("authorization", "Bearer weir_sk_wrongwrongwrong")],
                "invalid_api_key",
            ),
        ];
        for (h, code) in cases {
            assert_eq!(
                authenticate(&snap, &headers(h), 0).unwrap_err().code(),
                *code,
                "{h:?}"
            );
        }
        let expired = snap_with(secret, 1_000);
        let e = authenticate(&expired, &headers(&[("authorization", &bearer)]), 2_000).unwrap_err();
        assert_eq!(e.code(), "expired_api_key");
    }

    #[test]
    fn rejected_keys_are_not_echoed() {
        let e = GatewayError::InvalidKey(shown("weir_sk_supersecretvalue123"));
        assert!(!e.to_string().contains("supersecret"), "{e}");
        assert_eq!(shown("short"), "(redacted)");
    }
}
