//! Request logs as stored: payload policy modes, built-in and admin redaction, opt-out owners,
//! and nothing lost when a data plane shuts down.

use std::time::Duration;

use serde_json::json;
use weir_e2e::{chat_at, eventually, run, Stack};

async fn count(stack: &Stack, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&stack.control_plane.pool)
        .await
        .unwrap()
}

/// The node's `/readyz` request-log counters once `sent` records are acked, or `None` after
/// `limit`.
async fn acked_counters(
    node: std::net::SocketAddr,
    sent: u64,
    limit: Duration,
) -> Option<serde_json::Value> {
    eventually(limit, || async {
        let v: serde_json::Value = reqwest::get(format!("http://{node}/readyz"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (v["request_logs"]["acked"] == sent).then(|| v["request_logs"].clone())
    })
    .await
}

async fn wait_policy_version(stack: &Stack, version: &str) {
    let cfg = stack.data_plane.config.clone();
    let v = version.to_string();
    let ok = eventually(Duration::from_secs(10), || {
        let (cfg, v) = (cfg.clone(), v.clone());
        async move {
            (cfg.current
                .load()
                .version(weir_proto::config::ResourceType::PayloadPolicy)
                == v)
                .then_some(())
        }
    })
    .await;
    assert!(
        ok.is_some(),
        "policy version {version} never reached the data plane"
    );
}

async fn set_policy(stack: &Stack, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["policy", "set", "-o", "json"];
    all.extend_from_slice(args);
    let out = run(stack.weirctl(&all)).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    wait_policy_version(stack, v["version"].as_str().unwrap()).await;
    v
}

async fn post(stack: &Stack, key: &str, rid: &str, body: serde_json::Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/chat/completions", stack.gateway_url()))
        .bearer_auth(key)
        .header("x-request-id", rid)
        .header("x-api-key", "sk-ant-should-never-be-stored")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{rid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_postgres_and_policy_modes_hold() {
    let stack = Stack::start().await;
    let key = stack.seed(&[("gpt", "mock-model")]).await;

    // Invalid policies are refused by the control plane, naming the problem.
    let bad = run(stack.weirctl(&["policy", "set", "--redact", "messages..content"])).await;
    assert_eq!(bad.code, 7, "{}", bad.stderr);
    assert!(bad.stderr.contains("messages..content"), "{}", bad.stderr);
    let bad = run(stack.weirctl(&["policy", "set", "--request-max-bytes", "0"])).await;
    assert_eq!(bad.code, 7, "{}", bad.stderr);
    assert!(bad.stderr.contains("request_max_bytes"), "{}", bad.stderr);
    let bad = run(stack.weirctl(&["policy", "set", "--capture-mode", "everything"])).await;
    assert_eq!(bad.code, 7, "{}", bad.stderr);

    let v = set_policy(&stack, &["--redact", "body.metadata.internal_note"]).await;
    assert_eq!(v["redaction_paths"], json!(["body.metadata.internal_note"]));
    let secret_body = json!({
        "model": "gpt",
        "messages": [{"role": "user", "content": "hello"}],
        "metadata": {"internal_note": "admin-path-secret", "deep": {"Client_Secret": "json-key-secret"}},
    });
    post(&stack, &key, "secret-1", secret_body.clone()).await;
    let payloads = eventually(Duration::from_secs(5), || async {
        sqlx::query_scalar::<_, String>(
            "SELECT p.request::text FROM request_log_payloads p JOIN request_logs l USING (log_id, created_at)
             WHERE l.request_id = 'secret-1'",
        )
        .fetch_optional(&stack.control_plane.pool)
        .await
        .unwrap()
    })
    .await
    .expect("payload stored");
    for secret in [
        key.as_str(),
        "sk-ant-should-never-be-stored",
        "admin-path-secret",
        "json-key-secret",
    ] {
        assert!(
            !payloads.contains(secret),
            "{secret} reached Postgres: {payloads}"
        );
    }
    let everything = count(
        &stack,
        &format!(
            "SELECT count(*) FROM request_logs l JOIN request_log_payloads p USING (log_id, created_at)
             WHERE (l.*)::text || p.request::text || coalesce(p.response::text, '') LIKE '%{key}%'"
        ),
    )
    .await;
    assert_eq!(everything, 0);
    let (version, mode, request_max): (String, String, i64) = sqlx::query_as(
        "SELECT policy_version, capture_mode, request_max_bytes
         FROM request_logs WHERE request_id = 'secret-1'",
    )
    .fetch_one(&stack.control_plane.pool)
    .await
    .unwrap();
    assert_eq!(serde_json::Value::from(version), v["version"]);
    assert_eq!(mode, "redacted_payloads");
    assert_eq!(request_max, 65536);

    // summary_only: the row, no payloads.
    set_policy(&stack, &["--capture-mode", "summary_only"]).await;
    post(&stack, &key, "summary-1", secret_body.clone()).await;
    eventually(Duration::from_secs(5), || async {
        (count(
            &stack,
            "SELECT count(*) FROM request_logs WHERE request_id = 'summary-1'",
        )
        .await
            == 1)
            .then_some(())
    })
    .await
    .expect("summary row");
    assert_eq!(
        count(&stack, "SELECT count(*) FROM request_log_payloads p JOIN request_logs l USING (log_id, created_at) WHERE l.request_id = 'summary-1'").await,
        0
    );
    // Without payloads the usage and tool count are read from the response bytes alone.
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) FROM request_logs WHERE request_id = 'summary-1'
               AND input_tokens > 0 AND output_tokens > 0 AND invoked_tool_count = 0"
        )
        .await,
        1
    );

    // disabled: a user's requests leave only their spend.
    set_policy(&stack, &["--capture-mode", "disabled"]).await;
    let ledger_before = count(&stack, "SELECT count(*) FROM usage_cost_events").await;
    post(&stack, &key, "disabled-1", secret_body.clone()).await;
    eventually(Duration::from_secs(5), || async {
        (count(&stack, "SELECT count(*) FROM usage_cost_events").await == ledger_before + 1)
            .then_some(())
    })
    .await
    .expect("ledger row written");
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) FROM request_logs WHERE request_id = 'disabled-1'"
        )
        .await,
        0
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opted_out_user_leaves_only_spend() {
    let stack = Stack::start().await;
    stack.seed(&[("gpt", "mock-model")]).await;
    let out =
        run(stack.weirctl(&["users", "create", "--name", "bob", "--no-request-logging"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run(stack.weirctl(&[
        "keys",
        "create",
        "--user",
        "bob",
        "--name",
        "b",
        "--secret-only",
    ]))
    .await;
    let bob = out.stdout.trim().to_string();
    stack.wait_for_key(&bob).await;
    post(
        &stack,
        &bob,
        "bob-1",
        json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    let spent = eventually(Duration::from_secs(5), || async {
        let n = count(&stack, "SELECT count(*) FROM usage_cost_events e JOIN users u ON u.id = e.user_id WHERE u.name = 'bob'").await;
        (n == 1).then_some(())
    })
    .await;
    assert!(spent.is_some(), "bob's spend was not recorded");
    assert_eq!(
        count(&stack, "SELECT count(*) FROM request_logs").await,
        0,
        "bob opted out"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_plane_shutting_down_ships_what_it_holds() {
    let stack = Stack::start().await;
    let key = stack.seed(&[("gpt", "mock-model")]).await;
    // A node that would hold its records for a minute before sending a batch.
    let dp = Stack::start_data_plane_with(
        &stack.control_plane,
        &stack.dataplane_token,
        "slow-batcher",
        |s| {
            s.log_batch_delay = Duration::from_secs(60);
            s.log_batch_idle_delay = Duration::ZERO;
            s.log_batch_records = 100_000;
        },
    )
    .await;
    let cfg = dp.config.clone();
    let hash = weir_proto::api_key::hash(&key);
    eventually(Duration::from_secs(10), || {
        let cfg = cfg.clone();
        async move { cfg.current.load().keys.contains_key(&hash).then_some(()) }
    })
    .await
    .expect("key reached the new node");
    let n = 40;
    for i in 0..n {
        assert_eq!(
            chat_at(dp.addr, &key, "gpt", &format!("drain-{i}")).await,
            200
        );
    }
    let stored_before: i64 = count(
        &stack,
        "SELECT count(*) FROM request_logs WHERE request_id LIKE 'drain-%'",
    )
    .await;
    assert_eq!(stored_before, 0, "nothing was due to be sent yet");
    let counters = dp.logs.counters().clone();
    dp.shutdown().await;
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) FROM request_logs WHERE request_id LIKE 'drain-%'"
        )
        .await,
        n
    );
    assert_eq!(
        counters
            .dropped_shutdown
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_harness_and_session_are_recorded_and_bad_headers_refused() {
    let stack = Stack::start().await;
    let key = stack.seed(&[("gpt", "mock-model")]).await;
    let client = reqwest::Client::new();
    let url = format!("{}/chat/completions", stack.gateway_url());
    let body = json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]});
    let resp = client
        .post(&url)
        .bearer_auth(&key)
        .header("x-request-id", "tagged-1")
        .header("user-agent", "claude-cli/1.0.83 (external, cli)")
        .header("x-app", "cli")
        .header("x-weir-service", "billing")
        .header("x-weir-env", "prod")
        .header("x-weir-tags", "ticket=abc-1; area=payments")
        .header("x-weir-session", "sess-42")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let sent = stack.upstream.observed.last().unwrap();
    for h in [
        "x-weir-service",
        "x-weir-tags",
        "x-weir-session",
        "x-weir-env",
    ] {
        assert!(sent.headers.get(h).is_none(), "{h} was forwarded upstream");
    }
    let row = eventually(Duration::from_secs(5), || async {
        sqlx::query_as::<
            _,
            (
                String,
                String,
                Option<String>,
                Option<String>,
                Option<String>,
                Option<String>,
            ),
        >(
            "SELECT harness_key, harness_version, service, env, session_id, session_source
             FROM request_logs WHERE request_id = 'tagged-1'",
        )
        .fetch_optional(&stack.control_plane.pool)
        .await
        .unwrap()
    })
    .await
    .expect("logged");
    assert_eq!(row.0, "claude_code");
    assert_eq!(row.1, "1.0.83");
    assert_eq!(
        (row.2.as_deref(), row.3.as_deref()),
        (Some("billing"), Some("prod"))
    );
    assert_eq!(
        (row.4.as_deref(), row.5.as_deref()),
        (Some("sess-42"), Some("x-weir-session"))
    );
    let tags: Vec<(String, String)> = sqlx::query_as(
        "SELECT t.key, t.value FROM request_log_tags t JOIN request_logs l USING (log_id, created_at)
         WHERE l.request_id = 'tagged-1' ORDER BY t.key",
    )
    .fetch_all(&stack.control_plane.pool)
    .await
    .unwrap();
    let keys: Vec<&str> = tags.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["area", "env", "service", "ticket"]);
    let shown = run(stack.weirctl(&["logs", "show", "tagged-1", "-o", "json"])).await;
    let detail: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(detail["session_id"], "sess-42");
    assert_eq!(detail["session_source"], "x-weir-session");
    assert_eq!(detail["harness_label"], "Claude Code");
    assert_eq!(detail["harness_version"], "1.0.83");
    assert_eq!(detail["summary"]["harness"], "claude_code");
    // Tags are filterable.
    for (args, want) in [
        (vec!["--service", "billing", "--tag", "ticket=abc-1"], 1),
        (vec!["--env", "prod", "--tag", "area"], 1),
        (vec!["--tag", "ticket=zzz"], 0),
        (vec!["--component", "anything"], 0),
    ] {
        let mut all = vec!["logs", "list", "-o", "json"];
        all.extend(args.iter().copied());
        let out = run(stack.weirctl(&all)).await;
        assert_eq!(out.code, 0, "{}", out.stderr);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["logs"].as_array().unwrap().len(), want, "{args:?}");
    }

    // Bad tag and session headers: 400 naming the header, nothing forwarded.
    let before = stack.upstream.observed.count();
    for (header, value) in [
        ("x-weir-tags", "service=x"),
        ("x-weir-tags", "a=1;b=2;c=3;d=4;e=5;f=6"),
        ("x-weir-service", "Not Lowercase"),
        ("x-weir-session", "has spaces"),
    ] {
        let resp = client
            .post(&url)
            .bearer_auth(&key)
            .header(header, value)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{header}: {value}");
        let v: serde_json::Value = resp.json().await.unwrap();
        assert!(
            v["error"]["message"].as_str().unwrap().contains(header),
            "{v}"
        );
        assert_eq!(v["error"]["code"], "invalid_header");
    }
    assert_eq!(stack.upstream.observed.count(), before);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5_mb_base64_image_is_stored_truncated_with_its_shape() {
    let stack = Stack::start().await;
    let key = stack.seed(&[("gpt", "mock-model")]).await;
    let image = format!("data:image/png;base64,{}", "iVBORw0KGgo".repeat(480_000));
    assert!(image.len() > 5_000_000);
    let body = json!({"model": "gpt", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "describe this"},
        {"type": "image_url", "image_url": {"url": image, "detail": "low"}}
    ]}]});
    post(&stack, &key, "image-1", body).await;
    let (request, truncated): (String, bool) = eventually(Duration::from_secs(5), || async {
        sqlx::query_as(
            "SELECT p.request::text, l.request_payload_truncated FROM request_log_payloads p
             JOIN request_logs l USING (log_id, created_at) WHERE l.request_id = 'image-1'",
        )
        .fetch_optional(&stack.control_plane.pool)
        .await
        .unwrap()
    })
    .await
    .expect("payload stored");
    assert!(truncated, "the row says its request payload was truncated");
    assert!(request.len() < 65_536, "{} bytes stored", request.len());
    let v: serde_json::Value = serde_json::from_str(&request).unwrap();
    let parts = &v["body"]["messages"][0]["content"];
    assert_eq!(parts[0]["text"], "describe this");
    assert_eq!(parts[1]["image_url"]["detail"], "low");
    let url = parts[1]["image_url"]["url"].as_str().unwrap();
    assert!(
        url.starts_with("data:image/png;base64,[") && url.contains("bytes truncated"),
        "{url}"
    );
    // The upstream got the whole image: truncation is for the log only.
    let sent = stack.upstream.observed.last().unwrap();
    assert_eq!(
        sent.body["messages"][0]["content"][1]["image_url"]["url"]
            .as_str()
            .unwrap()
            .len(),
        image.len()
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_merges_shows_in_detail_and_filters_the_list() {
    let stack = Stack::start().await;
    let key = stack.seed(&[("gpt", "mock-model")]).await;
    for rid in ["fb-1", "fb-2"] {
        post(
            &stack,
            &key,
            rid,
            json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    }
    let n = eventually(Duration::from_secs(10), || async {
        let n = count(&stack, "SELECT count(*) FROM request_logs").await;
        (n >= 2).then_some(n)
    })
    .await;
    assert_eq!(n, Some(2));
    for args in [
        vec![
            "logs",
            "feedback",
            "fb-1",
            "--score",
            "helpful=1",
            "--label",
            "good",
        ],
        vec![
            "logs",
            "feedback",
            "fb-1",
            "--score",
            "accuracy=0.5",
            "--score",
            "helpful=0",
            "--label",
            "reviewed",
            "--label",
            "good",
            "--comment",
            "fine",
        ],
    ] {
        let out = run(stack.weirctl(&args)).await;
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
    }
    let out = run(stack.weirctl(&["logs", "show", "fb-1", "-o", "json"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let f = &v["feedback"];
    assert_eq!(f["scores"]["helpful"], 0.0, "a later score replaces: {f}");
    assert_eq!(f["scores"]["accuracy"], 0.5);
    assert_eq!(
        f["labels"],
        json!(["good", "reviewed"]),
        "labels merge without duplicates"
    );
    assert_eq!(f["comment"], "fine");
    let table = run(stack.weirctl(&["logs", "show", "fb-1"])).await;
    assert!(table.stdout.contains("accuracy=0.5"), "{}", table.stdout);
    let out =
        run(stack.weirctl(&["logs", "list", "--feedback-label", "reviewed", "-o", "json"])).await;
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let ids: Vec<&str> = v["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["fb-1"]);
    let out = run(stack.weirctl(&["logs", "show", "fb-2", "-o", "json"])).await;
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(
        v["feedback"].is_null(),
        "untouched logs have none: {}",
        v["feedback"]
    );
    for (args, code) in [
        (vec!["logs", "feedback", "nope", "--label", "x"], 3),
        (vec!["logs", "feedback", "fb-1"], 7),
        (
            vec!["logs", "feedback", "fb-1", "--score", "helpful=very"],
            2,
        ),
        (vec!["logs", "feedback", "fb-1", "--label", "has space"], 7),
    ] {
        let out = run(stack.weirctl(&args)).await;
        assert_eq!(out.code, code, "{args:?}: {}", out.stderr);
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_reports_group_the_ledger_and_show_unpriced_usage() {
    let stack = Stack::start().await;
    let key = stack
        .seed(&[("gpt", "mock-model"), ("free", "mock-model")])
        .await;
    let out = run(stack.weirctl(&[
        "models",
        "price",
        "--model",
        "gpt",
        "--input-price",
        "1",
        "--output-price",
        "2",
    ]))
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    for (model, rid) in [("gpt", "sp-1"), ("gpt", "sp-2"), ("free", "sp-3")] {
        post(
            &stack,
            &key,
            rid,
            json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    }
    let n = eventually(Duration::from_secs(10), || async {
        let n = count(&stack, "SELECT count(*) FROM usage_cost_events").await;
        (n >= 3).then_some(n)
    })
    .await;
    assert_eq!(n, Some(3));
    let ledger_gpt: i64 = sqlx::query_scalar(
        "SELECT sum(cost_pusd)::bigint FROM usage_cost_events WHERE model_key = 'gpt'",
    )
    .fetch_one(&stack.control_plane.pool)
    .await
    .unwrap();
    assert!(ledger_gpt > 0);

    let spend = |by: &'static str| {
        let cmd = stack.weirctl(&["spend", "--by", by, "-o", "json"]);
        async move {
            let out = run(cmd).await;
            assert_eq!(out.code, 0, "{}", out.stderr);
            serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()
        }
    };
    let by_model = spend("model").await;
    let rows = by_model["rows"].as_array().unwrap();
    assert_eq!(rows[0]["key"], "gpt", "highest spend first");
    assert_eq!(rows[0]["cost_pusd"], ledger_gpt);
    assert_eq!(
        (rows[0]["priced"].as_u64(), rows[0]["requests"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(rows[1]["key"], "free");
    assert_eq!(
        rows[1]["unpriced"], 1,
        "unpriced usage is counted, not a silent zero"
    );
    assert_eq!(rows[1]["cost_usd"], "0.00");
    assert_eq!(by_model["total"]["requests"], 3);
    let by_user = spend("user").await;
    let rows = by_user["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["name"], "alice");
    assert_eq!(
        (rows[0]["priced"].as_u64(), rows[0]["unpriced"].as_u64()),
        (Some(2), Some(1))
    );
    let table = run(stack.weirctl(&["spend", "--by", "provider"])).await;
    assert!(
        table.stdout.contains("mock") && table.stdout.contains("total"),
        "{}",
        table.stdout
    );
    // A range that holds nothing, and malformed requests.
    let out = run(stack.weirctl(&[
        "spend",
        "--by",
        "model",
        "--since",
        "2020-01-01T00:00:00Z",
        "--until",
        "2020-02-01T00:00:00Z",
        "-o",
        "json",
    ]))
    .await;
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(v["rows"].as_array().unwrap().is_empty());
    for args in [
        vec!["spend", "--by", "colour"],
        vec![
            "spend",
            "--since",
            "2026-02-01T00:00:00Z",
            "--until",
            "2026-01-01T00:00:00Z",
        ],
    ] {
        let out = run(stack.weirctl(&args)).await;
        assert_eq!(out.code, 7, "{args:?}: {}", out.stderr);
    }
    stack.shutdown().await;
}

/// The node counts the batches it ships next to the records, so an operator can see the mean
/// batch size (in `/readyz` and `/metrics`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_counts_the_batches_it_ships() {
    let stack = Stack::start().await;
    let key = stack.seed(&[("gpt", "mock-model")]).await;
    let base = format!("http://{}", stack.data_plane.addr);
    let sent = 4u64;
    for i in 0..sent {
        assert_eq!(
            stack.chat(&key, "gpt", &format!("batch-count-{i}")).await,
            200
        );
        // Past the harness's 20 ms batch delay: each record leaves in its own batch.
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    let logs = acked_counters(stack.data_plane.addr, sent, Duration::from_secs(5))
        .await
        .expect("every record acked");
    let batches = logs["batches"].as_u64().expect("a batch count");
    assert!(
        (sent - 1..=sent).contains(&batches),
        "{sent} records spaced past the batch delay: {logs}"
    );
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!("weir_request_log_batches_total {batches}")),
        "{metrics}"
    );
    // Spaced requests never wait in the queue together: the idle worker takes each alone.
    assert_eq!(logs["queue_peak"], 1, "{logs}");
    assert!(
        metrics.contains("weir_request_log_queue_peak 1\n"),
        "{metrics}"
    );
    stack.shutdown().await;
}

/// While the control plane has acked every earlier batch, a batch goes out soon after its
/// first record instead of waiting for the batch delay: recording at low load runs in small
/// steps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_pipeline_ships_each_record_in_its_own_small_batch() {
    let stack = Stack::start().await;
    let key = stack.seed(&[("gpt", "mock-model")]).await;
    // A long batch delay: only the idle seal can send these before it.
    let dp = Stack::start_data_plane_with(
        &stack.control_plane,
        &stack.dataplane_token,
        "idle-batching",
        |s| {
            s.log_batch_delay = Duration::from_secs(5);
            s.log_batch_idle_delay = Duration::from_millis(5);
        },
    )
    .await;
    let sent = 6u64;
    for i in 0..sent {
        let rid = format!("idle-batch-{i}");
        assert_eq!(chat_at(dp.addr, &key, "gpt", &rid).await, 200);
        // Long enough for the previous batch's ack on a slow machine.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let logs = acked_counters(dp.addr, sent, Duration::from_secs(3))
        .await
        .expect("every record acked well before the 5 s batch delay");
    assert!(
        logs["batches"].as_u64().unwrap() >= sent - 1,
        "records were held for a fuller batch: {logs}"
    );
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) FROM request_logs WHERE request_id LIKE 'idle-batch-%'"
        )
        .await,
        sent as i64
    );
    dp.shutdown().await;
    stack.shutdown().await;
}

/// A request without an x-request-id gets its log id as its request id (32 hex digits): the
/// admin API finds it by that id, a caller reusing it (a client retrying with the id it was
/// given) is matched too, and the request-id index holds only ids callers chose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minted_request_id_is_the_log_id_and_lookups_still_match() {
    use weir_proto::admin::{GetRequestLogRequest, ListRequestLogsRequest};
    let stack = Stack::start().await;
    let key = stack.seed(&[("gpt", "mock-model")]).await;
    let resp = reqwest::Client::new()
        .post(format!("{}/chat/completions", stack.gateway_url()))
        .bearer_auth(&key)
        .json(&json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let minted = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(minted.len(), 32, "{minted}");
    for rid in ["caller-dup", "caller-dup", minted.as_str()] {
        assert_eq!(stack.chat(&key, "gpt", rid).await, 200);
    }
    let stored = eventually(Duration::from_secs(10), || async {
        (count(&stack, "SELECT count(*) FROM request_logs").await == 4).then_some(())
    })
    .await;
    assert!(stored.is_some(), "four logs stored");
    assert_eq!(
        count(
            &stack,
            &format!(
                "SELECT count(*) FROM request_logs
                 WHERE request_id = '{minted}' AND request_id = replace(log_id::text, '-', '')"
            )
        )
        .await,
        1,
        "the minted id is its log's id"
    );

    let mut admin = stack.admin().await;
    // (request id, logs listed with it, the newest's count of logs sharing it)
    let cases = [
        (minted.as_str(), 2, 2),
        ("caller-dup", 2, 2),
        ("nobody", 0, 0),
    ];
    for (rid, listed, same) in cases {
        let page = admin
            .list_request_logs(ListRequestLogsRequest {
                request_id: rid.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.logs.len(), listed, "{rid}: {:?}", page.logs);
        assert!(page.logs.iter().all(|l| l.request_id == rid), "{rid}");
        if listed == 0 {
            continue;
        }
        let detail = admin
            .get_request_log(GetRequestLogRequest { id: rid.into() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(detail.same_request_id_count, same, "{rid}");
    }
    // The minted id names the request that minted it, not the later one that reused it.
    let first = admin
        .get_request_log(GetRequestLogRequest { id: minted.clone() })
        .await
        .unwrap()
        .into_inner();
    let first_id = first.summary.expect("summary").log_id;
    assert_eq!(
        uuid::Uuid::parse_str(&first_id)
            .unwrap()
            .simple()
            .to_string(),
        minted
    );
    let partial: String = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'request_logs_request_id'",
    )
    .fetch_one(&stack.control_plane.pool)
    .await
    .unwrap();
    assert!(partial.contains("WHERE"), "{partial}");
    // The admin API's form of a request-id match can use the partial index.
    let mut tx = stack.control_plane.pool.begin().await.unwrap();
    sqlx::query("SET LOCAL enable_seqscan = off")
        .execute(&mut *tx)
        .await
        .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT log_id FROM request_logs l
         WHERE (l.request_id = 'caller-dup' AND l.request_id <> replace(l.log_id::text, '-', ''))",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    assert!(
        plan.iter().any(|l| l.contains("request_id_idx")),
        "{plan:#?}"
    );
    drop(tx);
    stack.shutdown().await;
}
