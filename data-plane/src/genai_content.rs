//! Message content for spans in the GenAI conventions' JSON shapes (`gen_ai.input.messages`,
//! `gen_ai.output.messages`, `gen_ai.system_instructions`), read from the request log's payload:
//! already redacted and capped by the payload policy, never the raw request. Pure.

use serde_json::{json, Map, Value};

/// The three content attributes, as JSON strings; empty when the payload holds nothing usable.
#[derive(Debug, Default, PartialEq)]
pub struct Content {
    /// `gen_ai.system_instructions`.
    pub system: Option<String>,
    /// `gen_ai.input.messages`.
    pub input: Option<String>,
    /// `gen_ai.output.messages`.
    pub output: Option<String>,
}

/// Reads the stored request payload (`{headers, body}`) and response payload (`{body}` or a
/// stream's `{stream, events}`) of `operation`.
pub fn from_payloads(operation: &str, request: &[u8], response: &[u8]) -> Content {
    let req: Value = serde_json::from_slice(request).unwrap_or(Value::Null);
    let resp: Value = serde_json::from_slice(response).unwrap_or(Value::Null);
    let body = &req["body"];
    let (system, input) = match operation {
        "responses" => responses_input(body),
        "messages" => anthropic_input(body),
        "chat_completions" => chat_input(body),
        _ => (Vec::new(), Vec::new()),
    };
    let output = if resp.get("stream") == Some(&Value::Bool(true)) {
        stream_output(
            operation,
            resp["events"].as_array().map_or(&[][..], Vec::as_slice),
        )
    } else {
        body_output(operation, &resp["body"])
    };
    let text = |v: Vec<Value>| (!v.is_empty()).then(|| Value::Array(v).to_string());
    Content {
        system: text(system),
        input: text(input),
        output: text(output),
    }
}

fn text_part(s: &str) -> Value {
    json!({"type": "text", "content": s})
}

/// Parts of an OpenAI-style `content`: a string, or an array of typed parts.
fn openai_parts(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) => vec![text_part(s)],
        Value::Array(items) => items
            .iter()
            .filter_map(|p| match p["type"].as_str() {
                Some("text" | "input_text" | "output_text") => p["text"].as_str().map(text_part),
                Some(other) => Some(json!({"type": other})),
                None => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn chat_input(body: &Value) -> (Vec<Value>, Vec<Value>) {
    let (mut system, mut input) = (Vec::new(), Vec::new());
    for m in body["messages"].as_array().into_iter().flatten() {
        let role = m["role"].as_str().unwrap_or("user");
        let mut parts = openai_parts(&m["content"]);
        if matches!(role, "system" | "developer") {
            system.extend(parts);
            continue;
        }
        for call in m["tool_calls"].as_array().into_iter().flatten() {
            parts.push(json!({
                "type": "tool_call",
                "id": call["id"],
                "name": call["function"]["name"],
                "arguments": parse_json_string(&call["function"]["arguments"]),
            }));
        }
        if role == "tool" {
            parts = vec![json!({
                "type": "tool_call_response",
                "id": m["tool_call_id"],
                "response": m["content"],
            })];
        }
        input.push(json!({"role": role, "parts": parts}));
    }
    (system, input)
}

fn anthropic_parts(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) => vec![text_part(s)],
        Value::Array(blocks) => blocks
            .iter()
            .map(|b| match b["type"].as_str() {
                Some("text") => text_part(b["text"].as_str().unwrap_or_default()),
                Some("tool_use") => json!({
                    "type": "tool_call", "id": b["id"], "name": b["name"], "arguments": b["input"],
                }),
                Some("tool_result") => json!({
                    "type": "tool_call_response", "id": b["tool_use_id"], "response": b["content"],
                }),
                other => json!({"type": other.unwrap_or("unknown")}),
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn anthropic_input(body: &Value) -> (Vec<Value>, Vec<Value>) {
    let system = anthropic_parts(&body["system"]);
    let input = body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            json!({"role": m["role"].as_str().unwrap_or("user"), "parts": anthropic_parts(&m["content"])})
        })
        .collect();
    (system, input)
}

fn responses_input(body: &Value) -> (Vec<Value>, Vec<Value>) {
    let system = match body["instructions"].as_str() {
        Some(s) => vec![text_part(s)],
        None => Vec::new(),
    };
    let input = match &body["input"] {
        Value::String(s) => vec![json!({"role": "user", "parts": [text_part(s)]})],
        Value::Array(items) => items
            .iter()
            .filter(|i| i.get("role").is_some())
            .map(|i| json!({"role": i["role"], "parts": openai_parts(&i["content"])}))
            .collect(),
        _ => Vec::new(),
    };
    (system, input)
}

fn body_output(operation: &str, body: &Value) -> Vec<Value> {
    match operation {
        "chat_completions" => body["choices"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let m = &c["message"];
                let mut parts = openai_parts(&m["content"]);
                for call in m["tool_calls"].as_array().into_iter().flatten() {
                    parts.push(json!({
                        "type": "tool_call",
                        "id": call["id"],
                        "name": call["function"]["name"],
                        "arguments": parse_json_string(&call["function"]["arguments"]),
                    }));
                }
                json!({"role": "assistant", "parts": parts, "finish_reason": c["finish_reason"]})
            })
            .collect(),
        "messages" => match body.get("content") {
            Some(content) => vec![json!({
                "role": "assistant",
                "parts": anthropic_parts(content),
                "finish_reason": body["stop_reason"],
            })],
            None => Vec::new(),
        },
        "responses" => {
            let parts: Vec<Value> = body["output"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|item| match item["type"].as_str() {
                    Some("message") => openai_parts(&item["content"]),
                    Some("function_call") => vec![json!({
                        "type": "tool_call",
                        "id": item["call_id"],
                        "name": item["name"],
                        "arguments": parse_json_string(&item["arguments"]),
                    })],
                    _ => Vec::new(),
                })
                .collect();
            if parts.is_empty() {
                Vec::new()
            } else {
                vec![json!({"role": "assistant", "parts": parts, "finish_reason": body["status"]})]
            }
        }
        _ => Vec::new(),
    }
}

/// The answer of a stream, reassembled from the kept events' text deltas.
fn stream_output(operation: &str, events: &[Value]) -> Vec<Value> {
    let mut text = String::new();
    let mut finish = Value::Null;
    for e in events {
        match operation {
            "chat_completions" => {
                for c in e["choices"].as_array().into_iter().flatten() {
                    if let Some(t) = c["delta"]["content"].as_str() {
                        text.push_str(t);
                    }
                    if !c["finish_reason"].is_null() {
                        finish = c["finish_reason"].clone();
                    }
                }
            }
            "messages" => {
                if let Some(t) = e["delta"]["text"].as_str() {
                    text.push_str(t);
                }
                if !e["delta"]["stop_reason"].is_null() {
                    finish = e["delta"]["stop_reason"].clone();
                }
            }
            "responses" => {
                if e["type"] == "response.output_text.delta" {
                    text.push_str(e["delta"].as_str().unwrap_or_default());
                }
                if e["type"] == "response.completed" {
                    finish = e["response"]["status"].clone();
                }
            }
            _ => {}
        }
    }
    if text.is_empty() {
        return Vec::new();
    }
    let mut m = Map::new();
    m.insert("role".into(), "assistant".into());
    m.insert("parts".into(), json!([text_part(&text)]));
    m.insert("finish_reason".into(), finish);
    vec![Value::Object(m)]
}

/// The older indexed attributes (`gen_ai.prompt.{i}.role/content`,
/// `gen_ai.completion.{i}.role/content/finish_reason`): system instructions first, then the
/// input messages; text parts joined, other parts as their JSON.
pub fn legacy_attributes(c: &Content) -> Vec<(String, String)> {
    let parse = |s: &Option<String>| -> Vec<Value> {
        s.as_deref()
            .and_then(|t| serde_json::from_str::<Vec<Value>>(t).ok())
            .unwrap_or_default()
    };
    let flatten = |parts: &Value| -> String {
        parts
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| match p["content"].as_str() {
                Some(t) if p["type"] == "text" => t.to_string(),
                _ => p.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut out = Vec::new();
    let mut i = 0;
    let system = parse(&c.system);
    if !system.is_empty() {
        out.push((format!("gen_ai.prompt.{i}.role"), "system".to_string()));
        out.push((
            format!("gen_ai.prompt.{i}.content"),
            flatten(&Value::Array(system)),
        ));
        i += 1;
    }
    for m in parse(&c.input) {
        out.push((
            format!("gen_ai.prompt.{i}.role"),
            m["role"].as_str().unwrap_or("user").to_string(),
        ));
        out.push((format!("gen_ai.prompt.{i}.content"), flatten(&m["parts"])));
        i += 1;
    }
    for (j, m) in parse(&c.output).into_iter().enumerate() {
        out.push((
            format!("gen_ai.completion.{j}.role"),
            m["role"].as_str().unwrap_or("assistant").to_string(),
        ));
        out.push((
            format!("gen_ai.completion.{j}.content"),
            flatten(&m["parts"]),
        ));
        if let Some(f) = m["finish_reason"].as_str() {
            out.push((
                format!("gen_ai.completion.{j}.finish_reason"),
                f.to_string(),
            ));
        }
    }
    out
}

/// Tool-call arguments arrive as a JSON string; keep them as JSON when they parse.
fn parse_json_string(v: &Value) -> Value {
    v.as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_else(|| v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn chat_with_system_tools_and_answer() {
        let req = bytes(json!({"headers": {}, "body": {"messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "function": {"name": "get", "arguments": "{\"city\":\"Oslo\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "rain"}
        ]}}));
        let resp = bytes(
            json!({"body": {"choices": [{"message": {"role": "assistant", "content": "Rain."}, "finish_reason": "stop"}]}}),
        );
        let c = from_payloads("chat_completions", &req, &resp);
        assert_eq!(
            c.system.as_deref(),
            Some(r#"[{"content":"be brief","type":"text"}]"#)
        );
        let input: Value = serde_json::from_str(c.input.as_deref().unwrap()).unwrap();
        assert_eq!(input.as_array().unwrap().len(), 3);
        assert_eq!(input[1]["parts"][0]["type"], "tool_call");
        assert_eq!(input[1]["parts"][0]["arguments"]["city"], "Oslo");
        assert_eq!(input[2]["parts"][0]["type"], "tool_call_response");
        let output: Value = serde_json::from_str(c.output.as_deref().unwrap()).unwrap();
        assert_eq!(output[0]["parts"][0]["content"], "Rain.");
        assert_eq!(output[0]["finish_reason"], "stop");
    }

    #[test]
    fn streams_anthropic_and_responses() {
        let req = bytes(
            json!({"body": {"system": "sys", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}}),
        );
        let resp = bytes(json!({"stream": true, "events": [
            {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Hel"}},
            {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "lo"}},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}}
        ]}));
        let c = from_payloads("messages", &req, &resp);
        let output: Value = serde_json::from_str(c.output.as_deref().unwrap()).unwrap();
        assert_eq!(output[0]["parts"][0]["content"], "Hello");
        assert_eq!(output[0]["finish_reason"], "end_turn");
        assert!(c.system.unwrap().contains("sys"));

        let req = bytes(json!({"body": {"instructions": "terse", "input": "hello"}}));
        let resp = bytes(
            json!({"body": {"status": "completed", "output": [{"type": "message", "content": [{"type": "output_text", "text": "Hi"}]}]}}),
        );
        let c = from_payloads("responses", &req, &resp);
        assert!(c.input.unwrap().contains("hello"));
        assert!(c.output.unwrap().contains("\"Hi\""));
    }

    #[test]
    fn legacy_indexed_attributes() {
        let req = bytes(json!({"body": {"messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"}]}}));
        let resp = bytes(
            json!({"body": {"choices": [{"message": {"content": "Hello"}, "finish_reason": "stop"}]}}),
        );
        let got = legacy_attributes(&from_payloads("chat_completions", &req, &resp));
        let want: Vec<(String, String)> = [
            ("gen_ai.prompt.0.role", "system"),
            ("gen_ai.prompt.0.content", "be brief"),
            ("gen_ai.prompt.1.role", "user"),
            ("gen_ai.prompt.1.content", "hi"),
            ("gen_ai.completion.0.role", "assistant"),
            ("gen_ai.completion.0.content", "Hello"),
            ("gen_ai.completion.0.finish_reason", "stop"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
        assert!(legacy_attributes(&Content::default()).is_empty());
    }

    #[test]
    fn nothing_usable_is_nothing() {
        for (req, resp) in [
            (&b""[..], &b""[..]),
            (&b"not json"[..], &b"[1,2]"[..]),
            (
                &br#"{"weir_truncated": true, "original_bytes": 99999}"#[..],
                &br#"{"body": null}"#[..],
            ),
        ] {
            assert_eq!(
                from_payloads("chat_completions", req, resp),
                Content::default()
            );
        }
        // Embeddings carry no messages.
        let req = bytes(json!({"body": {"input": ["a"]}}));
        assert_eq!(from_payloads("embeddings", &req, &req), Content::default());
    }
}
