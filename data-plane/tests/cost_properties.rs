//! Property tests: the usage parsers, the pricing arithmetic, price sheets read from JSON and
//! the prompt estimate never panic, whatever a provider (or a config row) sends.

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use weir_data_plane::token_estimate;
use weir_data_plane::usage::{
    from_anthropic_usage, from_openai_usage, response_facts, StreamFacts,
};
use weir_proto::pricing::{self, PriceSheet};

/// Keys the parsers look for, so generated documents reach deep into them.
const KEYS: &[&str] = &[
    "usage",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "input_tokens",
    "output_tokens",
    "prompt_tokens_details",
    "completion_tokens_details",
    "input_tokens_details",
    "output_tokens_details",
    "cached_tokens",
    "reasoning_tokens",
    "audio_tokens",
    "cost",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cache_creation",
    "ephemeral_5m_input_tokens",
    "ephemeral_1h_input_tokens",
    "service_tier",
    "type",
    "message",
    "response",
    "choices",
    "delta",
    "tool_calls",
    "index",
    "content",
    "messages",
    "system",
    "tools",
    "input",
    "long_context",
    "above_input_tokens",
    "rates",
    "service_tiers",
    "cache_write_5m",
    "reasoning",
    "output",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-z_ é日]{0,12}".prop_map(Value::from),
        prop::sample::select(KEYS).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..8).prop_map(|kvs| {
                Value::Object(
                    kvs.into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

fn usage_record() -> impl Strategy<Value = weir_proto::logs::Usage> {
    let n = || prop::option::of(any::<u64>());
    (
        (n(), n(), n(), n(), n(), n()),
        (n(), n(), n(), n(), prop::option::of(any::<i64>())),
        ("[a-z]{0,8}", any::<bool>()),
    )
        .prop_map(|((i, o, c, r, t, w5), (w1, ai, ao, ii, pc), (tier, est))| {
            weir_proto::logs::Usage {
                input_tokens: i,
                output_tokens: o,
                cached_input_tokens: c,
                reasoning_tokens: r,
                total_tokens: t,
                cache_write_5m_tokens: w5,
                cache_write_1h_tokens: w1,
                audio_input_tokens: ai,
                image_input_tokens: ii,
                audio_output_tokens: ao,
                image_output_tokens: None,
                provider_cost_pusd: pc,
                service_tier: tier,
                estimated: est,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn usage_parsers_never_panic(v in json_value(), op in prop::sample::select(&["chat", "responses", "messages", "embeddings"][..])) {
        let _ = from_openai_usage(&v);
        let _ = from_anthropic_usage(&v);
        let _ = response_facts(op, &v);
        let mut f = StreamFacts::default();
        f.observe(&v);
        f.observe(&v);
        let _ = f.invoked_tools();
        // Anthropic's input is the sum of its parts, so it is never below the cache reads.
        if let Some(u) = from_anthropic_usage(&v) {
            if let (Some(i), Some(c)) = (u.input_tokens, u.cached_input_tokens) {
                prop_assert!(i >= c, "{u:?}");
            }
        }
    }

    #[test]
    fn price_sheets_from_any_json_never_panic(extra in json_value(), i in any::<i64>(), c in any::<i64>(), o in any::<i64>()) {
        if let Ok(sheet) = PriceSheet::from_parts(i, c, o, &extra) {
            let _ = sheet.validate();
            let _ = sheet.extra_json();
        }
    }

    #[test]
    fn settling_never_panics_and_never_goes_negative(
        u in usage_record(),
        input in 0i64..1_000_000_000,
        cached in 0i64..1_000_000_000,
        output in 0i64..1_000_000_000,
        m1 in any::<u32>(),
        m2 in any::<u32>(),
    ) {
        let sheet = PriceSheet::simple(input, cached, output);
        let settled = pricing::settle(Some(&u), Some(&sheet), &[m1, m2]);
        if let Some(cost) = settled.cost() {
            // A provider's own negative figure is ignored; computed costs are sums of
            // non-negative parts.
            prop_assert!(cost >= 0, "{settled:?} from {u:?}");
        }
        let _ = pricing::settle(Some(&u), None, &[]);
        let _ = pricing::settle(None, Some(&sheet), &[]);
    }

    #[test]
    fn provider_cost_numbers_never_panic(f in any::<f64>()) {
        if let Some(n) = serde_json::Number::from_f64(f) {
            let _ = pricing::usd_number_to_pusd(&n);
        }
    }

    #[test]
    fn prompt_estimates_never_panic(v in json_value(), model in prop::sample::select(&["gpt-4o", "gpt-4", "claude-x", ""][..])) {
        let n = token_estimate::prompt_tokens(&v, model);
        prop_assert!(n >= 3);
    }
}
