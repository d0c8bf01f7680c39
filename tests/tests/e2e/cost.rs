//! Cost through the whole path: prices loaded with `weirctl prices load`, provider usage shapes
//! from the mock upstream (streamed and not) through a data plane into the spend ledger, each
//! priced to the picodollar as worked out by hand; a stream the client abandons before the
//! usage event is recorded as estimated, never as free.

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Row;
use weir_e2e::{eventually, run, ModelSpec, Stack};

/// Name, path, model, the usage the mock reports, its service tier, picodollars by hand.
type Case<'a> = (&'a str, &'a str, &'a str, Value, Option<&'a str>, i64);

/// The ledger row of a request, once ingested.
async fn ledger(stack: &Stack, rid: &str) -> sqlx::postgres::PgRow {
    let pool = stack.control_plane.pool.clone();
    eventually(Duration::from_secs(10), || {
        let pool = pool.clone();
        async move {
            sqlx::query(
                "SELECT e.* FROM usage_cost_events e JOIN request_logs l USING (log_id, created_at)
                 WHERE l.request_id = $1",
            )
            .bind(rid)
            .fetch_optional(&pool)
            .await
            .unwrap()
        }
    })
    .await
    .unwrap_or_else(|| panic!("no ledger row for {rid}"))
}

/// Sends `body` to `path` on the gateway; returns the status and the whole body text.
async fn send(stack: &Stack, key: &str, path: &str, body: Value, rid: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(format!("http://{}{path}", stack.data_plane.addr))
        .bearer_auth(key)
        .header("x-request-id", rid)
        .json(&body)
        .send()
        .await
        .expect("gateway answers");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

const PRICES: &str = r#"
# Prices as each provider publishes them (docs/cost.md has the sources).
[[prices]]
model_key = "gpt"
input_per_mtok = "2.50"
cached_input_per_mtok = "1.25"
output_per_mtok = "10"

[[prices]]
model_key = "claude"
input_per_mtok = "3"
cached_input_per_mtok = "0.30"
output_per_mtok = "15"
cache_write_5m_per_mtok = "3.75"
cache_write_1h_per_mtok = "6"

[[prices]]
model_key = "gemini"
input_per_mtok = "1.25"
cached_input_per_mtok = "0.125"
output_per_mtok = "10"
long_context_above_input_tokens = 200000
[prices.long_context]
input_per_mtok = "2.50"
cached_input_per_mtok = "0.25"
output_per_mtok = "15"

[[prices]]
model_key = "router"
input_per_mtok = "1"
output_per_mtok = "1"

[[prices]]
model_key = "gpt5"
input_per_mtok = "1.25"
cached_input_per_mtok = "0.125"
output_per_mtok = "10"
[prices.service_tiers.flex]
input_per_mtok = "0.625"
cached_input_per_mtok = "0.0625"
output_per_mtok = "5"

[[prices]]
model_key = "slow"
input_per_mtok = "1"
output_per_mtok = "1"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_usage_shape_reaches_the_ledger_priced_by_hand() {
    let stack = Stack::start().await;
    let key = stack
        .seed_models(&[
            ModelSpec::new("gpt", &[("mock", "gpt-4o")]),
            ModelSpec::new("claude", &[("mock-anthropic", "claude-sonnet-4-5")]),
            ModelSpec::new("gemini", &[("mock", "gemini-2.5-pro")]),
            ModelSpec::new("router", &[("mock", "openrouter-auto")]),
            ModelSpec::new("gpt5", &[("mock", "gpt-5")]),
            ModelSpec::new("slow", &[("mock", "mock-slow")]),
        ])
        .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prices.toml");
    std::fs::write(&file, PRICES).unwrap();
    let out = run(stack.weirctl(&["prices", "load", file.to_str().unwrap()])).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("claude"), "{}", out.stdout);
    // A bad file changes nothing and names the problem.
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"prices": [{"model_key": "gpt", "input_per_mtok": "1", "output_per_mtok": "1"},
                       {"model_key": "claude", "input_per_mtok": "x", "output_per_mtok": "1"}]}"#,
    )
    .unwrap();
    let out = run(stack.weirctl(&["prices", "load", bad.to_str().unwrap()])).await;
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("prices[1] (claude): input_per_mtok"),
        "{}",
        out.stderr
    );
    let versions: i64 = sqlx::query_scalar("SELECT count(*) FROM prices")
        .fetch_one(&stack.control_plane.pool)
        .await
        .unwrap();
    assert_eq!(versions, 6, "the bad file stored nothing");
    // The node holds the prices before any request is sent.
    let cfg = stack.data_plane.config.clone();
    let ok = eventually(Duration::from_secs(10), || {
        let cfg = cfg.clone();
        async move { (cfg.current.load().prices.len() == 6).then_some(()) }
    })
    .await;
    assert!(ok.is_some(), "the node never received the prices");

    let chat = |model: &str, usage: Value, tier: Option<&str>, stream: bool| {
        let mut metadata = json!({"mock_usage": usage.to_string()});
        if let Some(t) = tier {
            metadata["mock_service_tier"] = json!(t);
        }
        json!({"model": model, "stream": stream, "metadata": metadata,
               "messages": [{"role": "user", "content": "Say hello please"}]})
    };
    let openai_cached = json!({"prompt_tokens": 10_000, "completion_tokens": 500,
        "total_tokens": 10_500, "prompt_tokens_details": {"cached_tokens": 4_000},
        "completion_tokens_details": {"reasoning_tokens": 200}});
    let gemini_thoughts =
        json!({"prompt_tokens": 250_000, "completion_tokens": 2_000, "total_tokens": 255_000});
    let openrouter = json!({"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110,
        "cost": 0.000123});
    let flex = json!({"prompt_tokens": 10_000, "completion_tokens": 2_000, "total_tokens": 12_000});
    let anthropic_writes = json!({"input_tokens": 50, "cache_read_input_tokens": 10_000,
        "cache_creation_input_tokens": 3_000,
        "cache_creation": {"ephemeral_5m_input_tokens": 2_000, "ephemeral_1h_input_tokens": 1_000},
        "output_tokens": 400, "service_tier": "standard"});
    let cases: Vec<Case> = vec![
        // 6,000 fresh × $2.50 + 4,000 cached × $1.25 + 500 out (reasoning inside) × $10.
        (
            "openai",
            "/v1/chat/completions",
            "gpt",
            openai_cached,
            None,
            25_000_000_000,
        ),
        // Whole request past 200k: 250,000 × $2.50 + (2,000 + 3,000 thoughts) × $15.
        (
            "gemini",
            "/v1/chat/completions",
            "gemini",
            gemini_thoughts,
            None,
            700_000_000_000,
        ),
        // OpenRouter's own figure: $0.000123.
        (
            "openrouter",
            "/v1/chat/completions",
            "router",
            openrouter,
            None,
            123_000_000,
        ),
        // Flex rates: 10,000 × $0.625 + 2,000 × $5.
        (
            "flex",
            "/v1/chat/completions",
            "gpt5",
            flex,
            Some("flex"),
            16_250_000_000,
        ),
        // 50 × $3 + 10,000 reads × $0.30 + 2,000 5m writes × $3.75 + 1,000 1h writes × $6
        // + 400 × $15.
        (
            "anthropic",
            "/v1/messages",
            "claude",
            anthropic_writes,
            None,
            22_650_000_000,
        ),
    ];
    for (name, path, model, usage, tier, want) in &cases {
        for stream in [false, true] {
            let rid = format!("cost-{name}-{stream}");
            let mut body = chat(model, usage.clone(), *tier, stream);
            if *path == "/v1/messages" {
                body["max_tokens"] = json!(64);
            }
            let (status, text) = send(&stack, &key, path, body, &rid).await;
            assert_eq!(status, 200, "{rid}: {text}");
            let row = ledger(&stack, &rid).await;
            assert_eq!(
                (
                    row.get::<String, _>("pricing_status"),
                    row.get::<Option<i64>, _>("cost_pusd")
                ),
                ("priced".to_string(), Some(*want)),
                "{rid}"
            );
        }
    }
    // The kinds beyond the ledger's columns are kept with the row.
    let row = ledger(&stack, "cost-anthropic-true").await;
    let extra: Value = row.get("usage_extra");
    assert_eq!(extra["cache_write_5m_tokens"], 2_000, "{extra}");
    assert_eq!(extra["cache_write_1h_tokens"], 1_000, "{extra}");
    assert_eq!(row.get::<Option<i64>, _>("input_tokens"), Some(13_050));
    assert!(row.get::<Option<i64>, _>("price_id").is_some());
    let row = ledger(&stack, "cost-gemini-false").await;
    assert_eq!(row.get::<Option<i64>, _>("reasoning_tokens"), Some(3_000));
    assert_eq!(row.get::<Option<i64>, _>("output_tokens"), Some(5_000));
    let row = ledger(&stack, "cost-openrouter-true").await;
    let extra: Value = row.get("usage_extra");
    assert_eq!(extra["provider_cost_pusd"], 123_000_000, "{extra}");
    assert!(
        row.get::<Option<i64>, _>("price_id").is_none(),
        "the provider's figure, not a price"
    );
    let row = ledger(&stack, "cost-flex-false").await;
    let extra: Value = row.get("usage_extra");
    assert_eq!(extra["service_tier"], "flex", "{extra}");

    // A service tier with no price is unpriced, never priced at the standard rates.
    let (status, _) = send(
        &stack,
        &key,
        "/v1/chat/completions",
        chat(
            "gpt",
            json!({"prompt_tokens": 1, "completion_tokens": 1}),
            Some("priority"),
            false,
        ),
        "cost-priority",
    )
    .await;
    assert_eq!(status, 200);
    let row = ledger(&stack, "cost-priority").await;
    assert_eq!(row.get::<String, _>("pricing_status"), "unpriced");
    assert_eq!(row.get::<Option<i64>, _>("cost_pusd"), None);

    // A stream the client leaves before the usage event: the prompt is counted locally
    // (no public tokenizer for this family: ⌈bytes / 4⌉ of "Say hello please\nuser\n" = 6,
    // + 3 for the message + 3 priming = 12 tokens) and priced at $1/MTok, marked estimated.
    let resp = reqwest::Client::new()
        .post(format!(
            "http://{}/v1/chat/completions",
            stack.data_plane.addr
        ))
        .bearer_auth(&key)
        .header("x-request-id", "cost-abort")
        .json(&json!({"model": "slow", "stream": true,
                      "messages": [{"role": "user", "content": "Say hello please"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut resp = resp;
    let first = resp.chunk().await.unwrap();
    assert!(first.is_some(), "the stream started");
    drop(resp);
    let row = ledger(&stack, "cost-abort").await;
    assert_eq!(row.get::<String, _>("pricing_status"), "estimated");
    assert_eq!(row.get::<Option<i64>, _>("input_tokens"), Some(12));
    assert_eq!(row.get::<Option<i64>, _>("cost_pusd"), Some(12_000_000));
    let extra: Value = row.get("usage_extra");
    assert_eq!(extra["estimated"], true, "{extra}");
    stack.shutdown().await;
}
