//! The walking skeleton: a request travels client → data plane → upstream → data plane →
//! control plane → Postgres → weirctl.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use weir_e2e::{eventually, python, repo_root, run, Stack};

fn sdk(stack: &Stack, key: &str, model: &str, mode: &str, request_id: &str) -> Command {
    let mut c = Command::new(python());
    c.arg(repo_root().join("tests/clients/openai_client.py"))
        .args(["--base-url", &stack.gateway_url()])
        .args(["--key", key])
        .args(["--model", model])
        .args(["--mode", mode]);
    if !request_id.is_empty() {
        c.args(["--request-id", request_id]);
    }
    c
}

async fn sdk_json(cmd: Command) -> Value {
    let out = run(cmd).await;
    assert_eq!(
        out.code, 0,
        "SDK script failed: {}\n{}",
        out.stdout, out.stderr
    );
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

/// Polls `weirctl logs list --request-id` until the log shows up.
async fn logged(stack: &Stack, request_id: &str, limit: Duration) -> Option<Value> {
    eventually(limit, || async {
        let out =
            run(stack.weirctl(&["logs", "list", "--request-id", request_id, "-o", "json"])).await;
        assert_eq!(out.code, 0, "weirctl logs list failed: {}", out.stderr);
        let v: Value = serde_json::from_str(&out.stdout).ok()?;
        v["logs"].as_array()?.first().cloned()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_request_is_answered_and_logged_with_a_redacted_payload() {
    let stack = Stack::start().await;
    let key = stack.seed(&[("gpt-mock", "mock-model")]).await;

    let answer = sdk_json(sdk(&stack, &key, "gpt-mock", "plain", "e2e-plain-1")).await;
    assert_eq!(
        answer["content"], "Hello from the mock upstream",
        "{answer}"
    );
    assert_eq!(answer["request_id_header"], "e2e-plain-1");
    let upstream_saw = stack
        .upstream
        .observed
        .last()
        .expect("upstream got the request");
    assert!(
        upstream_saw.headers.get("authorization").is_none(),
        "the gateway key must not be forwarded upstream"
    );

    // Within 2 s of the answer, weirctl shows the log with its facts.
    let started = Instant::now();
    let row = logged(&stack, "e2e-plain-1", Duration::from_secs(2))
        .await
        .expect("the request log reached Postgres within 2 s");
    assert!(started.elapsed() <= Duration::from_secs(2));
    assert_eq!(row["model_key"], "gpt-mock");
    assert_eq!(row["status_code"], 200);
    assert_eq!(row["outcome"], "success");
    assert_eq!(row["operation"], "chat_completions");
    assert!(row["duration_ms"].is_u64());
    // The mock charges a token per word: "Say hello to the gateway please" and its 5-word answer.
    assert_eq!(row["input_tokens"], 6, "{row}");
    assert_eq!(row["output_tokens"], 5);
    assert_eq!(row["total_tokens"], 11);
    assert_eq!(row["pricing_status"], "unpriced");

    // The table form shows it too.
    let table = run(stack.weirctl(&["logs", "list"])).await;
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(table.stdout.contains("e2e-plain-1"), "{}", table.stdout);

    let shown = run(stack.weirctl(&["logs", "show", "e2e-plain-1", "-o", "json"])).await;
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    assert!(
        !shown.stdout.contains(&key),
        "the key leaked into the log detail"
    );
    let detail: Value = serde_json::from_str(&shown.stdout).unwrap();
    let request: Value = serde_json::from_str(detail["request_payload"].as_str().unwrap()).unwrap();
    assert_eq!(
        request["headers"]["authorization"], "[REDACTED]",
        "{request}"
    );
    assert_eq!(request["body"]["model"], "gpt-mock");
    let response: Value =
        serde_json::from_str(detail["response_payload"].as_str().unwrap()).unwrap();
    assert_eq!(
        response["body"]["choices"][0]["message"]["content"],
        "Hello from the mock upstream"
    );
    assert_eq!(detail["attempts"][0]["status_code"], 200);
    assert_eq!(detail["attempts"][0]["produced_response"], true);
    let policy: Value = serde_json::from_str(detail["policy"].as_str().unwrap()).unwrap();
    assert_eq!(policy["capture_mode"], "redacted_payloads");
    assert_eq!(policy["stream"], false);
    assert_eq!(policy["request_max_bytes"], 65536);
    assert_eq!(policy["stream_max_events"], 128);
    assert!(
        policy["policy_version"]
            .as_str()
            .is_some_and(|v| !v.is_empty()),
        "{policy}"
    );
    assert_eq!(policy.as_object().unwrap().len(), 7, "{policy}");

    // The table form of the detail carries the payloads, and still no key.
    let shown = run(stack.weirctl(&["logs", "show", "e2e-plain-1"])).await;
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    assert!(shown.stdout.contains("[REDACTED]"));
    assert!(!shown.stdout.contains(&key));

    // A second request with the same request id is a second log.
    sdk_json(sdk(&stack, &key, "gpt-mock", "plain", "e2e-plain-1")).await;
    let two = eventually(Duration::from_secs(5), || async {
        let out =
            run(stack.weirctl(&["logs", "list", "--request-id", "e2e-plain-1", "-o", "json"]))
                .await;
        let v: Value = serde_json::from_str(&out.stdout).ok()?;
        (v["logs"].as_array()?.len() == 2).then_some(())
    })
    .await;
    assert!(
        two.is_some(),
        "two requests with one request id are two logs"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_arrive_chunk_by_chunk_and_log_usage() {
    let stack = Stack::start().await;
    let key = stack
        .seed(&[("slow", "mock-slow"), ("fast", "mock-model")])
        .await;

    // Raw HTTP, to time the chunks: the first arrives long before the upstream finishes.
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut resp = client
        .post(format!("{}/chat/completions", stack.gateway_url()))
        .bearer_auth(&key)
        .header("x-request-id", "e2e-stream-1")
        .json(&serde_json::json!({
            "model": "slow", "stream": true,
            "messages": [{"role": "user", "content": "stream to me"}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = Vec::new();
    let mut first_chunk_at = None;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        first_chunk_at.get_or_insert_with(Instant::now);
        body.extend_from_slice(&chunk);
    }
    let first_chunk_at = first_chunk_at.expect("got chunks");
    let upstream_end = stack
        .upstream
        .observed
        .last_stream_end_at
        .lock()
        .unwrap()
        .expect("upstream finished its stream");
    assert!(
        first_chunk_at + Duration::from_millis(1000) < upstream_end,
        "first chunk at {:?}, upstream finished at {:?}: the stream was buffered",
        first_chunk_at - started,
        upstream_end - started
    );
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("\"content\":\" upstream\""), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    // The client did not ask for usage, so the usage chunk the gateway asked for is hidden.
    assert!(
        !text.contains("\"choices\":[]"),
        "usage chunk leaked: {text}"
    );
    let sent_upstream = stack.upstream.observed.last().unwrap();
    assert_eq!(sent_upstream.body["stream_options"]["include_usage"], true);

    let row = logged(&stack, "e2e-stream-1", Duration::from_secs(5))
        .await
        .expect("stream logged");
    assert_eq!(row["stream"], true);
    assert_eq!(row["outcome"], "success");
    assert_eq!(row["input_tokens"], 3, "{row}");
    assert_eq!(row["output_tokens"], 5);

    // The OpenAI SDK streaming, asking for usage itself: it gets the usage chunk.
    let v = sdk_json(sdk(&stack, &key, "fast", "stream-usage", "e2e-stream-2")).await;
    assert_eq!(v["content"], "Hello from the mock upstream", "{v}");
    assert_eq!(v["usage"]["total_tokens"], 11, "{v}");
    let v = sdk_json(sdk(&stack, &key, "fast", "stream", "e2e-stream-3")).await;
    assert_eq!(v["content"], "Hello from the mock upstream", "{v}");
    assert!(v["usage"].is_null(), "{v}");
    let row = logged(&stack, "e2e-stream-3", Duration::from_secs(5))
        .await
        .expect("stream logged");
    assert_eq!(row["total_tokens"], 11, "{row}");
    let shown = run(stack.weirctl(&["logs", "show", "e2e-stream-3", "-o", "json"])).await;
    let detail: Value = serde_json::from_str(&shown.stdout).unwrap();
    let response: Value =
        serde_json::from_str(detail["response_payload"].as_str().unwrap()).unwrap();
    assert_eq!(response["stream"], true);
    assert_eq!(response["usage"]["total_tokens"], 11, "{response}");
    assert!(
        response["events"].as_array().unwrap().len() >= 7,
        "{response}"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_unknown_and_revoked_keys_get_401_and_never_reach_upstream() {
    let stack = Stack::start().await;
    let key = stack.seed(&[("gpt-mock", "mock-model")]).await;
    let client = reqwest::Client::new();
    let url = format!("{}/chat/completions", stack.gateway_url());
    let body =
        serde_json::json!({"model": "gpt-mock", "messages": [{"role": "user", "content": "hi"}]});
    let before = stack.upstream.observed.count();

    let cases: [(Option<String>, &str); 3] = [
        (None, "missing_api_key"),
        (
            Some("weir_sk_0000000000000000000000000000000000000000".into()),
            "invalid_api_key",
        ),
        (Some("not-even-a-weir-key".into()), "invalid_api_key"),
    ];
    for (auth, code) in cases {
        let mut req = client.post(&url).json(&body);
        if let Some(k) = &auth {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{auth:?}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(v["error"]["message"].as_str().unwrap().len() > 10);
    }
    assert_eq!(
        stack.upstream.observed.count(),
        before,
        "a rejected request reached the upstream"
    );

    // The SDK sees the same 401.
    let v = sdk_json(sdk(&stack, "weir_sk_wrong", "gpt-mock", "plain", "")).await;
    assert_eq!(v["status"], 401, "{v}");

    // A good key works; revoking it with weirctl takes effect on the running data plane.
    let ok = client
        .post(&url)
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let keys = run(stack.weirctl(&["keys", "list", "-o", "json"])).await;
    let keys: Value = serde_json::from_str(&keys.stdout).unwrap();
    let prefix = keys[0]["display_prefix"].as_str().unwrap().to_string();
    assert!(key.starts_with(&prefix));
    let revoke = run(stack.weirctl(&["keys", "revoke", &prefix])).await;
    assert_eq!(revoke.code, 0, "{}", revoke.stderr);
    let revoked_at = Instant::now();
    let rejected = eventually(Duration::from_secs(5), || async {
        let r = client
            .post(&url)
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .ok()?;
        (r.status() == 401).then_some(())
    })
    .await;
    assert!(rejected.is_some(), "the revoked key still works after 5 s");
    eprintln!("revocation enforced after {:?}", revoked_at.elapsed());
    let after = stack.upstream.observed.count();
    let revoked = client
        .post(&url)
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 401);
    assert_eq!(stack.upstream.observed.count(), after);

    let all = run(stack.weirctl(&["keys", "list", "--all", "-o", "json"])).await;
    let all: Value = serde_json::from_str(&all.stdout).unwrap();
    assert!(all[0]["revoked_at"].as_str().is_some_and(|s| !s.is_empty()));
    let active = run(stack.weirctl(&["keys", "list", "-o", "json"])).await;
    assert_eq!(
        serde_json::from_str::<Value>(&active.stdout).unwrap(),
        Value::Array(vec![])
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_openai_errors_and_are_logged() {
    let stack = Stack::start().await;
    let key = stack
        .seed(&[("gpt-mock", "mock-model"), ("down", "mock-503")])
        .await;
    let client = reqwest::Client::new();
    let url = format!("{}/chat/completions", stack.gateway_url());
    let send = |body: &'static str, rid: &'static str| {
        client
            .post(&url)
            .bearer_auth(&key)
            .header("x-request-id", rid)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let cases: [(&str, &str, u16, &str); 5] = [
        ("{not json", "bad-json", 400, "invalid_json"),
        (
            "{\"messages\":[]}",
            "no-model",
            400,
            "missing_required_parameter",
        ),
        (
            "{\"model\":\"nope\",\"messages\":[]}",
            "no-route",
            404,
            "model_not_found",
        ),
        (
            "{\"model\":\"gpt-mock\",\"stream\":\"yes\"}",
            "bad-stream",
            400,
            "invalid_type",
        ),
        (
            "{\"model\":\"down\",\"messages\":[]}",
            "upstream-503",
            503,
            "",
        ),
    ];
    for (body, rid, status, code) in cases {
        let resp = send(body, rid).await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{rid}");
        assert_eq!(resp.headers()["x-request-id"], rid);
        let v: Value = resp.json().await.unwrap();
        if !code.is_empty() {
            assert_eq!(v["error"]["code"], code, "{rid}: {v}");
        } else {
            // Upstream errors pass through as the upstream sent them.
            assert_eq!(v["error"]["message"], "mock: overloaded", "{v}");
        }
        let row = logged(&stack, rid, Duration::from_secs(5))
            .await
            .expect("logged");
        assert_eq!(row["status_code"], status as u64, "{rid}: {row}");
        let want = if status == 503 {
            "upstream_error"
        } else {
            "invalid_request"
        };
        assert_eq!(row["outcome"], want, "{rid}");
    }
    // A malformed caller request id is refused, naming the header.
    let resp = client
        .post(&url)
        .bearer_auth(&key)
        .header("x-request-id", "has spaces in it")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("x-request-id"),
        "{v}"
    );
    // Bodies over the limit get 413; unknown URLs 404; health and readiness answer.
    let big = "x".repeat(9 * 1024 * 1024);
    let resp = client
        .post(&url)
        .bearer_auth(&key)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    // The refused body was never read, so that connection is done: use fresh ones from here.
    let client = reqwest::Client::new();
    let resp = client
        .get(format!("{}/nope", stack.gateway_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let base = format!("http://{}", stack.data_plane.addr);
    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["ready"], true);
    // /v1/models lists what the key may use.
    let v = sdk_json(sdk(&stack, &key, "gpt-mock", "models", "")).await;
    assert_eq!(v["models"], serde_json::json!(["down", "gpt-mock"]));
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_waits_for_config() {
    // A data plane whose control plane does not exist is alive but not ready.
    let mut s = weir_data_plane::Settings::new("http://127.0.0.1:1", "token");
    s.listen = ([127, 0, 0, 1], 0).into();
    let dp = weir_data_plane::DataPlane::start(s).await.unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://{}", dp.addr);
    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    let resp = client
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth("weir_sk_x")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "config_not_loaded");
    dp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_may_speak_http2_without_tls() {
    let stack = Stack::start().await;
    let key = stack.seed(&[("gpt-mock", "mock-model")]).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for stream in [false, true] {
        let resp = h2
            .post(format!("{}/chat/completions", stack.gateway_url()))
            .bearer_auth(&key)
            .json(&serde_json::json!({"model": "gpt-mock", "stream": stream, "messages": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        assert!(
            text.contains("Hello") || text.contains("\"content\":\"Hello\""),
            "{text}"
        );
    }
    stack.shutdown().await;
}
