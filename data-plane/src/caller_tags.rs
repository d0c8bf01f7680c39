//! Caller tags: what a client says about itself, for filtering request logs.
//!
//! `x-weir-service`, `x-weir-component` and `x-weir-env` carry one value each;
//! `x-weir-tags: key=value; key2=value2` carries up to five bespoke tags. Keys are lowercase
//! `[a-z][a-z0-9._-]{0,31}`, values `[a-z0-9._\-/:]{1,64}`; reserved and duplicate keys are
//! refused. Tags are never forwarded upstream and never become metric labels.

use http::HeaderMap;

/// The single-value tag headers and the key each one fills.
pub const FIXED: [(&str, &str); 3] = [
    ("x-weir-service", "service"),
    ("x-weir-component", "component"),
    ("x-weir-env", "env"),
];

/// The header carrying bespoke tags.
pub const TAGS_HEADER: &str = "x-weir-tags";

/// Most bespoke tags per request.
pub const MAX_BESPOKE: usize = 5;

/// Keys a bespoke tag may not use: the fixed ones, and names Weir records itself.
pub const RESERVED: [&str; 10] = [
    "service",
    "component",
    "env",
    "user",
    "team",
    "model",
    "provider",
    "harness",
    "session",
    "request_id",
];

/// A tag header that breaks the rules; the message names the header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{header}: {reason}")]
pub struct TagError {
    /// The offending header.
    pub header: &'static str,
    /// What is wrong.
    pub reason: String,
}

fn valid_key(k: &str) -> bool {
    let b = k.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && b[0].is_ascii_lowercase()
        && b[1..].iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
        })
}

fn valid_value(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.bytes().all(|c| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || matches!(c, b'.' | b'_' | b'-' | b'/' | b':')
        })
}

/// The request's tags as (key, value) pairs, fixed ones first.
pub fn parse(headers: &HeaderMap) -> Result<Vec<(String, String)>, TagError> {
    let mut tags = Vec::new();
    for (header, key) in FIXED {
        let mut values = headers.get_all(header).iter();
        let Some(v) = values.next() else { continue };
        if values.next().is_some() {
            return Err(TagError {
                header,
                reason: "sent more than once".into(),
            });
        }
        let v = v.to_str().ok().map(str::trim).unwrap_or("");
        if !valid_value(v) {
            return Err(TagError {
                header,
                reason: "the value must be 1-64 characters of a-z 0-9 . _ - / :".into(),
            });
        }
        tags.push((key.to_string(), v.to_string()));
    }
    let mut bespoke = 0;
    for raw in headers.get_all(TAGS_HEADER) {
        let err = |reason: String| TagError {
            header: TAGS_HEADER,
            reason,
        };
        let raw = raw
            .to_str()
            .map_err(|_| err("the header is not visible ASCII".into()))?;
        for pair in raw.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| err(format!("{pair:?} is not key=value")))?;
            let (k, v) = (k.trim(), v.trim());
            if !valid_key(k) {
                return Err(err(format!(
                    "key {k:?} must match [a-z][a-z0-9._-]{{0,31}}"
                )));
            }
            if RESERVED.contains(&k) {
                return Err(err(format!("key {k:?} is reserved")));
            }
            if !valid_value(v) {
                return Err(err(format!(
                    "the value of {k:?} must be 1-64 characters of a-z 0-9 . _ - / :"
                )));
            }
            if tags.iter().any(|(tk, _)| tk == k) {
                return Err(err(format!("key {k:?} appears twice")));
            }
            bespoke += 1;
            if bespoke > MAX_BESPOKE {
                return Err(err(format!("at most {MAX_BESPOKE} tags")));
            }
            tags.push((k.to_string(), v.to_string()));
        }
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
            );
        }
        h
    }

    #[test]
    fn accepted() {
        let h = headers(&[
            ("x-weir-service", "billing"),
            ("x-weir-env", "prod"),
            (
                "x-weir-tags",
                "team.area=payments; ticket=abc-123;  region=eu/west:1 ",
            ),
        ]);
        let tags = parse(&h).unwrap();
        assert_eq!(
            tags,
            vec![
                ("service".to_string(), "billing".to_string()),
                ("env".into(), "prod".into()),
                ("team.area".into(), "payments".into()),
                ("ticket".into(), "abc-123".into()),
                ("region".into(), "eu/west:1".into()),
            ]
        );
        assert!(parse(&HeaderMap::new()).unwrap().is_empty());
    }

    #[test]
    fn refused_naming_the_header() {
        let six = "a=1;b=2;c=3;d=4;e=5;f=6";
        let long = "a".repeat(65);
        let long_key = format!("{}=1", "k".repeat(33));
        /// Headers sent, the header named in the error, a phrase of the reason.
        type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, &'a str);
        let cases: Vec<Case> = vec![
            (
                vec![("x-weir-service", "Billing")],
                "x-weir-service",
                "1-64",
            ),
            (vec![("x-weir-env", "")], "x-weir-env", "1-64"),
            (
                vec![("x-weir-component", &long)],
                "x-weir-component",
                "1-64",
            ),
            (
                vec![("x-weir-service", "a"), ("x-weir-service", "b")],
                "x-weir-service",
                "more than once",
            ),
            (vec![("x-weir-tags", six)], "x-weir-tags", "at most 5"),
            (vec![("x-weir-tags", "novalue")], "x-weir-tags", "key=value"),
            (
                vec![("x-weir-tags", "Upper=1")],
                "x-weir-tags",
                "must match",
            ),
            (vec![("x-weir-tags", "1a=1")], "x-weir-tags", "must match"),
            (
                vec![("x-weir-tags", &long_key)],
                "x-weir-tags",
                "must match",
            ),
            (
                vec![("x-weir-tags", "service=x")],
                "x-weir-tags",
                "reserved",
            ),
            (vec![("x-weir-tags", "a=1; a=2")], "x-weir-tags", "twice"),
            (vec![("x-weir-tags", "a=Caps")], "x-weir-tags", "value"),
            (
                vec![("x-weir-tags", "a=1"), ("x-weir-tags", "a=2")],
                "x-weir-tags",
                "twice",
            ),
        ];
        for (h, header, why) in cases {
            let e = parse(&headers(&h)).unwrap_err();
            assert_eq!(e.header, header, "{h:?}");
            assert!(e.to_string().contains(why), "{h:?}: {e}");
            assert!(e.to_string().starts_with(header));
        }
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        let mut seed: u64 = 7;
        for _ in 0..3_000 {
            let len = (seed % 80) as usize;
            let mut bytes = Vec::with_capacity(len);
            for _ in 0..len {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                // Header values: visible ASCII, space, tab and obs-text.
                let b = (seed >> 33) as u8;
                if b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80 {
                    bytes.push(b);
                }
            }
            seed = seed.wrapping_add(1);
            let Ok(v) = http::HeaderValue::from_bytes(&bytes) else {
                continue;
            };
            let mut h = HeaderMap::new();
            h.insert(TAGS_HEADER, v.clone());
            h.insert("x-weir-service", v);
            let _ = parse(&h);
        }
    }
}
