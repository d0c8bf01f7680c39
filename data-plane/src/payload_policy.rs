//! Turning a request's or response's raw bytes into the payload stored in its request log:
//! wrap (`{headers, body}` / `{body}` / `{stream, events, usage, error}`), redact, shrink to the
//! policy's byte cap. Runs in the log worker, never on the request's path.

use http::HeaderMap;
use serde_json::{Map, Value};

/// What replaces a redacted value.
pub const REDACTED: &str = "[REDACTED]";

/// Headers whose values are always redacted.
pub const SECRET_HEADERS: [&str; 8] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "anthropic-api-key",
    "x-goog-api-key",
];

/// JSON keys (any depth, any case) whose values are always redacted.
pub const SECRET_KEYS: [&str; 13] = [
    "api_key",
    "apikey",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "credentials",
    "private_key",
    "secret",
    "password",
    "authorization",
    "x-api-key",
];

/// The wrapped request: `{headers, body}` with secrets redacted; `body` is the request body as
/// [`body_value`] read it (parsed once by the caller, which also reads tools from it).
pub fn wrap_request(headers: &HeaderMap, mut body: Value) -> Value {
    let mut h = Map::new();
    for name in headers.keys() {
        let n = name.as_str();
        let value = if SECRET_HEADERS.contains(&n) {
            Value::String(REDACTED.into())
        } else {
            let joined: Vec<String> = headers
                .get_all(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            Value::String(joined.join(", "))
        };
        h.insert(n.to_string(), value);
    }
    redact_keys(&mut body);
    serde_json::json!({ "headers": h, "body": body })
}

/// The wrapped non-streaming response: `{body}` with secrets redacted.
pub fn wrap_response(mut body: Value) -> Value {
    redact_keys(&mut body);
    serde_json::json!({ "body": body })
}

/// JSON when the bytes are JSON; otherwise the text, so nothing is lost to a parse error.
pub fn body_value(body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// Only the top-level fields `keys` of a JSON object body, each parsed; every other field is
/// scanned but never built (an agent's request is mostly `messages`, which a record without
/// payloads does not need). `None` when the body is not a JSON object.
pub fn top_fields(body: &[u8], keys: &[&str]) -> Option<Value> {
    use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
    use serde_json::value::RawValue;
    use std::borrow::Cow;

    /// A key, borrowed from the body unless it had escapes.
    struct Key<'de>(Cow<'de, str>);
    impl<'de> serde::Deserialize<'de> for Key<'de> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Key<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a key")
                }
                fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Borrowed(v)))
                }
                fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Owned(v.to_string())))
                }
            }
            d.deserialize_str(V)
        }
    }
    /// The wanted fields of one object, raw; the rest skipped without allocating.
    struct Wanted<'k>(&'k [&'k str]);
    impl<'de> DeserializeSeed<'de> for Wanted<'_> {
        type Value = Vec<(usize, &'de RawValue)>;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de> Visitor<'de> for Wanted<'_> {
        type Value = Vec<(usize, &'de RawValue)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = Vec::new();
            while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
                match self.0.iter().position(|w| *w == k) {
                    Some(i) => found.push((i, map.next_value::<&'de RawValue>()?)),
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(found)
        }
    }

    let mut de = serde_json::Deserializer::from_slice(body);
    let found = Wanted(keys).deserialize(&mut de).ok()?;
    de.end().ok()?;
    let mut out = Map::new();
    // A repeated key keeps its last value, as a full parse would.
    for (i, raw) in found {
        out.insert(keys[i].to_string(), serde_json::from_str(raw.get()).ok()?);
    }
    Some(Value::Object(out))
}

/// Redacts built-in secret keys at any depth.
pub fn redact_keys(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if SECRET_KEYS.iter().any(|s| s.eq_ignore_ascii_case(k)) {
                    *val = Value::String(REDACTED.into());
                } else {
                    redact_keys(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact_keys),
        _ => {}
    }
}

/// Strings of known bulky fields longer than this are replaced by a short marker.
pub const BULKY_KEEP: usize = 256;

/// Keys whose string values carry inline media or files in the request shapes of OpenAI
/// (`image_url.url`, `input_audio.data`, `file.file_data`, Responses' `image_url` and
/// `file_data`), Anthropic (`source.data` of base64 images and documents), Gemini
/// (`inline_data.data` / `inlineData.data`) and image outputs (`b64_json`).
pub const BULKY_KEYS: [&str; 5] = ["data", "file_data", "url", "image_url", "b64_json"];

/// Replaces inline media (base64 data, data URLs) with a marker that keeps the JSON's shape and
/// says how much was cut; returns whether anything was. Short values and ordinary URLs stay.
pub fn truncate_bulky(v: &mut Value) -> bool {
    match v {
        Value::Object(map) => {
            let mut cut = false;
            for (k, child) in map.iter_mut() {
                if let Value::String(s) = child {
                    if s.len() > BULKY_KEEP
                        && (is_data_url(s) || (BULKY_KEYS.contains(&k.as_str()) && looks_base64(s)))
                    {
                        *s = bulky_marker(s);
                        cut = true;
                        continue;
                    }
                }
                cut |= truncate_bulky(child);
            }
            cut
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |cut, x| truncate_bulky(x) | cut),
        // A data URL anywhere (e.g. a content part given as a bare string) is media too.
        Value::String(s) if s.len() > BULKY_KEEP && is_data_url(s) => {
            *s = bulky_marker(s);
            true
        }
        _ => false,
    }
}

fn is_data_url(s: &str) -> bool {
    // Bytes, not a str slice: 128 may fall inside a multi-byte character.
    let head = &s.as_bytes()[..s.len().min(128)];
    s.starts_with("data:") && memchr::memmem::find(head, b";base64,").is_some()
}

fn looks_base64(s: &str) -> bool {
    // A sample is enough: media is megabytes of the same alphabet.
    s.bytes().take(1024).all(|b| {
        b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_' | b'\n' | b'\r')
    })
}

fn bulky_marker(s: &str) -> String {
    let head = if is_data_url(s) {
        s.split_once(',').map(|(h, _)| h).unwrap_or("data:")
    } else {
        "base64"
    };
    format!("{head},[{} bytes truncated by weir]", s.len())
}

/// Serialises `v` within `max_bytes`, shortening long strings (keeping the JSON's shape) until it
/// fits; returns the bytes and whether anything was cut.
pub fn cap(mut v: Value, max_bytes: usize) -> (Vec<u8>, bool) {
    let full = serde_json::to_vec(&v).unwrap_or_default();
    if full.len() <= max_bytes {
        return (full, false);
    }
    let mut limit = 4096usize;
    loop {
        shorten_strings(&mut v, limit);
        let out = serde_json::to_vec(&v).unwrap_or_default();
        if out.len() <= max_bytes {
            return (out, true);
        }
        if limit <= 16 {
            // Even the skeleton is too big: keep a marker that says so.
            let marker = serde_json::json!({
                "weir_truncated": true,
                "original_bytes": full.len(),
            });
            return (serde_json::to_vec(&marker).unwrap_or_default(), true);
        }
        limit /= 4;
    }
}

fn shorten_strings(v: &mut Value, limit: usize) {
    match v {
        Value::String(s) if s.len() > limit => {
            let mut cut = limit;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            let dropped = s.len() - cut;
            s.truncate(cut);
            s.push_str(&format!("…[{dropped} bytes truncated]"));
        }
        Value::Array(a) => a.iter_mut().for_each(|x| shorten_strings(x, limit)),
        Value::Object(o) => o.values_mut().for_each(|x| shorten_strings(x, limit)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn top_fields_build_only_what_is_asked() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[1,2],"t\u0069er":1}"#;
        assert_eq!(
            top_fields(body, &["tools", "tier", "absent"]),
            Some(json!({"tools": [1, 2], "tier": 1}))
        );
        assert_eq!(top_fields(b"[1]", &["a"]), None);
        assert_eq!(top_fields(b"not json", &["a"]), None);
        assert_eq!(top_fields(b"{}", &["a"]), Some(json!({})));
        assert_eq!(
            top_fields(br#"{"a":1,"a":2}"#, &["a"]),
            Some(json!({"a": 2})),
            "a repeated key keeps its last value"
        );
        assert_eq!(top_fields(br#"{"a":1} x"#, &["a"]), None, "trailing bytes");
        assert_eq!(
            top_fields(br#"{"a":[1,}"#, &["b"]),
            None,
            "a bad skipped value"
        );
    }

    #[test]
    fn secret_headers_are_redacted() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer weir_sk_secret".parse().unwrap());
        h.insert("x-api-key", "sk-ant-secret".parse().unwrap());
        h.insert("content-type", "application/json".parse().unwrap());
        h.append("cookie", "a=1".parse().unwrap());
        let v = wrap_request(&h, body_value(br#"{"model":"m"}"#));
        let text = v.to_string();
        assert!(!text.contains("secret"), "{text}");
        assert!(!text.contains("a=1"), "{text}");
        assert_eq!(v["headers"]["authorization"], REDACTED);
        assert_eq!(v["headers"]["content-type"], "application/json");
        assert_eq!(v["body"]["model"], "m");
    }

    #[test]
    fn secret_keys_any_depth_any_case() {
        let body = br#"{"model":"m","max_tokens":5,"metadata":{"API_KEY":"k1","nested":[{"Password":"p","ok":"x"}]},"token":"t"}"#;
        let v = wrap_response(body_value(body));
        let text = v.to_string();
        for secret in ["k1", "\"p\"", "\"t\""] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert_eq!(v["body"]["max_tokens"], 5);
        assert_eq!(v["body"]["metadata"]["nested"][0]["ok"], "x");
    }

    #[test]
    fn non_json_bodies_are_kept_as_text() {
        assert_eq!(body_value(b"not json"), Value::String("not json".into()));
        assert_eq!(body_value(b""), Value::Null);
    }

    #[test]
    fn cap_keeps_shape() {
        let big = "A".repeat(200_000);
        let v = serde_json::json!({"body": {"messages": [{"role": "user", "content": big}]}});
        let (out, truncated) = cap(v, 4096);
        assert!(truncated);
        assert!(out.len() <= 4096, "{}", out.len());
        let back: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(back["body"]["messages"][0]["role"], "user");
        assert!(back["body"]["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("bytes truncated"));
        let small = serde_json::json!({"a": 1});
        assert_eq!(cap(small, 100), (b"{\"a\":1}".to_vec(), false));
        // A skeleton that cannot fit becomes a marker.
        let many: Vec<Value> = (0..10_000).map(Value::from).collect();
        let (out, truncated) = cap(Value::Array(many), 64);
        assert!(truncated);
        let back: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(back["weir_truncated"], true);
    }

    #[test]
    fn bulky_media_is_cut_with_the_shape_kept() {
        let image = format!("data:image/png;base64,{}", "iVBORw0KGgo".repeat(500_000));
        assert!(image.len() > 5_000_000);
        let audio = "UklGRiQAAABXQVZF".repeat(1000);
        let mut v = serde_json::json!({"headers": {}, "body": {"messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "what is in this image? ".repeat(20)},
                {"type": "image_url", "image_url": {"url": image, "detail": "high"}},
                {"type": "input_audio", "input_audio": {"data": audio, "format": "wav"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
            ]},
            {"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "QUJD".repeat(1000)}}]},
            {"role": "user", "parts": [{"inline_data": {"mime_type": "application/pdf", "data": "JVBERi0".repeat(1000)}}]}
        ]}});
        assert!(truncate_bulky(&mut v));
        let parts = &v["body"]["messages"][0]["content"];
        let url = parts[1]["image_url"]["url"].as_str().unwrap();
        assert!(
            url.starts_with("data:image/png;base64,[") && url.contains("bytes truncated"),
            "{url}"
        );
        assert_eq!(parts[1]["image_url"]["detail"], "high");
        assert!(parts[2]["input_audio"]["data"]
            .as_str()
            .unwrap()
            .contains("truncated"));
        assert_eq!(parts[2]["input_audio"]["format"], "wav");
        assert_eq!(
            parts[3]["image_url"]["url"], "https://example.com/cat.png",
            "plain URLs stay"
        );
        assert!(
            parts[0]["text"]
                .as_str()
                .unwrap()
                .starts_with("what is in this image?"),
            "text stays"
        );
        assert!(v["body"]["messages"][1]["content"][0]["source"]["data"]
            .as_str()
            .unwrap()
            .contains("truncated"));
        assert_eq!(
            v["body"]["messages"][1]["content"][0]["source"]["media_type"],
            "image/jpeg"
        );
        assert!(v["body"]["messages"][2]["parts"][0]["inline_data"]["data"]
            .as_str()
            .unwrap()
            .contains("truncated"));
        assert!(serde_json::to_vec(&v).unwrap().len() < 4096);
        // Nothing bulky: untouched.
        let long_url = format!("https://example.com/{}", "images/".repeat(60));
        let mut plain = serde_json::json!({"body": {"data": "short", "url": long_url, "note": "a b ".repeat(200)}});
        let before = plain.clone();
        assert!(
            !truncate_bulky(&mut plain),
            "long URLs and text are not media"
        );
        assert_eq!(plain, before);
    }

    #[test]
    fn data_like_text_with_multibyte_characters_does_not_panic() {
        let mut v = serde_json::json!({"text": format!("data: {}", "日本語".repeat(200))});
        assert!(!truncate_bulky(&mut v));
    }

    #[test]
    fn multibyte_strings_are_cut_on_char_boundaries() {
        let v = serde_json::json!({"s": "é".repeat(10_000)});
        let (out, truncated) = cap(v, 2_000);
        assert!(truncated);
        assert!(serde_json::from_slice::<Value>(&out).is_ok());
    }
}
