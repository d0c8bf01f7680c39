//! What a request log needs to know about a response beyond its bytes: token usage and tool
//! counts, read from OpenAI chat-completion shapes (whole responses and stream chunks).

use std::collections::BTreeSet;

use serde_json::Value;
use weir_proto::logs::Usage;

/// Usage from an OpenAI-shaped `usage` object (Chat Completions or Responses names); `None`
/// when absent or null. Also reads what OpenAI-compatible providers add to the shape:
/// OpenRouter's own `cost`, and reasoning that Gemini's compatibility endpoint leaves out of
/// `completion_tokens` (seen as `total_tokens` above prompt + completion), which is added back
/// so output always includes reasoning.
///
/// Sources: OpenAI `CompletionUsage` and `ResponseUsage`
/// (https://platform.openai.com/docs/api-reference/chat/object, openai-python
/// `types/completion_usage.py`, `types/responses/response_usage.py`): cached tokens are inside
/// prompt tokens, reasoning and audio inside completion tokens. OpenRouter
/// (https://openrouter.ai/docs/use-cases/usage-accounting): `usage.cost` in credits (US
/// dollars). Gemini's OpenAI compatibility (openai/openai-python#2544): thoughts outside
/// `completion_tokens`, inside `total_tokens`.
pub fn from_openai_usage(u: &Value) -> Option<Usage> {
    let obj = u.as_object()?;
    let n = |v: Option<&Value>| v.and_then(Value::as_u64);
    let prompt = n(obj.get("prompt_tokens")).or(n(obj.get("input_tokens")));
    let completion = n(obj.get("completion_tokens")).or(n(obj.get("output_tokens")));
    let in_details = obj
        .get("prompt_tokens_details")
        .or(obj.get("input_tokens_details"));
    let out_details = obj
        .get("completion_tokens_details")
        .or(obj.get("output_tokens_details"));
    let detail = |d: Option<&Value>, k: &str| n(d.and_then(|d| d.get(k)));
    let reported_total = n(obj.get("total_tokens"));
    if prompt.is_none() && completion.is_none() && reported_total.is_none() {
        return None;
    }
    let mut reasoning = detail(out_details, "reasoning_tokens");
    let mut output = completion;
    // Reasoning reported apart: the total says so.
    if let (Some(p), Some(c), Some(t)) = (prompt, completion, reported_total) {
        let apart = t.saturating_sub(p.saturating_add(c));
        if apart > 0 {
            output = Some(c.saturating_add(apart));
            reasoning = Some(reasoning.unwrap_or(0).max(apart));
        }
    }
    let total = reported_total.or(match (prompt, output) {
        (Some(i), Some(o)) => i.checked_add(o),
        _ => None,
    });
    Some(Usage {
        input_tokens: prompt,
        output_tokens: output,
        cached_input_tokens: detail(in_details, "cached_tokens"),
        reasoning_tokens: reasoning,
        total_tokens: total,
        audio_input_tokens: detail(in_details, "audio_tokens").filter(|t| *t > 0),
        audio_output_tokens: detail(out_details, "audio_tokens").filter(|t| *t > 0),
        provider_cost_pusd: obj
            .get("cost")
            .and_then(Value::as_number)
            .and_then(weir_proto::pricing::usd_number_to_pusd),
        ..Usage::default()
    })
}

/// Usage from an Anthropic `usage` object, normalised: input counts cache reads and writes too
/// (Anthropic's `input_tokens` excludes them), cached input is the cache reads, and cache
/// writes are split by lifetime when `cache_creation` says so (else they are 5-minute writes,
/// the default lifetime).
///
/// Source: https://docs.claude.com/en/api/messages (`usage`: `input_tokens`,
/// `cache_creation_input_tokens`, `cache_read_input_tokens`, `cache_creation.
/// ephemeral_5m_input_tokens` / `ephemeral_1h_input_tokens`, `output_tokens`, `service_tier`);
/// anthropic-sdk-python `types/usage.py`.
pub fn from_anthropic_usage(u: &Value) -> Option<Usage> {
    let obj = u.as_object()?;
    let n = |k: &str| obj.get(k).and_then(Value::as_u64);
    let (input, output) = (n("input_tokens"), n("output_tokens"));
    if input.is_none() && output.is_none() {
        return None;
    }
    let cached = n("cache_read_input_tokens");
    let writes = n("cache_creation_input_tokens").unwrap_or(0);
    let split = obj.get("cache_creation").and_then(Value::as_object);
    let (w5m, w1h) = match split {
        Some(c) => {
            let k = |key: &str| c.get(key).and_then(Value::as_u64).unwrap_or(0);
            (
                k("ephemeral_5m_input_tokens"),
                k("ephemeral_1h_input_tokens"),
            )
        }
        None => (writes, 0),
    };
    // The lifetimes' sum is the writes; the larger figure wins if a provider disagrees.
    let writes = writes.max(w5m.saturating_add(w1h));
    let input = input.map(|i| i.saturating_add(cached.unwrap_or(0)).saturating_add(writes));
    let positive = |v: u64| (v > 0).then_some(v);
    Some(Usage {
        input_tokens: input,
        output_tokens: output,
        cached_input_tokens: cached,
        total_tokens: match (input, output) {
            (Some(i), Some(o)) => i.checked_add(o),
            _ => None,
        },
        cache_write_5m_tokens: positive(writes.saturating_sub(w1h)),
        cache_write_1h_tokens: positive(w1h),
        service_tier: obj
            .get("service_tier")
            .and_then(Value::as_str)
            .map(tier_name)
            .unwrap_or_default(),
        ..Usage::default()
    })
}

/// A service tier name as stored: lowercase, capped.
pub fn tier_name(s: &str) -> String {
    s.chars().take(32).collect::<String>().to_ascii_lowercase()
}

/// Usage and invoked tool calls of a whole (non-streamed) response body of `operation`.
pub fn response_facts(operation: &str, body: &Value) -> (Option<Usage>, Option<u32>) {
    let (usage, calls) = response_facts_inner(operation, body);
    (usage.map(|u| with_tier(u, body.get("service_tier"))), calls)
}

/// Fills the service tier when the usage has none: from the response object's `service_tier`
/// (OpenAI says which tier served, and bills that one), else from the request's (a provider
/// that does not echo it bills the tier asked for).
pub fn with_tier(mut u: Usage, tier: Option<&Value>) -> Usage {
    if u.service_tier.is_empty() {
        if let Some(t) = tier.and_then(Value::as_str) {
            u.service_tier = tier_name(t);
        }
    }
    u
}

/// The top-level fields of a whole response that [`response_facts`] reads.
pub const RESPONSE_FACT_FIELDS: &[&str] =
    &["usage", "service_tier", "choices", "content", "output"];

/// [`response_facts`] read straight from the body's bytes, building values only for `usage` and
/// `service_tier`: the choices, content or output items (the model's whole answer) are scanned
/// and counted, never built. `None` when the body is not the usual shape (not an object, a
/// repeated or odd-typed field): the caller then parses it whole, so the facts never differ.
pub fn response_facts_light(operation: &str, body: &[u8]) -> Option<(Option<Usage>, Option<u32>)> {
    use serde::de::IgnoredAny;
    use serde::Deserialize;
    use serde_json::value::RawValue;
    use std::borrow::Cow;

    /// `T` read only from a JSON object: serde's derived structs also take arrays
    /// (positionally), which the whole-body reading would not see as these fields.
    struct Obj<T>(T);
    impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V<T>(std::marker::PhantomData<T>);
            impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
                type Value = Obj<T>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    map: A,
                ) -> Result<Obj<T>, A::Error> {
                    T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Obj)
                }
            }
            d.deserialize_map(V(std::marker::PhantomData))
        }
    }
    /// A member as written, `null` included (a plain `Option` would read `null` as absent,
    /// where the whole-body reading sees a present member).
    fn member<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
        <&RawValue>::deserialize(d).map(Some)
    }
    #[derive(Deserialize)]
    struct Top<'a> {
        #[serde(borrow, default, deserialize_with = "member")]
        usage: Option<&'a RawValue>,
        #[serde(borrow, default, deserialize_with = "member")]
        service_tier: Option<&'a RawValue>,
        #[serde(borrow, default, deserialize_with = "member")]
        choices: Option<&'a RawValue>,
        #[serde(borrow, default, deserialize_with = "member")]
        content: Option<&'a RawValue>,
        #[serde(borrow, default, deserialize_with = "member")]
        output: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct Choice {
        #[serde(default)]
        message: Option<Obj<Message>>,
    }
    #[derive(Deserialize)]
    struct Message {
        #[serde(default)]
        tool_calls: Option<Vec<IgnoredAny>>,
    }
    #[derive(Deserialize)]
    struct Item<'a> {
        #[serde(rename = "type", borrow, default)]
        kind: Option<Cow<'a, str>>,
    }
    /// Items of `raw` (an array of objects) whose `type` is `kind`.
    fn count_typed(raw: &RawValue, kind: &str) -> Option<u32> {
        let items: Vec<Obj<Item>> = serde_json::from_str(raw.get()).ok()?;
        Some(
            items
                .iter()
                .filter(|i| i.0.kind.as_deref() == Some(kind))
                .count() as u32,
        )
    }

    let Obj(top): Obj<Top> = serde_json::from_slice(body).ok()?;
    let value = |f: Option<&RawValue>| -> Option<Option<Value>> {
        match f {
            None => Some(None),
            Some(raw) => serde_json::from_str(raw.get()).ok().map(Some),
        }
    };
    let usage = value(top.usage)?;
    let tier = value(top.service_tier)?;
    let (usage, calls) = match operation {
        "messages" => (
            usage.as_ref().and_then(from_anthropic_usage),
            match top.content {
                Some(raw) => Some(count_typed(raw, "tool_use")?),
                None => None,
            },
        ),
        "responses" => (
            usage.as_ref().and_then(from_openai_usage),
            match top.output {
                Some(raw) => Some(count_typed(raw, "function_call")?),
                None => None,
            },
        ),
        "embeddings" => (usage.as_ref().and_then(from_openai_usage), None),
        _ => (
            usage.as_ref().and_then(from_openai_usage),
            match top.choices {
                Some(raw) => {
                    let choices: Vec<Obj<Choice>> = serde_json::from_str(raw.get()).ok()?;
                    Some(
                        choices
                            .iter()
                            .filter_map(|c| c.0.message.as_ref()?.0.tool_calls.as_ref())
                            .map(Vec::len)
                            .sum::<usize>() as u32,
                    )
                }
                None => None,
            },
        ),
    };
    Some((usage.map(|u| with_tier(u, tier.as_ref())), calls))
}

fn response_facts_inner(operation: &str, body: &Value) -> (Option<Usage>, Option<u32>) {
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
            self.usage = Some(with_tier(u, chunk.get("service_tier")));
        }
        if let Some(u) = chunk.pointer("/response/usage").and_then(from_openai_usage) {
            self.usage = Some(with_tier(u, chunk.pointer("/response/service_tier")));
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
        let u = f.usage.clone().unwrap();
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

    /// The usage a whole response and the same response streamed report.
    fn both_ways(operation: &str, body: &Value, events: &[Value]) -> (Usage, Usage) {
        let (whole, _) = response_facts(operation, body);
        let mut f = StreamFacts::default();
        for e in events {
            f.observe(e);
        }
        (
            whole.expect("whole usage"),
            f.usage.expect("streamed usage"),
        )
    }

    fn per_mtok(s: &str) -> i64 {
        weir_proto::pricing::parse_usd_per_mtok(s).unwrap()
    }

    /// Provider shapes as their API references document them, priced by hand; the same usage
    /// streamed and not streamed costs the same.
    #[test]
    fn provider_shapes_price_like_by_hand() {
        use weir_proto::pricing::{settle, LongContext, PriceSheet, Pricing, Rates};
        let simple =
            |i: &str, c: &str, o: &str| PriceSheet::simple(per_mtok(i), per_mtok(c), per_mtok(o));
        // OpenAI Chat Completions, gpt-4o ($2.50 / $1.25 cached / $10): the usage chunk comes
        // last with empty choices (stream_options.include_usage).
        let chat_usage = json!({"prompt_tokens": 10_000, "completion_tokens": 500,
            "total_tokens": 10_500, "prompt_tokens_details": {"cached_tokens": 4_000, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}});
        let chat = (
            "chat",
            json!({"object": "chat.completion", "service_tier": "default", "choices": [], "usage": chat_usage}),
            vec![
                json!({"object": "chat.completion.chunk", "service_tier": "default", "choices": [{"index": 0, "delta": {"content": "hi"}}], "usage": null}),
                json!({"object": "chat.completion.chunk", "service_tier": "default", "choices": [], "usage": chat_usage}),
            ],
            simple("2.50", "1.25", "10"),
            15_000_000_000i64 + 5_000_000_000 + 5_000_000_000,
        );
        // OpenAI Responses, o4-mini ($1.10 / $0.275 / $4.40), reasoning inside output; the
        // stream's usage is in response.completed.
        let resp_usage = json!({"input_tokens": 2_000, "input_tokens_details": {"cached_tokens": 1_024},
            "output_tokens": 3_000, "output_tokens_details": {"reasoning_tokens": 2_500}, "total_tokens": 5_000});
        let responses = (
            "responses",
            json!({"object": "response", "output": [], "usage": resp_usage}),
            vec![
                json!({"type": "response.created", "response": {"usage": null}}),
                json!({"type": "response.completed", "response": {"output": [], "usage": resp_usage}}),
            ],
            simple("1.10", "0.275", "4.40"),
            1_073_600_000 + 281_600_000 + 13_200_000_000,
        );
        // Anthropic Messages, Claude Sonnet 4.5: input_tokens excludes cache reads and writes;
        // the write lifetimes come in cache_creation; the stream's message_delta carries the
        // final output count.
        let sonnet = PriceSheet {
            base: Rates {
                cache_write_5m: Some(per_mtok("3.75")),
                cache_write_1h: Some(per_mtok("6")),
                ..simple("3", "0.30", "15").base
            },
            ..Default::default()
        };
        let start_usage = json!({"input_tokens": 50, "cache_read_input_tokens": 10_000,
            "cache_creation_input_tokens": 3_000,
            "cache_creation": {"ephemeral_5m_input_tokens": 2_000, "ephemeral_1h_input_tokens": 1_000},
            "output_tokens": 1, "service_tier": "standard"});
        let mut whole_usage = start_usage.clone();
        whole_usage["output_tokens"] = json!(400);
        let anthropic = (
            "messages",
            json!({"type": "message", "content": [], "usage": whole_usage}),
            vec![
                json!({"type": "message_start", "message": {"model": "claude-sonnet-4-5", "usage": start_usage}}),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}}),
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 400}}),
            ],
            sonnet,
            150_000_000i64 + 3_000_000_000 + 7_500_000_000 + 6_000_000_000 + 6_000_000_000,
        );
        // Gemini through its OpenAI compatibility, 2.5 Pro past 200k input: thoughts are left
        // out of completion_tokens but counted in total_tokens; output is billed with them, at
        // the long-context rates ($2.50 / $15) for the whole request.
        let gemini_pro = PriceSheet {
            long_context: Some(LongContext {
                above_input_tokens: 200_000,
                rates: simple("2.50", "0.25", "15").base,
            }),
            ..simple("1.25", "0.125", "10")
        };
        let gemini_usage =
            json!({"prompt_tokens": 250_000, "completion_tokens": 2_000, "total_tokens": 255_000});
        let gemini = (
            "chat",
            json!({"object": "chat.completion", "choices": [], "usage": gemini_usage}),
            vec![json!({"object": "chat.completion.chunk", "choices": [], "usage": gemini_usage})],
            gemini_pro,
            625_000_000_000i64 + 75_000_000_000,
        );
        // OpenRouter reports its own cost (credits, US dollars): that is the bill, whatever
        // the sheet says.
        let or_usage = json!({"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110,
            "cost": 0.000123, "cost_details": {"upstream_inference_cost": null}});
        let openrouter = (
            "chat",
            json!({"object": "chat.completion", "choices": [], "usage": or_usage}),
            vec![json!({"object": "chat.completion.chunk", "choices": [], "usage": or_usage})],
            simple("1", "1", "1"),
            123_000_000i64,
        );
        // A flex-tier response is priced at the flex rates (gpt-5: $0.625 / $0.0625 / $5).
        let flex_usage =
            json!({"prompt_tokens": 10_000, "completion_tokens": 2_000, "total_tokens": 12_000});
        let flex = (
            "chat",
            json!({"object": "chat.completion", "service_tier": "flex", "choices": [], "usage": flex_usage}),
            vec![
                json!({"object": "chat.completion.chunk", "service_tier": "flex", "choices": [], "usage": flex_usage}),
            ],
            PriceSheet {
                service_tiers: [("flex".to_string(), simple("0.625", "0.0625", "5").base)].into(),
                ..simple("1.25", "0.125", "10")
            },
            6_250_000_000i64 + 10_000_000_000,
        );
        for (name, (operation, body, events, sheet, want)) in [
            ("openai chat", chat),
            ("openai responses", responses),
            ("anthropic", anthropic),
            ("gemini compat", gemini),
            ("openrouter", openrouter),
            ("flex tier", flex),
        ] {
            let (whole, streamed) = both_ways(operation, &body, &events);
            assert_eq!(whole, streamed, "{name}: streamed and whole usage differ");
            assert_eq!(
                settle(Some(&whole), Some(&sheet), &[]),
                Pricing::Priced(want),
                "{name}: {whole:?}"
            );
        }
    }

    #[test]
    fn tiers_come_from_the_response_else_the_request() {
        let (u, _) = response_facts(
            "chat",
            &json!({"service_tier": "default", "usage": {"prompt_tokens": 1, "completion_tokens": 1}}),
        );
        let req = json!("Flex");
        // OpenAI answers with the tier that served ("auto" comes back as "default").
        assert_eq!(with_tier(u.unwrap(), Some(&req)).service_tier, "default");
        let (u, _) = response_facts("chat", &json!({"usage": {"prompt_tokens": 1}}));
        assert_eq!(with_tier(u.unwrap(), Some(&req)).service_tier, "flex");
        let (u, _) = response_facts("chat", &json!({"usage": {"prompt_tokens": 1}}));
        assert_eq!(with_tier(u.unwrap(), None).service_tier, "");
    }

    #[test]
    fn normalised_kinds() {
        // Anthropic writes without the lifetime split are 5-minute writes (the default TTL).
        let u = from_anthropic_usage(&json!({"input_tokens": 1, "output_tokens": 1,
            "cache_creation_input_tokens": 7}))
        .unwrap();
        assert_eq!(
            (
                u.cache_write_5m_tokens,
                u.cache_write_1h_tokens,
                u.input_tokens
            ),
            (Some(7), None, Some(8))
        );
        // Gemini's thoughts apart: output and reasoning include them; total unchanged.
        let u = from_openai_usage(
            &json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 298}),
        )
        .unwrap();
        assert_eq!(
            (u.output_tokens, u.reasoning_tokens, u.total_tokens),
            (Some(288), Some(283), Some(298))
        );
        // OpenAI's reasoning is inside completion tokens: nothing added.
        let u = from_openai_usage(
            &json!({"prompt_tokens": 10, "completion_tokens": 50, "total_tokens": 60,
            "completion_tokens_details": {"reasoning_tokens": 40}}),
        )
        .unwrap();
        assert_eq!((u.output_tokens, u.reasoning_tokens), (Some(50), Some(40)));
        // Audio on both sides.
        let u = from_openai_usage(&json!({"prompt_tokens": 10, "completion_tokens": 20,
            "prompt_tokens_details": {"audio_tokens": 4}, "completion_tokens_details": {"audio_tokens": 15}})).unwrap();
        assert_eq!(
            (u.audio_input_tokens, u.audio_output_tokens),
            (Some(4), Some(15))
        );
        // A negative or non-numeric provider cost is ignored, never stored.
        let u = from_openai_usage(&json!({"prompt_tokens": 1, "completion_tokens": 1, "cost": -1}))
            .unwrap();
        assert_eq!(u.provider_cost_pusd, None);
        let u =
            from_openai_usage(&json!({"prompt_tokens": 1, "completion_tokens": 1, "cost": "0.1"}))
                .unwrap();
        assert_eq!(u.provider_cost_pusd, None);
    }

    #[test]
    fn light_response_facts_read_the_usual_shapes_and_refuse_the_rest() {
        use crate::payload_policy::{body_value, top_fields};
        let parsed = |op: &str, body: &str| {
            let v = top_fields(body.as_bytes(), RESPONSE_FACT_FIELDS)
                .unwrap_or_else(|| body_value(body.as_bytes()));
            response_facts(op, &v)
        };
        /// Operation, body, whether the light reader answers, tokens in, tool calls.
        type Case<'a> = (&'a str, &'a str, bool, Option<u64>, Option<u32>);
        let cases: &[Case] = &[
            (
                "chat_completions",
                r#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"hi \"there\""},"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":9,"total_tokens":28}}"#,
                true,
                Some(19),
                Some(0),
            ),
            (
                "chat_completions",
                r#"{"choices":[{"message":{"tool_calls":[{"id":"a"},{"id":"b"}]}},{"message":{"tool_calls":[{"id":"c"}]}},{"message":null},{}],"usage":{"prompt_tokens":5},"service_tier":"priority"}"#,
                true,
                Some(5),
                Some(3),
            ),
            (
                "chat_completions",
                r#"{"usage":{"prompt_tokens":1}}"#,
                true,
                Some(1),
                None,
            ),
            (
                "chat_completions",
                r#"{"choices":[{"message":{"tool_calls":null}}],"usage":null}"#,
                true,
                None,
                Some(0),
            ),
            (
                "chat_completions",
                r#"{"us\u0061ge":{"prompt_tokens":4},"choices":[]}"#,
                true,
                Some(4),
                Some(0),
            ),
            (
                "messages",
                r#"{"content":[{"type":"text","text":"a"},{"type":"tool_use","id":"t"},{"type":null}],"usage":{"input_tokens":7,"output_tokens":2}}"#,
                true,
                Some(7),
                Some(1),
            ),
            (
                "responses",
                r#"{"output":[{"type":"function_call"},{"type":"function_call"},{"type":"message"}],"usage":{"input_tokens":3,"output_tokens":1}}"#,
                true,
                Some(3),
                Some(2),
            ),
            (
                "embeddings",
                r#"{"data":[{"embedding":[0.1]}],"usage":{"prompt_tokens":5,"total_tokens":5}}"#,
                true,
                Some(5),
                None,
            ),
            // Shapes left to the whole parse.
            (
                "chat_completions",
                r#"{"choices":null,"usage":{"prompt_tokens":2}}"#,
                false,
                Some(2),
                Some(0),
            ),
            (
                "chat_completions",
                r#"{"choices":[1],"usage":{"prompt_tokens":2}}"#,
                false,
                Some(2),
                Some(0),
            ),
            (
                "chat_completions",
                r#"{"choices":[{"message":{"tool_calls":"x"}}]}"#,
                false,
                None,
                Some(0),
            ),
            (
                "chat_completions",
                r#"{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2}}"#,
                false,
                Some(2),
                None,
            ),
            (
                "messages",
                r#"{"content":[{"type":1}]}"#,
                false,
                None,
                Some(0),
            ),
            ("messages", r#"{"content":"text"}"#, false, None, None),
            ("chat_completions", r#"[1,2]"#, false, None, None),
            (
                "chat_completions",
                r#"{"usage":{"prompt_tokens":1}} trailing"#,
                false,
                None,
                None,
            ),
            ("chat_completions", "", false, None, None),
        ];
        for (op, body, answers, tokens, calls) in cases {
            let whole = parsed(op, body);
            assert_eq!(
                (whole.0.as_ref().and_then(|u| u.input_tokens), whole.1),
                (*tokens, *calls),
                "parse of {body}"
            );
            match response_facts_light(op, body.as_bytes()) {
                Some(light) => {
                    assert!(answers, "light reader answered for {body}");
                    assert_eq!(light, whole, "{body}");
                }
                None => assert!(!answers, "light reader refused {body}"),
            }
        }
        // The tier the provider reported reaches the usage.
        let (u, _) = response_facts_light(
            "chat_completions",
            br#"{"usage":{"prompt_tokens":1},"service_tier":"Flex"}"#,
        )
        .unwrap();
        assert_eq!(u.unwrap().service_tier, "flex");
    }
}
