//! The operations the gateway serves and how each reaches each kind of provider: the upstream
//! path, whether the body passes through or is translated, and the body rewrite.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use crate::anthropic_translation as at;

/// A client-facing operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `POST /v1/chat/completions`.
    ChatCompletions,
    /// `POST /v1/responses`.
    Responses,
    /// `POST /v1/embeddings`.
    Embeddings,
    /// `POST /v1/messages` (Anthropic Messages API).
    Messages,
}

impl Operation {
    /// The operation for a request path, if it is one.
    pub fn from_path(path: &str) -> Option<Operation> {
        match path {
            "/v1/chat/completions" => Some(Operation::ChatCompletions),
            "/v1/responses" => Some(Operation::Responses),
            "/v1/embeddings" => Some(Operation::Embeddings),
            "/v1/messages" => Some(Operation::Messages),
            _ => None,
        }
    }

    /// Its name in logs, config and telemetry.
    pub fn name(self) -> &'static str {
        match self {
            Operation::ChatCompletions => "chat_completions",
            Operation::Responses => "responses",
            Operation::Embeddings => "embeddings",
            Operation::Messages => "messages",
        }
    }

    /// Whether clients of this operation expect Anthropic-shaped errors.
    pub fn anthropic_client(self) -> bool {
        self == Operation::Messages
    }
}

/// How a request reaches one provider kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The body goes as the client sent it (model and usage options aside).
    Passthrough,
    /// An OpenAI chat request to an Anthropic provider.
    ChatToMessages,
    /// An Anthropic Messages request to an OpenAI-compatible provider.
    MessagesToChat,
}

/// The shape and upstream path of `op` on a provider of `kind`, or `None` when that kind cannot
/// serve it.
pub fn shape(op: Operation, kind: &str) -> Option<(Shape, &'static str)> {
    use Operation::*;
    match (op, kind) {
        (ChatCompletions, "openai") => Some((Shape::Passthrough, "/chat/completions")),
        (Responses, "openai") => Some((Shape::Passthrough, "/responses")),
        (Embeddings, "openai") => Some((Shape::Passthrough, "/embeddings")),
        (Messages, "openai") => Some((Shape::MessagesToChat, "/chat/completions")),
        (Messages, "anthropic") => Some((Shape::Passthrough, "/messages")),
        (ChatCompletions, "anthropic") => Some((Shape::ChatToMessages, "/messages")),
        _ => None,
    }
}

/// The only fields of a request body the request path reads.
#[derive(Debug, Deserialize)]
pub struct RequestFields<'a> {
    /// The model key.
    #[serde(borrow, default)]
    pub model: Option<Cow<'a, str>>,
    /// Whether the client wants a stream (checked to be a boolean).
    #[serde(default)]
    pub stream: Option<Value>,
    /// Chat completions' stream options.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
}

/// `stream_options` of a chat request.
#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    /// Whether the client asked for the usage chunk.
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// The upstream URL: `base` with `{model}` filled in and `path` appended before any query.
pub fn upstream_url(base: &str, path: &str, upstream_model: &str) -> String {
    let base = base.replace("{model}", &encode_path_segment(upstream_model));
    match base.split_once('?') {
        Some((b, q)) => format!("{}{path}?{q}", b.trim_end_matches('/')),
        None => format!("{}{path}", base.trim_end_matches('/')),
    }
}

fn encode_path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Why an upstream body could not be built from the client's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BodyError(pub String);

/// The client's body, parsed once when an attempt needs more than the raw bytes.
pub struct ClientBody {
    raw: Bytes,
    parsed: Option<Value>,
}

impl ClientBody {
    /// Wraps the raw body.
    pub fn new(raw: Bytes) -> Self {
        ClientBody { raw, parsed: None }
    }

    fn value(&mut self) -> Result<&Value, BodyError> {
        if self.parsed.is_none() {
            let v: Value = serde_json::from_slice(&self.raw)
                .map_err(|e| BodyError(format!("the body is not JSON: {e}")))?;
            if !v.is_object() {
                return Err(BodyError("the body must be a JSON object".into()));
            }
            self.parsed = Some(v);
        }
        Ok(self.parsed.as_ref().expect("parsed above"))
    }

    /// The body for one attempt.
    ///
    /// `add_include_usage` asks a chat stream's upstream for its usage chunk (the relay hides it
    /// again when the client did not ask). Passthrough bodies keep their bytes when nothing
    /// needs changing, and get one field spliced in when only usage is needed.
    pub fn for_attempt(
        &mut self,
        shape: Shape,
        client_model: &str,
        upstream_model: &str,
        add_include_usage: bool,
        has_stream_options: bool,
    ) -> Result<Bytes, BodyError> {
        match shape {
            Shape::ChatToMessages => {
                let v = at::chat_request_to_messages(self.value()?, upstream_model)
                    .map_err(|e| BodyError(e.0))?;
                Ok(Bytes::from(serde_json::to_vec(&v).unwrap_or_default()))
            }
            Shape::MessagesToChat => {
                let v = at::messages_request_to_chat(self.value()?, upstream_model)
                    .map_err(|e| BodyError(e.0))?;
                Ok(Bytes::from(serde_json::to_vec(&v).unwrap_or_default()))
            }
            Shape::Passthrough => {
                let same_model = client_model == upstream_model;
                if same_model && !add_include_usage {
                    return Ok(self.raw.clone());
                }
                if same_model && !has_stream_options {
                    return splice_include_usage(&self.raw)
                        .ok_or_else(|| BodyError("the body must be a JSON object".into()));
                }
                let mut v = self.value()?.clone();
                let obj = v.as_object_mut().expect("checked object");
                obj.insert("model".into(), Value::String(upstream_model.to_string()));
                if add_include_usage {
                    let opts = obj
                        .entry("stream_options")
                        .or_insert_with(|| serde_json::json!({}));
                    if !opts.is_object() {
                        *opts = serde_json::json!({});
                    }
                    opts.as_object_mut()
                        .expect("object")
                        .insert("include_usage".into(), Value::Bool(true));
                }
                Ok(Bytes::from(serde_json::to_vec(&v).unwrap_or_default()))
            }
        }
    }
}

/// Inserts `"stream_options":{"include_usage":true}` after the opening brace of an object that
/// has no `stream_options`, leaving every other byte as it was.
fn splice_include_usage(body: &[u8]) -> Option<Bytes> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace())?;
    if body[start] != b'{' {
        return None;
    }
    let rest = &body[start + 1..];
    let empty = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
    let mut out = Vec::with_capacity(body.len() + 40);
    out.extend_from_slice(&body[..=start]);
    out.extend_from_slice(br#""stream_options":{"include_usage":true}"#);
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    Some(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        use Operation::*;
        assert_eq!(
            shape(ChatCompletions, "openai"),
            Some((Shape::Passthrough, "/chat/completions"))
        );
        assert_eq!(
            shape(Messages, "openai"),
            Some((Shape::MessagesToChat, "/chat/completions"))
        );
        assert_eq!(
            shape(ChatCompletions, "anthropic"),
            Some((Shape::ChatToMessages, "/messages"))
        );
        assert_eq!(shape(Embeddings, "anthropic"), None);
        assert_eq!(shape(Responses, "anthropic"), None);
        assert_eq!(Operation::from_path("/v1/embeddings"), Some(Embeddings));
        assert_eq!(Operation::from_path("/v1/nope"), None);
    }

    #[test]
    fn urls() {
        assert_eq!(
            upstream_url("https://api.openai.com/v1", "/chat/completions", "gpt"),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            upstream_url(
                "https://r.openai.azure.com/openai/deployments/{model}?api-version=2024-10-21",
                "/chat/completions",
                "my dep"
            ),
            "https://r.openai.azure.com/openai/deployments/my%20dep/chat/completions?api-version=2024-10-21"
        );
    }

    #[test]
    fn bodies() {
        let raw = Bytes::from_static(br#" {"model":"m","stream":true}"#);
        let mut b = ClientBody::new(raw.clone());
        // Nothing to change: the same bytes.
        assert_eq!(
            b.for_attempt(Shape::Passthrough, "m", "m", false, false)
                .unwrap(),
            raw
        );
        // Only usage: spliced.
        let out = b
            .for_attempt(Shape::Passthrough, "m", "m", true, false)
            .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["model"], "m");
        // Another upstream model, existing options kept.
        let mut b = ClientBody::new(Bytes::from_static(
            br#"{"model":"m","stream_options":{"include_usage":false,"x":1}}"#,
        ));
        let v: Value = serde_json::from_slice(
            &b.for_attempt(Shape::Passthrough, "m", "up", true, true)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(v["model"], "up");
        assert_eq!(
            v["stream_options"],
            serde_json::json!({"include_usage": true, "x": 1})
        );
        // Translation needs valid input.
        let mut b = ClientBody::new(Bytes::from_static(b"[1]"));
        assert!(b
            .for_attempt(Shape::ChatToMessages, "m", "c", false, false)
            .is_err());
        assert_eq!(
            splice_include_usage(b"{}").unwrap(),
            Bytes::from_static(br#"{"stream_options":{"include_usage":true}}"#)
        );
        assert!(splice_include_usage(b"[]").is_none());
    }
}
