//! The data plane as a complete gateway: every endpoint through the official OpenAI and
//! Anthropic SDKs, translation both ways, fallback, broken streams, disconnects, capability
//! mismatches.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::Row;
use weir_e2e::{eventually, python, repo_root, run, ModelSpec, Stack};

async fn client_json(
    script: &str,
    base_url: &str,
    key: &str,
    model: &str,
    mode: &str,
    rid: &str,
) -> Value {
    let mut c = Command::new(python());
    c.arg(repo_root().join("tests/clients").join(script)).args([
        "--base-url",
        base_url,
        "--key",
        key,
        "--model",
        model,
        "--mode",
        mode,
        "--request-id",
        rid,
    ]);
    let out = run(c).await;
    assert_eq!(
        out.code, 0,
        "{script} {mode} failed: {}\n{}",
        out.stdout, out.stderr
    );
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

async fn openai(stack: &Stack, key: &str, model: &str, mode: &str, rid: &str) -> Value {
    client_json(
        "openai_client.py",
        &stack.gateway_url(),
        key,
        model,
        mode,
        rid,
    )
    .await
}

async fn anthropic(stack: &Stack, key: &str, model: &str, mode: &str, rid: &str) -> Value {
    let root = format!("http://{}", stack.data_plane.addr);
    client_json("anthropic_client.py", &root, key, model, mode, rid).await
}

/// The summary row of a request, once it has reached Postgres.
async fn log_row(stack: &Stack, request_id: &str) -> sqlx::postgres::PgRow {
    let pool = stack.control_plane.pool.clone();
    eventually(Duration::from_secs(5), || {
        let pool = pool.clone();
        async move {
            sqlx::query("SELECT * FROM request_logs WHERE request_id = $1")
                .bind(request_id)
                .fetch_optional(&pool)
                .await
                .unwrap()
        }
    })
    .await
    .unwrap_or_else(|| panic!("no request log for {request_id}"))
}

async fn attempts(stack: &Stack, request_id: &str) -> Vec<(i16, String, i32, String, bool)> {
    sqlx::query_as(
        "SELECT a.attempt_no, a.upstream_model, a.status_code, a.error_kind, a.produced_response
         FROM request_log_attempts_all a JOIN request_logs l USING (log_id, created_at)
         WHERE l.request_id = $1 ORDER BY a.attempt_no",
    )
    .bind(request_id)
    .fetch_all(&stack.control_plane.pool)
    .await
    .unwrap()
}

fn i64_col(row: &sqlx::postgres::PgRow, name: &str) -> Option<i64> {
    row.get::<Option<i64>, _>(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_sdk_drives_every_openai_endpoint() {
    let stack = Stack::start().await;
    let key = stack
        .seed_models(&[
            ModelSpec::new("gpt", &[("mock", "mock-model")]),
            ModelSpec::new("gpt-tools", &[("mock", "mock-tools")]),
            ModelSpec::new("embed", &[("mock", "text-embedding-mock")]).operations(&["embeddings"]),
        ])
        .await;

    let v = openai(&stack, &key, "gpt-tools", "tools", "oa-tools").await;
    assert_eq!(v["finish_reason"], "tool_calls", "{v}");
    assert_eq!(v["calls"][0]["name"], "get_weather");
    let row = log_row(&stack, "oa-tools").await;
    assert_eq!(row.get::<Option<i32>, _>("exposed_tool_count"), Some(1));
    assert_eq!(row.get::<Option<i32>, _>("invoked_tool_count"), Some(2));

    let v = openai(&stack, &key, "gpt", "responses", "oa-resp").await;
    assert_eq!(v["text"], "Hello from the mock upstream", "{v}");
    let row = log_row(&stack, "oa-resp").await;
    assert_eq!(row.get::<String, _>("operation"), "responses");
    assert_eq!(i64_col(&row, "output_tokens"), Some(5));

    let v = openai(&stack, &key, "gpt", "responses-stream", "oa-resp-stream").await;
    assert_eq!(v["text"], "Hello from the mock upstream", "{v}");
    assert_eq!(v["types"][0], "response.created");
    assert_eq!(
        v["types"].as_array().unwrap().last().unwrap(),
        "response.completed"
    );
    let row = log_row(&stack, "oa-resp-stream").await;
    assert!(row.get::<bool, _>("stream"));
    // "Say hello please": three words, a token each at the mock.
    assert_eq!(
        i64_col(&row, "input_tokens"),
        Some(3),
        "usage from response.completed"
    );
    assert_eq!(i64_col(&row, "output_tokens"), Some(5));

    let v = openai(&stack, &key, "embed", "embeddings", "oa-embed").await;
    assert_eq!(v["count"], 2, "{v}");
    let row = log_row(&stack, "oa-embed").await;
    assert_eq!(row.get::<String, _>("operation"), "embeddings");
    assert_eq!(i64_col(&row, "input_tokens"), Some(3));
    let status: String =
        sqlx::query_scalar("SELECT pricing_status FROM usage_cost_events WHERE log_id = $1")
            .bind(row.get::<uuid::Uuid, _>("log_id"))
            .fetch_one(&stack.control_plane.pool)
            .await
            .unwrap();
    assert_eq!(
        status, "unpriced",
        "embeddings have input usage, so they are priceable"
    );

    let v = openai(&stack, &key, "gpt", "stream-tools", "oa-stream-tools").await;
    assert_eq!(v["finish_reason"], "stop", "{v}");

    let v = openai(&stack, &key, "gpt", "models", "").await;
    assert_eq!(v["models"], json!(["embed", "gpt", "gpt-tools"]));
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_sdk_native_and_translated_and_openai_sdk_on_anthropic() {
    let stack = Stack::start().await;
    let key = stack
        .seed_models(&[
            ModelSpec::new("claude", &[("mock-anthropic", "mock-model")]),
            ModelSpec::new("claude-tools", &[("mock-anthropic", "mock-tools")]),
            ModelSpec::new("gpt-as-claude", &[("mock", "mock-model")]),
            ModelSpec::new("gpt-tools", &[("mock", "mock-tools")]),
        ])
        .await;

    // Native: /v1/messages to an Anthropic provider.
    let v = anthropic(&stack, &key, "claude", "plain", "an-native").await;
    assert_eq!(v["text"], "Hello from the mock upstream", "{v}");
    let sent = stack.upstream.observed.last().unwrap();
    assert_eq!(sent.path, "/v1/messages");
    assert!(sent.headers.get("anthropic-version").is_some());
    assert!(
        sent.headers.get("x-api-key").is_none(),
        "the gateway key must not be forwarded"
    );
    let row = log_row(&stack, "an-native").await;
    assert_eq!(row.get::<String, _>("operation"), "messages");
    assert_eq!(i64_col(&row, "input_tokens"), Some(6));
    assert_eq!(i64_col(&row, "output_tokens"), Some(5));

    let v = anthropic(&stack, &key, "claude", "stream", "an-native-stream").await;
    assert_eq!(v["text"], "Hello from the mock upstream", "{v}");
    assert_eq!(v["usage"]["output_tokens"], 5);
    let row = log_row(&stack, "an-native-stream").await;
    assert_eq!(
        i64_col(&row, "input_tokens"),
        Some(6),
        "usage from message_start"
    );
    assert_eq!(
        i64_col(&row, "output_tokens"),
        Some(5),
        "usage from message_delta"
    );

    let v = anthropic(
        &stack,
        &key,
        "claude-tools",
        "stream-tools",
        "an-native-tools",
    )
    .await;
    assert_eq!(v["tool_uses"][0]["input"], json!({"city": "Paris"}), "{v}");
    assert_eq!(v["stop_reason"], "tool_use");

    // Translated: /v1/messages to an OpenAI-compatible provider.
    let v = anthropic(&stack, &key, "gpt-as-claude", "plain", "an-translated").await;
    assert_eq!(v["text"], "Hello from the mock upstream", "{v}");
    assert_eq!(v["usage"]["input_tokens"], 6);
    let sent = stack.upstream.observed.last().unwrap();
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(
        sent.body["messages"][0]["content"],
        "Say hello to the gateway please"
    );

    let v = anthropic(
        &stack,
        &key,
        "gpt-as-claude",
        "stream",
        "an-translated-stream",
    )
    .await;
    assert_eq!(v["text"], "Hello from the mock upstream", "{v}");
    assert_eq!(v["usage"]["output_tokens"], 5, "{v}");
    let types: Vec<&str> = v["event_types"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        types.contains(&"message_start") && types.contains(&"message_stop"),
        "{types:?}"
    );
    let row = log_row(&stack, "an-translated-stream").await;
    assert_eq!(i64_col(&row, "output_tokens"), Some(5));

    let v = anthropic(&stack, &key, "gpt-tools", "tools", "an-translated-tools").await;
    assert_eq!(v["tool_uses"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["stop_reason"], "tool_use");

    // An OpenAI client on an Anthropic provider.
    let v = openai(&stack, &key, "claude", "plain", "oa-on-claude").await;
    assert_eq!(v["content"], "Hello from the mock upstream", "{v}");
    assert_eq!(v["usage"]["total_tokens"], 11);
    assert_eq!(stack.upstream.observed.last().unwrap().path, "/v1/messages");
    let v = openai(&stack, &key, "claude", "stream", "oa-on-claude-stream").await;
    assert_eq!(v["content"], "Hello from the mock upstream", "{v}");
    assert!(
        v["usage"].is_null(),
        "the usage chunk is hidden from a client that did not ask"
    );
    let row = log_row(&stack, "oa-on-claude-stream").await;
    assert_eq!(
        i64_col(&row, "total_tokens"),
        Some(11),
        "but the log has it"
    );
    let v = openai(&stack, &key, "claude", "stream-usage", "oa-on-claude-usage").await;
    assert_eq!(v["usage"]["completion_tokens"], 5, "{v}");
    let v = openai(
        &stack,
        &key,
        "claude-tools",
        "stream-tools",
        "oa-on-claude-tools",
    )
    .await;
    assert_eq!(v["calls"][0]["arguments"], "{\"city\":\"Paris\"}", "{v}");
    assert_eq!(v["finish_reason"], "tool_calls");

    // Errors reach an Anthropic client in Anthropic's shape.
    let v = anthropic(&stack, "weir_sk_bad", "claude", "plain", "an-bad-key").await;
    assert_eq!(v["status"], 401, "{v}");
    assert_eq!(v["error"]["error"]["type"], "authentication_error", "{v}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_to_the_next_target_records_every_attempt() {
    let stack = Stack::start().await;
    // The 503 target has weight 1 and the good one weight 0, so the first try always fails.
    let mut spec = ModelSpec::new("fb", &[("mock", "mock-503"), ("mock", "mock-model")]);
    spec.targets[1].0 = "mock".into();
    let key = stack.seed_models(&[spec]).await;
    {
        // Weight 0 on the second target: fallback only.
        sqlx::query("UPDATE model_targets SET weight = 0 WHERE position = 1")
            .execute(&stack.control_plane.pool)
            .await
            .unwrap();
        sqlx::query(
            "UPDATE config_versions SET version = version + 1 WHERE resource_type = 'routes'; ",
        )
        .execute(&stack.control_plane.pool)
        .await
        .unwrap();
        sqlx::query("SELECT pg_notify('weir_config', 'routes')")
            .execute(&stack.control_plane.pool)
            .await
            .unwrap();
        weir_e2e::until_config(&stack.data_plane.config, "weights updated", |s| {
            s.routes["fb"].targets[1].weight == 0
        })
        .await;
    }
    for i in 0..3 {
        let rid = format!("fb-{i}");
        let v = openai(&stack, &key, "fb", "plain", &rid).await;
        assert_eq!(v["content"], "Hello from the mock upstream", "{v}");
        let a = attempts(&stack, &rid).await;
        assert_eq!(
            a,
            vec![
                (
                    1,
                    "mock-503".to_string(),
                    503,
                    "upstream_status".to_string(),
                    false
                ),
                (2, "mock-model".to_string(), 200, String::new(), true),
            ]
        );
        let row = log_row(&stack, &rid).await;
        assert_eq!(row.get::<String, _>("upstream_model"), "mock-model");
        assert_eq!(row.get::<i16, _>("attempt_count"), 2);
    }
    // With every target failing, the last upstream error passes through with its status.
    let key2 = key.clone();
    let client = reqwest::Client::new();
    let mut admin = stack.admin().await;
    admin
        .create_model(weir_proto::admin::CreateModelRequest {
            key: "all-down".into(),
            targets: vec![
                weir_proto::admin::Target {
                    provider_key: "mock".into(),
                    upstream_model: "mock-503".into(),
                    weight: 1,
                },
                weir_proto::admin::Target {
                    provider_key: "mock".into(),
                    upstream_model: "mock-503".into(),
                    weight: 1,
                },
            ],
            operations: vec![],
            fleet_groups: vec![],
            policy: Some(weir_proto::admin::RoutePolicy {
                max_attempts: 3,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let cfg = stack.data_plane.config.clone();
    eventually(Duration::from_secs(10), || {
        let cfg = cfg.clone();
        async move {
            cfg.current
                .load()
                .routes
                .contains_key("all-down")
                .then_some(())
        }
    })
    .await
    .unwrap();
    let resp = client
        .post(format!("{}/chat/completions", stack.gateway_url()))
        .bearer_auth(&key2)
        .header("x-request-id", "all-down")
        .json(&json!({"model": "all-down", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let row = log_row(&stack, "all-down").await;
    assert_eq!(row.get::<String, _>("outcome"), "upstream_error");
    assert_eq!(attempts(&stack, "all-down").await.len(), 3);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_stream_ends_with_an_error_event_and_a_disconnect_cancels_upstream() {
    let stack = Stack::start().await;
    let key = stack
        .seed(&[("broken", "mock-break"), ("endless", "mock-endless")])
        .await;
    let client = reqwest::Client::new();
    let url = format!("{}/chat/completions", stack.gateway_url());

    let text = client
        .post(&url)
        .bearer_auth(&key)
        .header("x-request-id", "broken-1")
        .json(&json!({"model": "broken", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("\"content\":\"Hello\""), "{text}");
    assert!(
        text.contains("\"code\":\"stream_error\""),
        "the client is told: {text}"
    );
    assert!(!text.contains("[DONE]"));
    let row = log_row(&stack, "broken-1").await;
    assert_eq!(row.get::<String, _>("outcome"), "stream_error");
    assert_eq!(attempts(&stack, "broken-1").await[0].3, "stream_broken");

    // A client that leaves mid-stream: the upstream sees the cancellation at once.
    let mut resp = client
        .post(&url)
        .bearer_auth(&key)
        .header("x-request-id", "gone-1")
        .json(&json!({"model": "endless", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    for _ in 0..3 {
        resp.chunk().await.unwrap().expect("a chunk");
    }
    let dropped_at = Instant::now();
    drop(resp);
    drop(client);
    let obs = stack.upstream.observed.clone();
    let cancelled = eventually(Duration::from_secs(2), || {
        let obs = obs.clone();
        async move { *obs.last_cancel_at.lock().unwrap() }
    })
    .await
    .expect("the upstream saw the cancellation");
    let lag = cancelled.saturating_duration_since(dropped_at);
    assert!(
        lag < Duration::from_millis(100),
        "upstream noticed after {lag:?}"
    );
    let row = log_row(&stack, "gone-1").await;
    assert_eq!(row.get::<String, _>("outcome"), "cancelled");
    assert!(!row.get::<String, _>("error_message").is_empty());
    let shown = run(stack.weirctl(&["logs", "show", "gone-1", "-o", "json"])).await;
    let detail: Value = serde_json::from_str(&shown.stdout).unwrap();
    let response: Value =
        serde_json::from_str(detail["response_payload"].as_str().unwrap()).unwrap();
    assert!(
        response["events"].as_array().unwrap().len() >= 3,
        "the partial transcript is kept"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capability_mismatches_are_refused_before_any_upstream_call() {
    let stack = Stack::start().await;
    let key = stack
        .seed_models(&[
            ModelSpec::new("chat-only", &[("mock", "mock-model")])
                .operations(&["chat_completions"]),
            ModelSpec::new("claude", &[("mock-anthropic", "mock-model")]),
        ])
        .await;
    let before = stack.upstream.observed.count();
    let client = reqwest::Client::new();
    for (model, rid) in [("chat-only", "cap-1"), ("claude", "cap-2")] {
        let resp = client
            .post(format!("{}/embeddings", stack.gateway_url()))
            .bearer_auth(&key)
            .header("x-request-id", rid)
            .json(&json!({"model": model, "input": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], "unsupported_operation", "{v}");
        let row = log_row(&stack, rid).await;
        assert_eq!(row.get::<String, _>("outcome"), "invalid_request");
        assert_eq!(row.get::<i16, _>("attempt_count"), 0);
    }
    assert_eq!(stack.upstream.observed.count(), before);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_a_pending_request_keeps_its_attempt_and_spend_trail() {
    let stack = Stack::start().await;
    let key = stack.seed(&[("hang", "mock-hang")]).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = client
        .post(format!("{}/chat/completions", stack.gateway_url()))
        .bearer_auth(&key)
        .header("x-request-id", "left-early")
        .json(&json!({"model": "hang", "messages": []}))
        .send()
        .await;
    assert!(err.is_err(), "the client gave up");
    let row = log_row(&stack, "left-early").await;
    assert_eq!(row.get::<String, _>("outcome"), "cancelled");
    let a = attempts(&stack, "left-early").await;
    assert_eq!(a.len(), 1, "the attempt in flight is recorded");
    assert_eq!(a[0].3, "cancelled");
    let status: String =
        sqlx::query_scalar("SELECT pricing_status FROM usage_cost_events WHERE log_id = $1")
            .bind(row.get::<uuid::Uuid, _>("log_id"))
            .fetch_one(&stack.control_plane.pool)
            .await
            .unwrap();
    assert_eq!(
        status, "usage_missing",
        "the upstream was called: its spend is visible, not silently free"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_upstream_behind_a_private_ca_is_trusted_only_when_configured() {
    let stack = Stack::start().await;
    let key = stack.seed(&[("gpt", "up")]).await;
    let dir = tempfile::tempdir().unwrap();
    let certs = weir_e2e::throwaway_certs(dir.path()).await;
    let private = weir_e2e::mock_upstream::MockUpstream::start_tls(
        ([127, 0, 0, 1], 0).into(),
        &certs.cert,
        &certs.key,
    )
    .await
    .unwrap();
    let url = format!("https://localhost:{}/v1", private.addr.port());
    for args in [
        vec![
            "providers",
            "create",
            "--key",
            "private",
            "--base-url",
            url.as_str(),
        ],
        vec![
            "models",
            "create",
            "--key",
            "internal",
            "--target",
            "private:up",
        ],
    ] {
        let out = run(stack.weirctl(&args)).await;
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let has_route = |dp: &weir_data_plane::DataPlane| {
        let cfg = dp.config.clone();
        async move {
            eventually(Duration::from_secs(10), || {
                let cfg = cfg.clone();
                async move {
                    cfg.current
                        .load()
                        .routes
                        .contains_key("internal")
                        .then_some(())
                }
            })
            .await
            .is_some()
        }
    };
    let ask = |base: String| {
        let key = key.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{base}/chat/completions"))
                .bearer_auth(key)
                .json(
                    &json!({"model": "internal", "messages": [{"role": "user", "content": "hi"}]}),
                )
                .send()
                .await
                .unwrap()
        }
    };

    // The default node trusts only the public roots: the handshake fails, nothing reaches the
    // upstream, and the client gets a gateway error, not a hang.
    assert!(has_route(&stack.data_plane).await);
    let refused = ask(stack.gateway_url()).await;
    assert_eq!(refused.status(), 502);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("certificate"),
        "{body}"
    );
    assert_eq!(private.observed.count(), 0);

    // A node given the CA (WEIR_UPSTREAM_CA) calls it over TLS.
    let ca = certs.ca.clone();
    let trusting = Stack::start_data_plane_with(
        &stack.control_plane,
        &stack.dataplane_token,
        "ca-node",
        move |s| s.upstream_ca = Some(ca),
    )
    .await;
    assert!(has_route(&trusting).await);
    let ok = ask(format!("http://{}/v1", trusting.addr)).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(private.observed.count(), 1);
    trusting.shutdown().await;

    // A CA file that is missing or holds no certificate stops the node at start, by name.
    for bad in [dir.path().join("absent.pem"), certs.key.clone()] {
        let mut s = weir_data_plane::Settings::new("http://127.0.0.1:1", "t");
        s.listen = ([127, 0, 0, 1], 0).into();
        s.upstream_ca = Some(bad.clone());
        let err = weir_data_plane::DataPlane::start(s)
            .await
            .err()
            .expect("refused");
        assert!(
            err.to_string().contains(&bad.display().to_string()),
            "{err}"
        );
    }
    stack.shutdown().await;
}
