//! Translation between OpenAI chat completions and the Anthropic Messages API, both ways,
//! for whole bodies and for streams, tool calls included. Pure functions over JSON.
//!
//! - An OpenAI-style client on an Anthropic target: [`chat_request_to_messages`],
//!   [`messages_response_to_chat`], [`MessagesToChatStream`].
//! - An Anthropic-style client (Claude Code, the Anthropic SDKs) on an OpenAI-compatible target:
//!   [`messages_request_to_chat`], [`chat_response_to_messages`], [`ChatToMessagesStream`].
//!
//! Sources: OpenAI's Chat Completions reference and Anthropic's Messages and streaming
//! references (platform.openai.com/docs/api-reference/chat, docs.anthropic.com/en/api/messages,
//! docs.anthropic.com/en/docs/build-with-claude/streaming).

use bytes::Bytes;
use serde_json::{json, Map, Value};

/// Anthropic requires `max_tokens`; OpenAI clients often omit it.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Why a request cannot be translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TranslateError(pub String);

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// An OpenAI `tool_calls` entry as an Anthropic `tool_use` block (arguments parsed; `{}` when
/// they are not JSON).
fn tool_call_to_tool_use(call: &Value) -> Value {
    let args = call
        .pointer("/function/arguments")
        .and_then(Value::as_str)
        .unwrap_or("{}");
    json!({
        "type": "tool_use",
        "id": call.get("id").cloned().unwrap_or(Value::Null),
        "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
        "input": serde_json::from_str::<Value>(args).unwrap_or_else(|_| json!({})),
    })
}

/// An Anthropic `tool_use` block as an OpenAI `tool_calls` entry (input serialised).
fn tool_use_to_tool_call(block: &Value) -> Value {
    json!({
        "id": block.get("id").cloned().unwrap_or(Value::Null),
        "type": "function",
        "function": {
            "name": block.get("name").cloned().unwrap_or(Value::Null),
            "arguments": block.get("input").map(|i| i.to_string()).unwrap_or_else(|| "{}".into()),
        },
    })
}

// ---------------------------------------------------------------------------------------------
// OpenAI chat client → Anthropic target
// ---------------------------------------------------------------------------------------------

/// An OpenAI chat request as an Anthropic Messages request for `upstream_model`.
pub fn chat_request_to_messages(
    chat: &Value,
    upstream_model: &str,
) -> Result<Value, TranslateError> {
    let msgs = chat
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError("'messages' must be an array".into()))?;
    let mut system: Vec<String> = Vec::new();
    let mut out: Vec<Value> = Vec::new();
    for m in msgs {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let content = m.get("content").unwrap_or(&Value::Null);
        let (role, blocks) = match role {
            "system" | "developer" => {
                system.push(text_of(content));
                continue;
            }
            "user" => ("user", user_blocks(content)),
            "assistant" => {
                let mut blocks = Vec::new();
                let text = text_of(content);
                if !text.is_empty() {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                blocks.extend(
                    m.get("tool_calls")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .map(tool_call_to_tool_use),
                );
                ("assistant", blocks)
            }
            "tool" => (
                "user",
                vec![json!({
                    "type": "tool_result",
                    "tool_use_id": m.get("tool_call_id").cloned().unwrap_or(Value::Null),
                    "content": text_of(content),
                })],
            ),
            other => {
                return Err(TranslateError(format!(
                    "message role {other:?} cannot be sent to an Anthropic model"
                )))
            }
        };
        // Anthropic wants alternating roles: merge consecutive messages of one role.
        match out.last_mut() {
            Some(last) if last["role"] == role => {
                if let Some(arr) = last["content"].as_array_mut() {
                    arr.extend(blocks);
                }
            }
            _ => out.push(json!({"role": role, "content": blocks})),
        }
    }
    let mut req = Map::new();
    req.insert("model".into(), json!(upstream_model));
    req.insert("messages".into(), Value::Array(out));
    let max = chat
        .get("max_completion_tokens")
        .or_else(|| chat.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    req.insert("max_tokens".into(), json!(max));
    if !system.is_empty() {
        req.insert("system".into(), json!(system.join("\n\n")));
    }
    for k in ["temperature", "top_p", "stream"] {
        if let Some(v) = chat.get(k).filter(|v| !v.is_null()) {
            req.insert(k.into(), v.clone());
        }
    }
    match chat.get("stop") {
        Some(Value::String(s)) => {
            req.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            req.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if let Some(tools) = chat.get("tools").and_then(Value::as_array) {
        let tools: Vec<Value> = tools
            .iter()
            .filter_map(|t| t.get("function"))
            .map(|f| {
                json!({
                    "name": f.get("name").cloned().unwrap_or(Value::Null),
                    "description": f.get("description").cloned().unwrap_or(json!("")),
                    "input_schema": f.get("parameters").cloned().unwrap_or(json!({"type": "object"})),
                })
            })
            .collect();
        req.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = chat.get("tool_choice") {
        let mapped = match choice {
            Value::String(s) if s == "auto" => Some(json!({"type": "auto"})),
            Value::String(s) if s == "required" => Some(json!({"type": "any"})),
            Value::String(s) if s == "none" => Some(json!({"type": "none"})),
            Value::Object(o) => o
                .get("function")
                .and_then(|f| f.get("name"))
                .map(|n| json!({"type": "tool", "name": n})),
            _ => None,
        };
        if let Some(m) = mapped {
            req.insert("tool_choice".into(), m);
        }
    }
    if let Some(user) = chat.get("user").and_then(Value::as_str) {
        req.insert("metadata".into(), json!({"user_id": user}));
    }
    Ok(Value::Object(req))
}

fn user_blocks(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => Some(
                    json!({"type": "text", "text": p.get("text").cloned().unwrap_or(json!(""))}),
                ),
                Some("image_url") => {
                    let url = p.pointer("/image_url/url").and_then(Value::as_str)?;
                    Some(image_block(url))
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn image_block(url: &str) -> Value {
    if let Some(rest) = url.strip_prefix("data:") {
        if let Some((meta, data)) = rest.split_once(',') {
            let media_type = meta.trim_end_matches(";base64");
            return json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}});
        }
    }
    json!({"type": "image", "source": {"type": "url", "url": url}})
}

fn finish_from_stop(stop: Option<&str>) -> &'static str {
    match stop {
        Some("max_tokens") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// Anthropic usage in OpenAI's shape: prompt tokens include cache reads and writes.
pub fn anthropic_usage_to_openai(u: &Value) -> Value {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let cached = n("cache_read_input_tokens");
    let prompt = n("input_tokens") + cached + n("cache_creation_input_tokens");
    let completion = n("output_tokens");
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    })
}

/// An Anthropic message as an OpenAI chat completion; `model` is what the client asked for.
pub fn messages_response_to_chat(msg: &Value, model: &str) -> Value {
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in msg
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(b.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => calls.push(tool_use_to_tool_call(b)),
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    json!({
        "id": msg.get("id").cloned().unwrap_or(Value::Null),
        "object": "chat.completion",
        "created": now_secs(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": finish_from_stop(msg.get("stop_reason").and_then(Value::as_str)),
            "logprobs": null,
        }],
        "usage": anthropic_usage_to_openai(msg.get("usage").unwrap_or(&Value::Null)),
    })
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn sse_data(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

fn sse_named(name: &str, v: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {v}\n\n"))
}

/// Turns an Anthropic event stream into OpenAI chat chunks (the usage chunk included; the relay
/// hides it from clients that did not ask).
#[derive(Debug)]
pub struct MessagesToChatStream {
    model: String,
    id: String,
    created: u64,
    /// Anthropic content index → OpenAI tool-call index.
    tool_index: Vec<(u64, u64)>,
    usage: Map<String, Value>,
    done: bool,
}

impl MessagesToChatStream {
    /// A translator answering as `model`.
    pub fn new(model: &str) -> Self {
        MessagesToChatStream {
            model: model.to_string(),
            id: String::new(),
            created: now_secs(),
            tool_index: Vec::new(),
            usage: Map::new(),
            done: false,
        }
    }

    fn chunk(&self, delta: Value, finish: Value) -> Bytes {
        sse_data(&json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}],
        }))
    }

    /// Translates one upstream event's data.
    pub fn event(&mut self, data: &[u8], out: &mut Vec<Bytes>) {
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        match v.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                if let Some(m) = v.get("message") {
                    self.id = m
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    self.merge_usage(m.get("usage"));
                }
                out.push(self.chunk(json!({"role": "assistant", "content": ""}), Value::Null));
            }
            Some("content_block_start") => {
                let block = v.get("content_block").unwrap_or(&Value::Null);
                if block.get("type").and_then(Value::as_str) == Some("tool_use") {
                    let idx = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                    let call = self.tool_index.len() as u64;
                    self.tool_index.push((idx, call));
                    out.push(self.chunk(
                        json!({"tool_calls": [{
                            "index": call, "id": block.get("id"), "type": "function",
                            "function": {"name": block.get("name"), "arguments": ""},
                        }]}),
                        Value::Null,
                    ));
                }
            }
            Some("content_block_delta") => {
                let delta = v.get("delta").unwrap_or(&Value::Null);
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        out.push(self.chunk(json!({"content": delta.get("text")}), Value::Null));
                    }
                    Some("input_json_delta") => {
                        let idx = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                        let call = self
                            .tool_index
                            .iter()
                            .find(|(i, _)| *i == idx)
                            .map(|(_, c)| *c)
                            .unwrap_or(0);
                        out.push(self.chunk(
                            json!({"tool_calls": [{"index": call, "function": {"arguments": delta.get("partial_json")}}]}),
                            Value::Null,
                        ));
                    }
                    _ => {}
                }
            }
            Some("message_delta") => {
                self.merge_usage(v.get("usage"));
                let stop = v.pointer("/delta/stop_reason").and_then(Value::as_str);
                out.push(self.chunk(json!({}), json!(finish_from_stop(stop))));
            }
            Some("message_stop") => self.finish(out),
            Some("error") => {
                out.push(sse_data(&json!({"error": {
                    "message": v.pointer("/error/message").cloned().unwrap_or(json!("upstream error")),
                    "type": v.pointer("/error/type").cloned().unwrap_or(json!("api_error")),
                    "param": null, "code": null,
                }})));
            }
            _ => {}
        }
    }

    fn merge_usage(&mut self, u: Option<&Value>) {
        if let Some(Value::Object(o)) = u {
            for (k, v) in o {
                if !v.is_null() {
                    self.usage.insert(k.clone(), v.clone());
                }
            }
        }
    }

    /// Ends the stream: the usage chunk and `[DONE]`, once.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) {
        if self.done {
            return;
        }
        self.done = true;
        out.push(sse_data(&json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [], "usage": anthropic_usage_to_openai(&Value::Object(self.usage.clone())),
        })));
        out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    }
}

// ---------------------------------------------------------------------------------------------
// Anthropic client → OpenAI-compatible target
// ---------------------------------------------------------------------------------------------

/// An Anthropic Messages request as an OpenAI chat request for `upstream_model`.
pub fn messages_request_to_chat(
    msg: &Value,
    upstream_model: &str,
) -> Result<Value, TranslateError> {
    let msgs = msg
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError("'messages' must be an array".into()))?;
    let mut out: Vec<Value> = Vec::new();
    match msg.get("system") {
        Some(s @ Value::String(_)) | Some(s @ Value::Array(_)) => {
            out.push(json!({"role": "system", "content": text_of(s)}));
        }
        _ => {}
    }
    for m in msgs {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        let content = m.get("content").unwrap_or(&Value::Null);
        let blocks: Vec<Value> = match content {
            Value::String(s) => vec![json!({"type": "text", "text": s})],
            Value::Array(a) => a.clone(),
            _ => Vec::new(),
        };
        if role == "assistant" {
            let mut text = String::new();
            let mut calls = Vec::new();
            for b in &blocks {
                match b.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        text.push_str(b.get("text").and_then(Value::as_str).unwrap_or(""))
                    }
                    Some("tool_use") => calls.push(tool_use_to_tool_call(b)),
                    _ => {}
                }
            }
            let mut am = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }});
            if !calls.is_empty() {
                am["tool_calls"] = Value::Array(calls);
            }
            out.push(am);
            continue;
        }
        // User turns: tool results become tool messages, the rest one user message.
        let mut parts = Vec::new();
        for b in &blocks {
            match b.get("type").and_then(Value::as_str) {
                Some("text") => parts.push(json!({"type": "text", "text": b.get("text")})),
                Some("image") => {
                    let src = b.get("source").unwrap_or(&Value::Null);
                    let url = match src.get("type").and_then(Value::as_str) {
                        Some("base64") => format!(
                            "data:{};base64,{}",
                            src.get("media_type")
                                .and_then(Value::as_str)
                                .unwrap_or("image/png"),
                            src.get("data").and_then(Value::as_str).unwrap_or("")
                        ),
                        _ => src
                            .get("url")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    };
                    parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
                }
                Some("tool_result") => out.push(json!({
                    "role": "tool",
                    "tool_call_id": b.get("tool_use_id"),
                    "content": text_of(b.get("content").unwrap_or(&Value::Null)),
                })),
                _ => {}
            }
        }
        if !parts.is_empty() {
            let all_text = parts.iter().all(|p| p["type"] == "text");
            let content = if all_text {
                json!(parts
                    .iter()
                    .filter_map(|p| p["text"].as_str())
                    .collect::<Vec<_>>()
                    .join(""))
            } else {
                Value::Array(parts)
            };
            out.push(json!({"role": "user", "content": content}));
        }
    }
    let mut req = Map::new();
    req.insert("model".into(), json!(upstream_model));
    req.insert("messages".into(), Value::Array(out));
    if let Some(max) = msg.get("max_tokens") {
        req.insert("max_tokens".into(), max.clone());
    }
    for k in ["temperature", "top_p"] {
        if let Some(v) = msg.get(k).filter(|v| !v.is_null()) {
            req.insert(k.into(), v.clone());
        }
    }
    if let Some(stop) = msg.get("stop_sequences").filter(|v| v.is_array()) {
        req.insert("stop".into(), stop.clone());
    }
    if msg.get("stream").and_then(Value::as_bool) == Some(true) {
        req.insert("stream".into(), json!(true));
        req.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(tools) = msg.get("tools").and_then(Value::as_array) {
        let tools: Vec<Value> = tools
            .iter()
            .filter(|t| t.get("input_schema").is_some())
            .map(|t| json!({"type": "function", "function": {
                "name": t.get("name"), "description": t.get("description").cloned().unwrap_or(json!("")),
                "parameters": t.get("input_schema"),
            }}))
            .collect();
        req.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = msg.get("tool_choice") {
        let mapped = match choice.get("type").and_then(Value::as_str) {
            Some("auto") => Some(json!("auto")),
            Some("any") => Some(json!("required")),
            Some("none") => Some(json!("none")),
            Some("tool") => {
                Some(json!({"type": "function", "function": {"name": choice.get("name")}}))
            }
            _ => None,
        };
        if let Some(m) = mapped {
            req.insert("tool_choice".into(), m);
        }
    }
    if let Some(user) = msg.pointer("/metadata/user_id") {
        req.insert("user".into(), user.clone());
    }
    Ok(Value::Object(req))
}

fn stop_from_finish(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls") | Some("function_call") => "tool_use",
        _ => "end_turn",
    }
}

/// OpenAI usage in Anthropic's shape: input tokens exclude cache reads.
pub fn openai_usage_to_anthropic(u: &Value) -> Value {
    let n = |p: &str| u.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let cached = n("/prompt_tokens_details/cached_tokens");
    json!({
        "input_tokens": n("/prompt_tokens").saturating_sub(cached),
        "output_tokens": n("/completion_tokens"),
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
    })
}

/// An OpenAI chat completion as an Anthropic message; `model` is what the client asked for.
pub fn chat_response_to_messages(chat: &Value, model: &str) -> Value {
    let choice = chat.pointer("/choices/0").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    if let Some(t) = choice.pointer("/message/content").and_then(Value::as_str) {
        if !t.is_empty() {
            content.push(json!({"type": "text", "text": t}));
        }
    }
    content.extend(
        choice
            .pointer("/message/tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(tool_call_to_tool_use),
    );
    let id = chat.get("id").and_then(Value::as_str).unwrap_or("");
    json!({
        "id": format!("msg_{id}"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_from_finish(choice.get("finish_reason").and_then(Value::as_str)),
        "stop_sequence": null,
        "usage": openai_usage_to_anthropic(chat.get("usage").unwrap_or(&Value::Null)),
    })
}

/// Turns OpenAI chat chunks into Anthropic stream events.
#[derive(Debug)]
pub struct ChatToMessagesStream {
    model: String,
    started: bool,
    /// Anthropic index of the open block, and whether it is text (else a tool call).
    open: Option<(u64, Option<u64>)>,
    next_index: u64,
    stop_reason: &'static str,
    usage: Value,
    done: bool,
}

impl ChatToMessagesStream {
    /// A translator answering as `model`.
    pub fn new(model: &str) -> Self {
        ChatToMessagesStream {
            model: model.to_string(),
            started: false,
            open: None,
            next_index: 0,
            stop_reason: "end_turn",
            usage: Value::Null,
            done: false,
        }
    }

    fn start(&mut self, id: &str, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        out.push(sse_named("message_start", &json!({"type": "message_start", "message": {
            "id": format!("msg_{id}"), "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }})));
    }

    fn close_block(&mut self, out: &mut Vec<Bytes>) {
        if let Some((idx, _)) = self.open.take() {
            out.push(sse_named(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": idx}),
            ));
        }
    }

    /// Translates one upstream chunk's data.
    pub fn event(&mut self, data: &[u8], out: &mut Vec<Bytes>) {
        if data == b"[DONE]" {
            self.finish(out);
            return;
        }
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        if let Some(err) = v.get("error") {
            out.push(sse_named(
                "error",
                &json!({"type": "error", "error": {
                    "type": "api_error",
                    "message": err.get("message").cloned().unwrap_or(json!("upstream error")),
                }}),
            ));
            return;
        }
        self.start(v.get("id").and_then(Value::as_str).unwrap_or(""), out);
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            self.usage = u.clone();
        }
        for choice in v
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let delta = choice.get("delta").unwrap_or(&Value::Null);
            if let Some(text) = delta
                .get("content")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
            {
                if !matches!(self.open, Some((_, None))) {
                    self.close_block(out);
                    let idx = self.next_index;
                    self.next_index += 1;
                    self.open = Some((idx, None));
                    out.push(sse_named(
                        "content_block_start",
                        &json!({"type": "content_block_start", "index": idx,
                        "content_block": {"type": "text", "text": ""}}),
                    ));
                }
                let idx = self.open.map(|(i, _)| i).unwrap_or(0);
                out.push(sse_named(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": idx,
                    "delta": {"type": "text_delta", "text": text}}),
                ));
            }
            for call in delta
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let call_index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                if self.open.map(|(_, c)| c) != Some(Some(call_index)) {
                    self.close_block(out);
                    let idx = self.next_index;
                    self.next_index += 1;
                    self.open = Some((idx, Some(call_index)));
                    out.push(sse_named("content_block_start", &json!({"type": "content_block_start", "index": idx,
                        "content_block": {"type": "tool_use", "id": call.get("id"), "name": call.pointer("/function/name"), "input": {}}})));
                }
                if let Some(args) = call
                    .pointer("/function/arguments")
                    .and_then(Value::as_str)
                    .filter(|a| !a.is_empty())
                {
                    let idx = self.open.map(|(i, _)| i).unwrap_or(0);
                    out.push(sse_named(
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": idx,
                        "delta": {"type": "input_json_delta", "partial_json": args}}),
                    ));
                }
            }
            if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
                self.stop_reason = stop_from_finish(Some(f));
            }
        }
    }

    /// Ends the stream: the open block, `message_delta` with usage, `message_stop`; once.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) {
        if self.done {
            return;
        }
        self.done = true;
        self.start("", out);
        self.close_block(out);
        let usage = openai_usage_to_anthropic(&self.usage);
        out.push(sse_named(
            "message_delta",
            &json!({"type": "message_delta",
            "delta": {"stop_reason": self.stop_reason, "stop_sequence": null},
            "usage": usage}),
        ));
        out.push(sse_named("message_stop", &json!({"type": "message_stop"})));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse_transcript::{event_data, event_name, frame_all};

    fn datas(events: &[Bytes]) -> Vec<Value> {
        events
            .iter()
            .filter_map(|e| event_data(e))
            .filter(|d| d != b"[DONE]")
            .map(|d| serde_json::from_slice(&d).unwrap())
            .collect()
    }

    #[test]
    fn chat_request_becomes_messages_request() {
        let chat = json!({
            "model": "claude", "max_completion_tokens": 100, "temperature": 0.2, "stop": "END",
            "stream": true, "user": "u1",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{\"x\":1}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
                {"role": "user", "content": "thanks"}
            ],
            "tools": [{"type": "function", "function": {"name": "look", "parameters": {"type": "object"}}}],
            "tool_choice": "required",
        });
        let m = chat_request_to_messages(&chat, "claude-sonnet-4").unwrap();
        assert_eq!(m["model"], "claude-sonnet-4");
        assert_eq!(m["system"], "be brief");
        assert_eq!(m["max_tokens"], 100);
        assert_eq!(m["stop_sequences"], json!(["END"]));
        assert_eq!(m["metadata"]["user_id"], "u1");
        assert_eq!(m["tool_choice"], json!({"type": "any"}));
        assert_eq!(m["tools"][0]["input_schema"], json!({"type": "object"}));
        let msgs = m["messages"].as_array().unwrap();
        // user, assistant(tool_use), user(tool_result + "thanks") — consecutive users merged.
        assert_eq!(msgs.len(), 3, "{m}");
        assert_eq!(msgs[0]["content"][1]["source"]["media_type"], "image/png");
        assert_eq!(msgs[1]["content"][0]["type"], "tool_use");
        assert_eq!(msgs[1]["content"][0]["input"], json!({"x": 1}));
        assert_eq!(msgs[2]["content"][0]["type"], "tool_result");
        assert_eq!(msgs[2]["content"][1]["text"], "thanks");
        // max_tokens defaults, since Anthropic requires it.
        let m = chat_request_to_messages(&json!({"messages": []}), "c").unwrap();
        assert_eq!(m["max_tokens"], DEFAULT_MAX_TOKENS);
        assert!(chat_request_to_messages(&json!({"messages": [{"role": "wizard"}]}), "c").is_err());
    }

    #[test]
    fn messages_response_becomes_chat_completion() {
        let msg = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [{"type": "text", "text": "Let me check."},
                        {"type": "tool_use", "id": "toolu_1", "name": "look", "input": {"x": 1}}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 4, "cache_creation_input_tokens": 2}
        });
        let c = messages_response_to_chat(&msg, "my-claude");
        assert_eq!(c["model"], "my-claude");
        assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(c["choices"][0]["message"]["content"], "Let me check.");
        assert_eq!(
            c["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"x\":1}"
        );
        assert_eq!(c["usage"]["prompt_tokens"], 16);
        assert_eq!(c["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
        assert_eq!(c["usage"]["total_tokens"], 21);
    }

    const ANTHROPIC_STREAM: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude\",\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: ping\ndata: {\"type\":\"ping\"}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"look\",\"input\":{}}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"x\\\":\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"1}\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":9}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

    #[test]
    fn anthropic_stream_becomes_chat_chunks() {
        let mut t = MessagesToChatStream::new("my-claude");
        let mut out = Vec::new();
        for e in frame_all(&[ANTHROPIC_STREAM.as_bytes()]) {
            if let Some(d) = event_data(&e) {
                t.event(&d, &mut out);
            }
        }
        t.finish(&mut out); // idempotent after message_stop
        let chunks = datas(&out);
        assert!(out.last().unwrap().ends_with(b"data: [DONE]\n\n"));
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        let text: String = chunks
            .iter()
            .filter_map(|c| {
                c.pointer("/choices/0/delta/content")
                    .and_then(Value::as_str)
            })
            .collect();
        assert_eq!(text, "Hi");
        let args: String = chunks
            .iter()
            .filter_map(|c| {
                c.pointer("/choices/0/delta/tool_calls/0/function/arguments")
                    .and_then(Value::as_str)
            })
            .collect();
        assert_eq!(args, "{\"x\":1}");
        assert!(chunks
            .iter()
            .any(|c| c.pointer("/choices/0/finish_reason") == Some(&json!("tool_calls"))));
        let usage = chunks.last().unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["prompt_tokens"], 12);
        assert_eq!(usage["usage"]["completion_tokens"], 9);
        assert_eq!(
            out.iter()
                .filter(|e| e.ends_with(b"data: [DONE]\n\n"))
                .count(),
            1
        );
    }

    #[test]
    fn messages_request_becomes_chat_request() {
        let msg = json!({
            "model": "claude-via-openai", "max_tokens": 64, "stream": true,
            "system": [{"type": "text", "text": "be brief"}],
            "messages": [
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "look", "input": {"x": 1}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "a cat"}]},
                                              {"type": "text", "text": "and?"}]}
            ],
            "tools": [{"name": "look", "description": "d", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "look"},
        });
        let c = messages_request_to_chat(&msg, "gpt-4o").unwrap();
        assert_eq!(c["model"], "gpt-4o");
        assert_eq!(c["stream_options"]["include_usage"], true);
        let m = c["messages"].as_array().unwrap();
        assert_eq!(m[0], json!({"role": "system", "content": "be brief"}));
        assert_eq!(m[1], json!({"role": "user", "content": "hello"}));
        assert_eq!(m[2]["tool_calls"][0]["function"]["arguments"], "{\"x\":1}");
        assert_eq!(
            m[3],
            json!({"role": "tool", "tool_call_id": "t1", "content": "a cat"})
        );
        assert_eq!(m[4], json!({"role": "user", "content": "and?"}));
        assert_eq!(
            c["tools"][0]["function"]["parameters"],
            json!({"type": "object"})
        );
        assert_eq!(c["tool_choice"]["function"]["name"], "look");
    }

    #[test]
    fn chat_response_becomes_message() {
        let chat = json!({"id": "c1", "choices": [{"index": 0, "finish_reason": "length",
            "message": {"role": "assistant", "content": "partial"}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 4}}});
        let m = chat_response_to_messages(&chat, "claude-alias");
        assert_eq!(m["type"], "message");
        assert_eq!(m["model"], "claude-alias");
        assert_eq!(m["stop_reason"], "max_tokens");
        assert_eq!(m["content"][0]["text"], "partial");
        assert_eq!(m["usage"]["input_tokens"], 6);
        assert_eq!(m["usage"]["cache_read_input_tokens"], 4);
        assert_eq!(m["usage"]["output_tokens"], 3);
    }

    #[test]
    fn chat_stream_becomes_anthropic_events() {
        let chunks = [
            json!({"id": "c1", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
            json!({"id": "c1", "choices": [{"index": 0, "delta": {"content": "Hel"}}]}),
            json!({"id": "c1", "choices": [{"index": 0, "delta": {"content": "lo"}}]}),
            json!({"id": "c1", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "look", "arguments": ""}}]}}]}),
            json!({"id": "c1", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}}]}),
            json!({"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
            json!({"id": "c1", "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 4}}),
        ];
        let mut t = ChatToMessagesStream::new("claude-alias");
        let mut out = Vec::new();
        for c in &chunks {
            t.event(c.to_string().as_bytes(), &mut out);
        }
        t.event(b"[DONE]", &mut out);
        t.finish(&mut out);
        let names: Vec<String> = out
            .iter()
            .map(|e| String::from_utf8_lossy(event_name(e).unwrap()).into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let events = datas(&out);
        assert_eq!(events[5]["content_block"]["type"], "tool_use");
        assert_eq!(events[8]["delta"]["stop_reason"], "tool_use");
        assert_eq!(events[8]["usage"]["output_tokens"], 4);
        assert_eq!(events[8]["usage"]["input_tokens"], 7);
    }
}
