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

/// Ledger rows of a past day, sent over the real ingest stream.
fn past_record(
    at: chrono::DateTime<chrono::Utc>,
    provider: &str,
    upstream: &str,
    model: &str,
    input: u64,
) -> weir_proto::logs::RequestLog {
    let mut r = weir_e2e::record(at, uuid::Uuid::nil(), model, input);
    r.caller = None;
    r.provider_key = provider.into();
    r.upstream_model = upstream.into();
    r.attempts[0].provider_key = provider.into();
    r.attempts[0].upstream_model = upstream.into();
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_shows_matching_days_and_the_missing_request() {
    // The admin keys live in the control plane's environment, under names its settings give.
    // SAFETY: set once, before the control plane reads them; names unique to this test.
    unsafe {
        std::env::set_var("WEIR_E2E_OPENAI_ADMIN", "sk-admin-openai-e2e");
        std::env::set_var("WEIR_E2E_ANTHROPIC_ADMIN", "sk-ant-admin-e2e");
    }
    // A second mock serves the providers' cost reports.
    let reports = weir_e2e::mock_upstream::MockUpstream::start(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let base = format!("http://{}", reports.addr);
    let stack = Stack::start_with(|s| {
        s.reconcile.openai.base_url = base.clone();
        s.reconcile.openai.key_env = "WEIR_E2E_OPENAI_ADMIN".into();
        s.reconcile.anthropic.base_url = base.clone();
        s.reconcile.anthropic.key_env = "WEIR_E2E_ANTHROPIC_ADMIN".into();
    })
    .await;
    stack
        .seed_models(&[
            ModelSpec::new("gpt", &[("mock", "gpt-4o")]),
            ModelSpec::new("claude", &[("mock-anthropic", "claude-sonnet-4-20250514")]),
        ])
        .await;
    // History: prices in force since before the days compared (the API only takes prices from
    // now on, so the past is written as it would have been then).
    sqlx::query(
        "INSERT INTO prices (model_key, input_pusd_per_token, cached_input_pusd_per_token,
                             output_pusd_per_token, valid_from)
         VALUES ('gpt', 2500000, 1250000, 10000000, now() - interval '10 days'),
                ('claude', 3000000, 300000, 15000000, now() - interval '10 days')",
    )
    .execute(&stack.control_plane.pool)
    .await
    .unwrap();
    let today = chrono::Utc::now().date_naive();
    let d1 = today - chrono::Duration::days(2);
    let d2 = today - chrono::Duration::days(1);
    let noon = |d: chrono::NaiveDate| d.and_hms_opt(12, 0, 0).unwrap().and_utc();
    // 1,000 input tokens: $0.0025 on gpt-4o, $0.003 on Claude Sonnet 4.
    let mut batch = Vec::new();
    for _ in 0..2 {
        batch.push(past_record(noon(d1), "mock", "gpt-4o", "gpt", 1_000));
    }
    for _ in 0..3 {
        batch.push(past_record(noon(d2), "mock", "gpt-4o", "gpt", 1_000));
    }
    batch.push(past_record(
        noon(d1),
        "mock-anthropic",
        "claude-sonnet-4-20250514",
        "claude",
        1_000,
    ));
    stack.ingest(vec![batch]).await;

    // OpenAI's report, in two pages: day 1 matches ($0.005); day 2 bills four requests
    // ($0.01) where Weir saw three.
    let unix = |d: chrono::NaiveDate| noon(d).timestamp() - 12 * 3600;
    let bucket = |d: chrono::NaiveDate, v: f64| {
        json!({"object": "bucket", "start_time": unix(d), "end_time": unix(d) + 86_400,
               "results": [{"object": "organization.costs.result",
                            "amount": {"value": v, "currency": "usd"},
                            "line_item": "gpt-4o-2024-08-06, input", "project_id": null}]})
    };
    let day_text = |d: chrono::NaiveDate| d.format("%Y-%m-%d").to_string();
    reports.observed.cost_pages.lock().unwrap().insert(
        "/v1/organization/costs".into(),
        vec![
            json!({"object": "page", "data": [bucket(d1, 0.005)], "has_more": true, "next_page": "1"}),
            json!({"object": "page", "data": [bucket(d2, 0.01)], "has_more": false, "next_page": null}),
        ],
    );
    // Anthropic's report: amounts are decimal strings of cents ($0.003 = "0.3").
    reports.observed.cost_pages.lock().unwrap().insert(
        "/v1/organizations/cost_report".into(),
        vec![json!({"has_more": false, "next_page": null, "data": [
            {"starting_at": format!("{}T00:00:00Z", day_text(d1)),
             "ending_at": format!("{}T00:00:00Z", day_text(d2)),
             "results": [{"currency": "USD", "amount": "0.3", "workspace_id": null,
                          "description": "Claude Sonnet 4 Usage - Input Tokens",
                          "cost_type": "tokens", "model": "claude-sonnet-4-20250514",
                          "service_tier": "standard", "token_type": "uncached_input_tokens",
                          "context_window": "0-200k"}]}]})],
    );

    let reconcile = |provider: &str, weir: &str, file: Option<&str>| {
        let mut args = vec![
            "spend".to_string(),
            "reconcile".into(),
            "--provider".into(),
            provider.into(),
            "--from".into(),
            day_text(d1),
            "--to".into(),
            day_text(d2),
            "--weir-provider".into(),
            weir.into(),
            "-o".into(),
            "json".into(),
        ];
        if let Some(f) = file {
            args.extend(["--file".into(), f.into()]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        stack.weirctl(&refs)
    };
    let out = run(reconcile("openai", "mock", None)).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let lines: Vec<(String, String, String, String, String)> = v["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let s = |k: &str| l[k].as_str().unwrap_or_default().to_string();
            (
                s("day"),
                s("model"),
                s("provider_usd"),
                s("weir_usd"),
                s("difference_usd"),
            )
        })
        .collect();
    let line = |d, m: &str, p: &str, w: &str, diff: &str| {
        (
            day_text(d),
            m.to_string(),
            p.to_string(),
            w.to_string(),
            diff.to_string(),
        )
    };
    assert_eq!(
        lines,
        vec![
            line(d1, "gpt-4o", "0.005", "0.005", "0.00"),
            line(d2, "gpt-4o", "0.01", "0.0075", "0.0025"),
        ],
        "{v}"
    );
    assert_eq!(v["source"], "api");
    // The admin key went to the provider's API, from the control plane's environment.
    let seen = reports.observed.requests.lock().unwrap().clone();
    let costs: Vec<_> = seen
        .iter()
        .filter(|r| r.path == "/v1/organization/costs")
        .collect();
    assert_eq!(costs.len(), 2, "both pages fetched");
    assert_eq!(
        costs[0].headers["authorization"],
        "Bearer sk-admin-openai-e2e"
    );

    let out = run(reconcile("anthropic", "mock-anthropic", None)).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["lines"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["lines"][0]["model"], "claude-sonnet-4");
    assert_eq!(v["lines"][0]["difference_pusd"], 0, "{v}");
    assert_eq!(v["total"]["weir_usd"], "0.003");
    let seen = reports.observed.requests.lock().unwrap().clone();
    let anth = seen
        .iter()
        .find(|r| r.path == "/v1/organizations/cost_report")
        .unwrap();
    assert_eq!(anth.headers["x-api-key"], "sk-ant-admin-e2e");
    assert_eq!(anth.headers["anthropic-version"], "2023-06-01");

    // The same from an exported file.
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("openai.csv");
    std::fs::write(
        &csv,
        format!(
            "date,line_item,cost_usd\n{},\"gpt-4o-2024-08-06, input\",0.005\n{},\"gpt-4o-2024-08-06, input\",0.01\n",
            day_text(d1),
            day_text(d2)
        ),
    )
    .unwrap();
    let out = run(reconcile("openai", "mock", Some(csv.to_str().unwrap()))).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["source"], "report");
    assert_eq!(v["lines"][1]["difference_usd"], "0.0025", "{v}");
    assert_eq!(v["total"]["difference_pusd"], 2_500_000_000i64);

    // Through the admin HTTP API, and its errors.
    let http = reqwest::Client::new();
    let url = format!(
        "http://{}/api/v1/admin/observability/spend/reconcile",
        stack.control_plane.http_addr
    );
    let r = http
        .post(&url)
        .bearer_auth(&stack.admin_token)
        .json(
            &json!({"provider": "openai", "from": day_text(d1), "to": day_text(d2),
                      "weir_providers": ["mock"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["total"]["difference_usd"], "0.0025", "{v}");
    for (body, status, message) in [
        (
            json!({"provider": "azure", "from": day_text(d1), "to": day_text(d2)}),
            400,
            "provider \"azure\" must be openai or anthropic",
        ),
        (
            json!({"provider": "openai", "from": "yesterday", "to": day_text(d2)}),
            400,
            "from \"yesterday\" must be a day",
        ),
        (
            json!({"provider": "openai", "from": day_text(d1), "to": day_text(d2)}),
            400,
            "no Weir provider of kind openai points at api.openai.com",
        ),
        (
            json!({"provider": "openai", "from": day_text(d1), "to": day_text(d2),
                   "weir_providers": ["mock"], "report": "when,what\n1,2\n"}),
            400,
            "report: the report is not a CSV export",
        ),
    ] {
        let r = http
            .post(&url)
            .bearer_auth(&stack.admin_token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let got = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(got, status, "{body}: {v}");
        let said = v["error"]["message"].as_str().unwrap_or_default();
        assert!(said.contains(message), "{body}: {v}");
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpriced_usage_is_listed_and_a_route_can_refuse_it() {
    let stack = Stack::start().await;
    let key = stack
        .seed_models(&[
            ModelSpec::new("free", &[("mock", "mock-model")]),
            ModelSpec::new("tiered", &[("mock", "mock-model")]),
        ])
        .await;
    let out = run(stack.weirctl(&[
        "models",
        "create",
        "--key",
        "strict",
        "--target",
        "mock:mock-model",
        "--require-price",
    ]))
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let out = run(stack.weirctl(&[
        "models",
        "price",
        "--model",
        "tiered",
        "--input-price",
        "1",
        "--output-price",
        "2",
    ]))
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let cfg = stack.data_plane.config.clone();
    let ok = eventually(Duration::from_secs(10), || {
        let s = cfg.current.load();
        let ready = s.prices.contains_key("tiered")
            && s.routes
                .get("strict")
                .is_some_and(|r| r.policy.require_price);
        async move { ready.then_some(()) }
    })
    .await;
    assert!(ok.is_some(), "route and price never reached the node");

    let hello = |model: &str, tier: Option<&str>| {
        let mut b = json!({"model": model, "messages": [{"role": "user", "content": "hi there"}]});
        if let Some(t) = tier {
            b["metadata"] = json!({"mock_service_tier": t});
        }
        b
    };
    // No price at all, and a tier the price has no rates for: both served, both unpriced.
    for (rid, body) in [
        ("un-free-1", hello("free", None)),
        ("un-free-2", hello("free", None)),
        ("un-tier", hello("tiered", Some("priority"))),
    ] {
        let (status, text) = send(&stack, &key, "/v1/chat/completions", body, rid).await;
        assert_eq!(status, 200, "{rid}: {text}");
        assert_eq!(
            ledger(&stack, rid).await.get::<String, _>("pricing_status"),
            "unpriced"
        );
    }
    // A route that requires a price refuses before any upstream call, and says why.
    let before = stack.upstream.observed.count();
    let (status, text) = send(
        &stack,
        &key,
        "/v1/chat/completions",
        hello("strict", None),
        "un-strict",
    )
    .await;
    assert_eq!(status, 400, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], "model_not_priced", "{v}");
    assert_eq!(stack.upstream.observed.count(), before, "no upstream call");
    let logged = eventually(Duration::from_secs(5), || async {
        sqlx::query_scalar::<_, String>("SELECT outcome FROM request_logs WHERE request_id = $1")
            .bind("un-strict")
            .fetch_optional(&stack.control_plane.pool)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(logged.as_deref(), Some("invalid_request"));

    let out = run(stack.weirctl(&["spend", "unpriced", "-o", "json"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let models = v["models"].as_array().unwrap();
    assert_eq!(models.len(), 2, "{v}");
    assert_eq!(models[0]["model_key"], "free");
    assert_eq!(models[0]["requests"], 2);
    assert_eq!(models[0]["has_price"], false);
    assert_eq!(models[1]["model_key"], "tiered");
    assert_eq!(models[1]["has_price"], true);
    assert_eq!(models[1]["service_tiers"], json!(["priority"]));
    let table = run(stack.weirctl(&["spend", "unpriced"])).await;
    assert!(
        table.stdout.contains("a price") && table.stdout.contains("tiers: priority"),
        "{}",
        table.stdout
    );
    // Plain `weirctl spend` still works beside the subcommand.
    let out = run(stack.weirctl(&["spend", "--by", "model"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_and_key_multipliers_discount_computed_costs() {
    let stack = Stack::start().await;
    let key = stack.seed(&[("gpt", "mock-model")]).await;
    // $1,000 per million tokens: the mock's 3 input + 5 output tokens cost $0.008.
    let out = run(stack.weirctl(&[
        "models",
        "price",
        "--model",
        "gpt",
        "--input-price",
        "1000",
        "--output-price",
        "1000",
    ]))
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run(stack.weirctl(&["prices", "multiplier", "--provider", "mock", "0.8"])).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("× 0.80"), "{}", out.stdout);
    let prefix = &key[..16];
    let out = run(stack.weirctl(&["prices", "multiplier", "--key", prefix, "1.1"])).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    // Bad input is named and changes nothing.
    let out = run(stack.weirctl(&["prices", "multiplier", "--provider", "mock", "-5"])).await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("multiplier"), "{}", out.stderr);
    let out = run(stack.weirctl(&["prices", "multiplier", "--provider", "ghost", "0.5"])).await;
    assert!(
        out.stderr.contains("provider \"ghost\" not found"),
        "{}",
        out.stderr
    );

    let cfg = stack.data_plane.config.clone();
    let hash = weir_proto::api_key::hash(&key);
    let ok = eventually(Duration::from_secs(10), || {
        let s = cfg.current.load();
        let ready = s.prices.contains_key("gpt")
            && s.providers
                .get("mock")
                .is_some_and(|p| p.price_multiplier_ppm == 800_000)
            && s.keys
                .get(&hash)
                .is_some_and(|k| k.price_multiplier_ppm == 1_100_000);
        async move { ready.then_some(()) }
    })
    .await;
    assert!(ok.is_some(), "multipliers never reached the node");
    let (status, text) = send(
        &stack,
        &key,
        "/v1/chat/completions",
        json!({"model": "gpt", "messages": [{"role": "user", "content": "Say hello please"}]}),
        "mult-1",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let row = ledger(&stack, "mult-1").await;
    // 8 tokens × $0.001 × 0.8 × 1.1 = $0.00704, one rounding.
    assert_eq!(row.get::<Option<i64>, _>("cost_pusd"), Some(7_040_000_000));
    let extra: Value = row.get("usage_extra");
    assert_eq!(extra["provider_multiplier_ppm"], 800_000, "{extra}");
    assert_eq!(extra["key_multiplier_ppm"], 1_100_000, "{extra}");
    stack.shutdown().await;
}
