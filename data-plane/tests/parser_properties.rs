//! Property tests of the parsers that see untrusted bytes: the SSE framer, the stream
//! transcript, redaction and capping. None may panic or loop on any input, and a stream split
//! anywhere must give the same events, usage and tool counts as unsplit.

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{json, Value};
use weir_data_plane::payload_policy::{
    body_value, cap, redact_keys, wrap_response, REDACTED, SECRET_KEYS,
};
use weir_data_plane::sse_transcript::{event_data, frame_all, SseFramer};
use weir_data_plane::usage::{
    response_facts, response_facts_light, StreamFacts, RESPONSE_FACT_FIELDS,
};

/// Facts as a record read them before the light reader: a parse of the wanted fields.
fn facts_by_parse(operation: &str, body: &[u8]) -> (Option<weir_proto::logs::Usage>, Option<u32>) {
    let value = weir_data_plane::payload_policy::top_fields(body, RESPONSE_FACT_FIELDS)
        .unwrap_or_else(|| body_value(body));
    response_facts(operation, &value)
}

/// JSON built from the names response readers look at, so generated bodies hit their paths.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (0u64..2000).prop_map(Value::from),
        (-5i64..5).prop_map(Value::from),
        prop_oneof![
            Just("tool_use"),
            Just("function_call"),
            Just("text"),
            Just("priority"),
            Just("flex"),
        ]
        .prop_map(Value::from),
    ];
    let names = prop_oneof![
        Just("usage"),
        Just("service_tier"),
        Just("choices"),
        Just("content"),
        Just("output"),
        Just("message"),
        Just("tool_calls"),
        Just("type"),
        Just("prompt_tokens"),
        Just("completion_tokens"),
        Just("input_tokens"),
        Just("output_tokens"),
        Just("total_tokens"),
        Just("cache_read_input_tokens"),
        Just("other"),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((names.clone(), inner), 0..6).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

/// A realistic stream: OpenAI chunks with usage and tool calls, some multi-byte text.
fn stream(words: &[String], with_crlf: bool) -> Vec<u8> {
    let nl = if with_crlf { "\r\n" } else { "\n" };
    let mut out = String::new();
    for (i, w) in words.iter().enumerate() {
        let chunk = json!({"choices": [{"index": 0, "delta": {"content": w,
            "tool_calls": [{"index": i % 3, "function": {"arguments": "é"}}]}}], "usage": null});
        // Alternate "data:" with and without the space.
        let sep = if i % 2 == 0 { "data: " } else { "data:" };
        out.push_str(&format!("{sep}{chunk}{nl}{nl}"));
    }
    let usage =
        json!({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": words.len()}});
    out.push_str(&format!("data: {usage}{nl}{nl}data: [DONE]{nl}{nl}"));
    out.into_bytes()
}

fn transcript(events: &[Bytes]) -> (Vec<Vec<u8>>, Option<u64>, u32) {
    let mut facts = StreamFacts::default();
    let mut datas = Vec::new();
    for e in events {
        if let Some(d) = event_data(e) {
            if let Ok(v) = serde_json::from_slice::<Value>(&d) {
                facts.observe(&v);
            }
            datas.push(d);
        }
    }
    (
        datas,
        facts.usage.as_ref().and_then(|u| u.total_tokens),
        facts.invoked_tools(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_split_gives_the_same_transcript(
        words in prop::collection::vec("[a-zé日本 ]{0,12}", 1..12),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..16),
        crlf in any::<bool>(),
    ) {
        let bytes = stream(&words, crlf);
        let whole = transcript(&frame_all(&[&bytes]));
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        points.dedup();
        let mut chunks: Vec<&[u8]> = Vec::new();
        let mut last = 0;
        for p in points {
            chunks.push(&bytes[last..p]);
            last = p;
        }
        chunks.push(&bytes[last..]);
        let split = transcript(&frame_all(&chunks));
        prop_assert_eq!(&split, &whole);
        prop_assert_eq!(whole.1, Some(7 + words.len() as u64));
        prop_assert_eq!(whole.2, words.len().min(3) as u32);
    }

    #[test]
    fn the_framer_never_panics_and_keeps_every_byte(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..32)) {
        let mut f = SseFramer::new();
        let mut out = 0usize;
        for c in &chunks {
            f.push(c);
            while let Some(e) = f.next_event() {
                out += e.len();
                let _ = event_data(&e);
            }
        }
        out += f.finish().map_or(0, |e| e.len());
        prop_assert_eq!(out, chunks.iter().map(Vec::len).sum::<usize>());
    }

    #[test]
    fn redaction_and_capping_never_panic_and_never_leak(
        body in prop::collection::vec(any::<u8>(), 0..512),
        secret in "[a-zA-Z0-9]{12,24}",
        key_index in 0..SECRET_KEYS.len(),
        max in 16usize..4096,
    ) {
        // Arbitrary bytes as a body.
        let (out, _) = cap(wrap_response(body_value(&body)), max);
        prop_assert!(serde_json::from_slice::<Value>(&out).is_ok());
        prop_assert!(out.len() <= max.max(64));
        // A secret under any built-in key, in any case, at some depth, never survives.
        let key = SECRET_KEYS[key_index].to_uppercase();
        let mut v = json!({"body": {"a": [{"b": {key.clone(): secret.clone()}}], key: {"x": secret.clone()}}});
        redact_keys(&mut v);
        let text = v.to_string();
        prop_assert!(!text.contains(&secret), "{}", text);
        prop_assert!(text.contains(REDACTED));
    }

    #[test]
    fn light_response_facts_agree_with_a_parse(
        body in json_value(),
        op in prop_oneof![
            Just("chat_completions"), Just("messages"), Just("responses"), Just("embeddings")
        ],
        duplicate in any::<bool>(),
        garbage in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut text = body.to_string();
        // A repeated member (the parse keeps the last) must not read differently.
        if duplicate && text.starts_with('{') && text.len() > 2 {
            text.insert_str(1, r#""choices":[{"message":{"tool_calls":[1,2]}}],"usage":{"prompt_tokens":3},"#);
        }
        for bytes in [text.as_bytes(), &garbage[..]] {
            if let Some(light) = response_facts_light(op, bytes) {
                prop_assert_eq!(light, facts_by_parse(op, bytes), "{}", String::from_utf8_lossy(bytes));
            }
        }
    }
}
