//! Prompt tokens counted by the gateway, for streams that ended before the provider reported
//! usage (a client abort, a cut upstream): the request is then recorded as `estimated`, never
//! as free. OpenAI model families use their public tokenizer (tiktoken's `o200k_base` for
//! GPT-4o, GPT-4.1, GPT-5 and the o-series, `cl100k_base` for GPT-4 and GPT-3.5); other
//! families have no public tokenizer and get a documented approximation: one token per four
//! bytes of UTF-8 text, rounded up. See docs/cost.md.

use serde_json::Value;

/// How a count was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// tiktoken `o200k_base`.
    O200k,
    /// tiktoken `cl100k_base`.
    Cl100k,
    /// ⌈UTF-8 bytes / 4⌉.
    BytesOver4,
}

/// The tokenizer for an upstream model name.
pub fn method_for(upstream_model: &str) -> Method {
    let m = upstream_model.to_ascii_lowercase();
    // Deployment paths and router prefixes ("openai/gpt-4o") name the model last.
    let m = m.rsplit('/').next().unwrap_or(&m);
    let starts = |p: &str| m.starts_with(p);
    if starts("gpt-4o")
        || starts("gpt-4.1")
        || starts("gpt-4.5")
        || starts("gpt-5")
        || starts("chatgpt-4o")
        || starts("o1")
        || starts("o3")
        || starts("o4")
        || starts("gpt-oss")
    {
        Method::O200k
    } else if starts("gpt-4") || starts("gpt-3.5") || starts("text-embedding-3") {
        Method::Cl100k
    } else {
        Method::BytesOver4
    }
}

/// Per-message overhead of the chat format (OpenAI's cookbook counts 3 per message and 3 to
/// prime the reply); applied to every family as part of the estimate.
const PER_MESSAGE: u64 = 3;

/// The prompt's text: every string under the fields a provider bills as input (messages,
/// system and instructions, tool definitions), with the number of messages.
fn prompt_text(request: &Value) -> (String, u64) {
    fn strings(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            Value::Object(o) => o.values().for_each(|x| strings(x, out)),
            _ => {}
        }
    }
    let mut text = String::new();
    let mut messages = 0u64;
    for field in [
        "system",
        "instructions",
        "messages",
        "input",
        "prompt",
        "tools",
    ] {
        if let Some(v) = request.get(field) {
            if matches!(field, "messages" | "input") {
                messages += v.as_array().map_or(1, |a| a.len() as u64);
            }
            strings(v, &mut text);
        }
    }
    (text, messages)
}

/// Counts the prompt tokens of `request` (a JSON request body) for `upstream_model`.
pub fn prompt_tokens(request: &Value, upstream_model: &str) -> u64 {
    let (text, messages) = prompt_text(request);
    let overhead = PER_MESSAGE * messages + PER_MESSAGE;
    let counted = match method_for(upstream_model) {
        Method::O200k => tiktoken_rs::o200k_base_singleton()
            .encode_ordinary(&text)
            .len() as u64,
        Method::Cl100k => tiktoken_rs::cl100k_base_singleton()
            .encode_ordinary(&text)
            .len() as u64,
        Method::BytesOver4 => (text.len() as u64).div_ceil(4),
    };
    counted + overhead
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokenizers_by_family() {
        let cases = [
            ("gpt-4o-mini", Method::O200k),
            ("openai/gpt-5", Method::O200k),
            ("o3-mini", Method::O200k),
            ("GPT-4.1", Method::O200k),
            ("gpt-4-turbo", Method::Cl100k),
            ("gpt-3.5-turbo", Method::Cl100k),
            ("claude-sonnet-4-5", Method::BytesOver4),
            ("gemini-2.5-pro", Method::BytesOver4),
            ("llama3", Method::BytesOver4),
        ];
        for (model, want) in cases {
            assert_eq!(method_for(model), want, "{model}");
        }
    }

    #[test]
    fn counts_the_billed_fields_only() {
        let req = json!({
            "model": "gpt-4o",
            "temperature": 0.5,
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": [{"type": "text", "text": "Hello world"}]}
            ]
        });
        let (text, messages) = prompt_text(&req);
        assert_eq!(messages, 2);
        assert!(text.contains("You are terse.") && text.contains("Hello world"));
        assert!(
            !text.contains("gpt-4o"),
            "the model name is not prompt: {text}"
        );
        // o200k_base: "system\nYou are terse.\nuser\ntext\nHello world\n" is a handful of tokens;
        // with 3 per message and 3 to prime, 9 more.
        let n = prompt_tokens(&req, "gpt-4o");
        assert!((15..=25).contains(&n), "{n}");
        // Bytes over four for families without a public tokenizer, overhead included.
        let claude = json!({"system": "abcd", "messages": [{"role": "user", "content": "efgh"}]});
        // "abcd\nuser\nefgh\n" is 15 bytes → 4 tokens, + 3 per message × 1 + 3.
        assert_eq!(prompt_tokens(&claude, "claude-sonnet-4-5"), 4 + 6);
        // Nothing to count still costs the priming overhead, never zero.
        assert_eq!(prompt_tokens(&json!({}), "gpt-4o"), 3);
    }

    #[test]
    fn tokenizer_counts_known_text() {
        // "hello world" is two tokens in both OpenAI encodings.
        assert_eq!(
            tiktoken_rs::o200k_base_singleton()
                .encode_ordinary("hello world")
                .len(),
            2
        );
        assert_eq!(
            tiktoken_rs::cl100k_base_singleton()
                .encode_ordinary("hello world")
                .len(),
            2
        );
    }
}
