//! Admin redaction paths: their syntax, checked by the control plane before it stores a policy
//! and by the data plane before it applies one, and their application to a wrapped payload.
//!
//! A path is dot-separated object keys anchored at the wrapped payload's root (`{headers, body}`
//! for requests, `{body}` for responses, `{stream, events, usage, error}` for streams); `*` is a
//! whole-segment wildcard matching every key of an object and every element of an array, e.g.
//! `body.messages.*.content.*.image_url.url`.

use serde_json::Value;

/// Roots a path may start at.
pub const ROOTS: [&str; 6] = ["headers", "body", "stream", "events", "usage", "error"];

/// Longest path accepted, in bytes.
pub const MAX_LEN: usize = 512;

/// Most segments in a path.
pub const MAX_SEGMENTS: usize = 32;

/// What replaces a redacted value.
pub const REDACTED: &str = "[REDACTED]";

/// One segment of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// An object key (compared exactly; header names are lowercase).
    Key(String),
    /// Every key or element.
    Any,
}

/// A parsed, valid redaction path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedactionPath {
    segments: Vec<Segment>,
}

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("redaction path {path:?}: {reason}")]
pub struct PathError {
    /// The path as given.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

impl RedactionPath {
    /// Parses and checks a path.
    pub fn parse(path: &str) -> Result<RedactionPath, PathError> {
        let err = |reason: String| PathError {
            path: path.chars().take(80).collect(),
            reason,
        };
        if path.is_empty() {
            return Err(err("it is empty".into()));
        }
        if path.len() > MAX_LEN {
            return Err(err(format!("it is longer than {MAX_LEN} bytes")));
        }
        let parts: Vec<&str> = path.split('.').collect();
        if parts.len() > MAX_SEGMENTS {
            return Err(err(format!("it has more than {MAX_SEGMENTS} segments")));
        }
        if !ROOTS.contains(&parts[0]) {
            return Err(err(format!(
                "it must start at one of {} (the wrapped payload's root)",
                ROOTS.join(", ")
            )));
        }
        if parts.len() < 2 && parts[0] != "usage" && parts[0] != "error" {
            return Err(err(
                "it names a whole payload section; name a field inside it".into(),
            ));
        }
        let mut segments = Vec::with_capacity(parts.len());
        for (i, p) in parts.iter().enumerate() {
            if p.is_empty() {
                return Err(err(format!("segment {} is empty", i + 1)));
            }
            if *p == "*" {
                segments.push(Segment::Any);
            } else if p.contains('*') {
                return Err(err(format!("segment {p:?}: `*` must be a whole segment")));
            } else if p.chars().any(char::is_control) {
                return Err(err(format!("segment {} has a control character", i + 1)));
            } else {
                segments.push(Segment::Key(p.to_string()));
            }
        }
        Ok(RedactionPath { segments })
    }

    /// Replaces every value the path reaches in `root` with [`REDACTED`].
    pub fn apply(&self, root: &mut Value) {
        apply(&self.segments, root);
    }
}

fn apply(segments: &[Segment], v: &mut Value) {
    let Some((first, rest)) = segments.split_first() else {
        return;
    };
    let last = rest.is_empty();
    let visit = |child: &mut Value| {
        if last {
            *child = Value::String(REDACTED.into());
        } else {
            apply(rest, child);
        }
    };
    match (first, v) {
        (Segment::Key(k), Value::Object(map)) => {
            if let Some(child) = map.get_mut(k) {
                visit(child);
            }
        }
        (Segment::Any, Value::Object(map)) => map.values_mut().for_each(visit),
        (Segment::Any, Value::Array(items)) => items.iter_mut().for_each(visit),
        _ => {}
    }
}

/// Checks every path of a policy, naming the first bad one.
pub fn validate_all(paths: &[String]) -> Result<Vec<RedactionPath>, PathError> {
    paths.iter().map(|p| RedactionPath::parse(p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parsing() {
        let ok = [
            "body.messages.*.content.*.image_url.url",
            "headers.x-internal-user",
            "body.metadata",
            "events.*.choices",
            "usage",
            "error.message",
        ];
        for p in ok {
            assert!(RedactionPath::parse(p).is_ok(), "{p}");
        }
        let bad = [
            ("", "empty"),
            ("messages.*.content", "must start"),
            ("body..x", "segment 2 is empty"),
            ("body.mess*ages", "whole segment"),
            ("body.", "segment 2 is empty"),
            ("body", "whole payload section"),
            ("headers", "whole payload section"),
            ("body.a\u{0007}", "control"),
        ];
        for (p, why) in bad {
            let e = RedactionPath::parse(p).unwrap_err();
            assert!(e.to_string().contains(why), "{p:?}: {e}");
        }
        let long = format!("body.{}", "a.".repeat(40));
        assert!(RedactionPath::parse(&long).is_err());
        assert!(validate_all(&["body.a".into(), "nope".into()]).is_err());
    }

    #[test]
    fn applying_walks_objects_and_arrays() {
        let mut v = json!({
            "headers": {"x-user": "alice", "accept": "json"},
            "body": {"messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "hi"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
                ]},
                {"role": "assistant", "content": "plain string"}
            ]}
        });
        RedactionPath::parse("body.messages.*.content.*.image_url.url")
            .unwrap()
            .apply(&mut v);
        RedactionPath::parse("headers.x-user")
            .unwrap()
            .apply(&mut v);
        RedactionPath::parse("body.nothing.here")
            .unwrap()
            .apply(&mut v);
        assert_eq!(
            v["body"]["messages"][0]["content"][1]["image_url"]["url"],
            REDACTED
        );
        assert_eq!(v["body"]["messages"][0]["content"][0]["text"], "hi");
        assert_eq!(v["body"]["messages"][1]["content"], "plain string");
        assert_eq!(v["headers"]["x-user"], REDACTED);
        assert_eq!(v["headers"]["accept"], "json");
        let mut w = json!({"body": {"a": {"x": 1, "y": [1, 2]}}});
        RedactionPath::parse("body.a.*").unwrap().apply(&mut w);
        assert_eq!(w, json!({"body": {"a": {"x": REDACTED, "y": REDACTED}}}));
    }
}
