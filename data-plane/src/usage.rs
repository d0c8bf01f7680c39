//! What a request log needs to know about a response beyond its bytes: token usage and tool
//! counts, read from OpenAI chat-completion shapes (whole responses and stream chunks).

use std::collections::BTreeSet;

use serde_json::Value;
use weir_proto::logs::Usage;

/// Usage from an OpenAI `usage` object; `None` when absent or null.
pub fn from_openai_usage(u: &Value) -> Option<Usage> {
    let obj = u.as_object()?;
    let n = |v: Option<&Value>| v.and_then(Value::as_u64);
    let input = n(obj.get("prompt_tokens")).or(n(obj.get("input_tokens")));
    let output = n(obj.get("completion_tokens")).or(n(obj.get("output_tokens")));
    let cached = n(obj
        .get("prompt_tokens_details")
        .or(obj.get("input_tokens_details"))
        .and_then(|d| d.get("cached_tokens")));
    let reasoning = n(obj
        .get("completion_tokens_details")
        .or(obj.get("output_tokens_details"))
        .and_then(|d| d.get("reasoning_tokens")));
    let total = n(obj.get("total_tokens")).or(match (input, output) {
        (Some(i), Some(o)) => i.checked_add(o),
        _ => None,
    });
    if input.is_none() && output.is_none() && total.is_none() {
        return None;
    }
    Some(Usage {
        input_tokens: input,
        output_tokens: output,
        cached_input_tokens: cached,
        reasoning_tokens: reasoning,
        total_tokens: total,
    })
}

/// Usage from an Anthropic `usage` object, normalised: input counts cache reads and writes too
/// (Anthropic's `input_tokens` excludes them), cached input is the cache reads.
pub fn from_anthropic_usage(u: &Value) -> Option<Usage> {
    let obj = u.as_object()?;
    let n = |k: &str| obj.get(k).and_then(Value::as_u64);
    let (input, output) = (n("input_tokens"), n("output_tokens"));
    if input.is_none() && output.is_none() {
        return None;
    }
    let cached = n("cache_read_input_tokens");
    let input =
        input.map(|i| i + cached.unwrap_or(0) + n("cache_creation_input_tokens").unwrap_or(0));
    Some(Usage {
        input_tokens: input,
        output_tokens: output,
        cached_input_tokens: cached,
        reasoning_tokens: None,
        total_tokens: match (input, output) {
            (Some(i), Some(o)) => i.checked_add(o),
            _ => None,
        },
    })
}

/// Usage and invoked tool calls of a whole (non-streamed) response body of `operation`.
pub fn response_facts(operation: &str, body: &Value) -> (Option<Usage>, Option<u32>) {
    let usage = body.get("usage");
    match operation {
        "messages" => {
            let calls = body
                .get("content")
                .and_then(Value::as_array)
                .map(|blocks| blocks.iter().filter(|b| b["type"] == "tool_use").count() as u32);
            (usage.and_then(from_anthropic_usage), calls)
        }
        "responses" => {
            let calls = body.get("output").and_then(Value::as_array).map(|items| {
                items
                    .iter()
                    .filter(|i| i["type"] == "function_call")
                    .count() as u32
            });
            (usage.and_then(from_openai_usage), calls)
        }
        "embeddings" => (usage.and_then(from_openai_usage), None),
        _ => {
            let calls = body
                .get("choices")
                .is_some()
                .then(|| invoked_tools_in_response(body));
            (usage.and_then(from_openai_usage), calls)
        }
    }
}

/// Number of tools offered by a chat request (`None` when it offers none: not recorded).
pub fn exposed_tools(request: &Value) -> Option<u32> {
    let tools = request.get("tools")?.as_array()?;
    let functions = request
        .get("functions")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    Some((tools.len() + functions) as u32)
}

/// Tool calls in a whole chat-completion response.
pub fn invoked_tools_in_response(response: &Value) -> u32 {
    response
        .get("choices")
        .and_then(Value::as_array)
        .map(|choices| {
            choices
                .iter()
                .map(|c| {
                    c.pointer("/message/tool_calls")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len)
                })
                .sum::<usize>() as u32
        })
        .unwrap_or(0)
}

/// Accumulates what a chat-completion stream says, chunk by chunk.
#[derive(Debug, Default)]
pub struct StreamFacts {
    /// The latest usage seen (providers may send it more than once; the last is complete).
    pub usage: Option<Usage>,
    /// Distinct (choice, tool-call index) pairs seen in deltas.
    tool_calls: BTreeSet<(u64, u64)>,
    /// An `error` object sent in the stream, if any.
    pub error: Option<Value>,
    /// The upstream's response model.
    pub model: Option<String>,
    /// Anthropic usage fields merged across `message_start` and `message_delta`.
    anthropic_usage: serde_json::Map<String, Value>,
    /// Tool calls counted from Anthropic and Responses events.
    other_tool_calls: u32,
}

impl StreamFacts {
    /// Reads one event's data.
    pub fn observe(&mut self, chunk: &Value) {
        match chunk.get("type").and_then(Value::as_str) {
            // Anthropic Messages events.
            Some("message_start") => {
                self.merge_anthropic(chunk.pointer("/message/usage"));
                if self.model.is_none() {
                    self.model = chunk
                        .pointer("/message/model")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                }
                return;
            }
            Some("message_delta") => {
                self.merge_anthropic(chunk.get("usage"));
                return;
            }
            Some("content_block_start") => {
                if chunk.pointer("/content_block/type") == Some(&Value::from("tool_use")) {
                    self.other_tool_calls += 1;
                }
                return;
            }
            // Responses API events.
            Some("response.output_item.added")
                if chunk.pointer("/item/type") == Some(&Value::from("function_call")) =>
            {
                self.other_tool_calls += 1;
            }
            Some("error") => {
                self.error = chunk.get("error").cloned().or_else(|| Some(chunk.clone()));
                return;
            }
            _ => {}
        }
        if let Some(u) = chunk.get("usage").and_then(from_openai_usage) {
            self.usage = Some(u);
        }
        if let Some(u) = chunk.pointer("/response/usage").and_then(from_openai_usage) {
            self.usage = Some(u);
        }
        if let Some(e) = chunk.get("error").filter(|e| !e.is_null()) {
            self.error = Some(e.clone());
        }
        if self.model.is_none() {
            self.model = chunk
                .get("model")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        if let Some(choices) = chunk.get("choices").and_then(Value::as_array) {
            for (pos, c) in choices.iter().enumerate() {
                let choice = c.get("index").and_then(Value::as_u64).unwrap_or(pos as u64);
                if let Some(calls) = c.pointer("/delta/tool_calls").and_then(Value::as_array) {
                    for (i, call) in calls.iter().enumerate() {
                        let idx = call
                            .get("index")
                            .and_then(Value::as_u64)
                            .unwrap_or(i as u64);
                        self.tool_calls.insert((choice, idx));
                    }
                }
            }
        }
    }

    fn merge_anthropic(&mut self, u: Option<&Value>) {
        if let Some(Value::Object(o)) = u {
            for (k, v) in o {
                if !v.is_null() {
                    self.anthropic_usage.insert(k.clone(), v.clone());
                }
            }
            self.usage = from_anthropic_usage(&Value::Object(self.anthropic_usage.clone()));
        }
    }

    /// Tool calls invoked across the stream.
    pub fn invoked_tools(&self) -> u32 {
        self.tool_calls.len() as u32 + self.other_tool_calls
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn openai_usage_shapes() {
        let u = from_openai_usage(&json!({
            "prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
            "prompt_tokens_details": {"cached_tokens": 40},
            "completion_tokens_details": {"reasoning_tokens": 8}
        }))
        .unwrap();
        assert_eq!(u.input_tokens, Some(100));
        assert_eq!(u.cached_input_tokens, Some(40));
        assert_eq!(u.reasoning_tokens, Some(8));
        assert_eq!(u.total_tokens, Some(120));
        // Responses API names.
        let u = from_openai_usage(&json!({"input_tokens": 5, "output_tokens": 7})).unwrap();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.total_tokens),
            (Some(5), Some(7), Some(12))
        );
        assert!(from_openai_usage(&Value::Null).is_none());
        assert!(from_openai_usage(&json!({})).is_none());
        // Zeros are real values, not missing ones.
        let u = from_openai_usage(&json!({"prompt_tokens": 0, "completion_tokens": 0})).unwrap();
        assert_eq!(u.output_tokens, Some(0));
    }

    #[test]
    fn anthropic_usage_and_streams() {
        let u = from_anthropic_usage(&json!({"input_tokens": 10, "output_tokens": 5,
            "cache_read_input_tokens": 4, "cache_creation_input_tokens": 2}))
        .unwrap();
        assert_eq!(
            (
                u.input_tokens,
                u.cached_input_tokens,
                u.output_tokens,
                u.total_tokens
            ),
            (Some(16), Some(4), Some(5), Some(21))
        );
        let mut f = StreamFacts::default();
        f.observe(&json!({"type": "message_start", "message": {"model": "claude", "usage": {"input_tokens": 12, "output_tokens": 1}}}));
        f.observe(&json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use"}}));
        f.observe(&json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}));
        let u = f.usage.unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (Some(12), Some(9)));
        assert_eq!(f.invoked_tools(), 1);
        assert_eq!(f.model.as_deref(), Some("claude"));
        let (u, calls) = response_facts(
            "messages",
            &json!({"content": [{"type": "text"}, {"type": "tool_use"}],
            "usage": {"input_tokens": 3, "output_tokens": 4}}),
        );
        assert_eq!((u.unwrap().total_tokens, calls), (Some(7), Some(1)));
        let (u, calls) = response_facts(
            "responses",
            &json!({"output": [{"type": "function_call"}, {"type": "message"}],
            "usage": {"input_tokens": 3, "output_tokens": 4, "input_tokens_details": {"cached_tokens": 1}}}),
        );
        assert_eq!((u.unwrap().cached_input_tokens, calls), (Some(1), Some(1)));
        let (u, calls) = response_facts(
            "embeddings",
            &json!({"usage": {"prompt_tokens": 8, "total_tokens": 8}}),
        );
        assert_eq!((u.unwrap().input_tokens, calls), (Some(8), None));
    }

    #[test]
    fn tools() {
        assert_eq!(exposed_tools(&json!({"tools": [{}, {}]})), Some(2));
        assert_eq!(exposed_tools(&json!({"tools": []})), Some(0));
        assert_eq!(exposed_tools(&json!({"model": "m"})), None);
        let resp = json!({"choices": [{"message": {"tool_calls": [{}, {}, {}]}}]});
        assert_eq!(invoked_tools_in_response(&resp), 3);
    }

    #[test]
    fn stream_facts_keep_last_usage_and_count_calls() {
        let mut f = StreamFacts::default();
        f.observe(&json!({"model": "gpt", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "a"}]}}], "usage": null}));
        f.observe(&json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{"}}]}}]}));
        f.observe(&json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 1}]}}]}));
        f.observe(&json!({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}));
        assert_eq!(f.invoked_tools(), 2);
        assert_eq!(f.usage.unwrap().total_tokens, Some(7));
        assert_eq!(f.model.as_deref(), Some("gpt"));
    }
}
