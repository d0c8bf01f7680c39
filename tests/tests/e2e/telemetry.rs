//! OpenTelemetry: requests through a node with span export on arrive at a real OTLP (gRPC)
//! receiver as GenAI-convention traces, joined to the caller's trace, and a collector that is
//! down costs spans, never requests.

use std::process::Command;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};
use serde_json::{json, Value};
use weir_data_plane::otlp_export::{ExportSettings, Protocol};
use weir_e2e::otlp_receiver::{attr, OtlpReceiver};
use weir_e2e::{eventually, python, repo_root, run, ModelSpec, Stack};

fn export_to(endpoint: String) -> ExportSettings {
    let endpoint_for_metrics = endpoint.clone();
    ExportSettings {
        endpoint,
        protocol: Protocol::Grpc,
        headers: vec![(
            HeaderName::from_static("authorization"),
            HeaderValue::from_static("Bearer otlp-token"),
        )],
        sample_ratio: 1.0,
        service_name: "weir-test".into(),
        timeout: Duration::from_secs(5),
        metrics_endpoint: endpoint_for_metrics,
        metrics_interval: Duration::from_millis(500),
    }
}

/// The official OpenAI SDK against `base`; `extra` are more CLI flags (e.g. `--traceparent`).
async fn sdk(base: &str, key: &str, model: &str, mode: &str, rid: &str, extra: &[&str]) -> Value {
    let mut c = Command::new(python());
    c.arg(repo_root().join("tests/clients/openai_client.py"))
        .args([
            "--base-url",
            base,
            "--key",
            key,
            "--model",
            model,
            "--mode",
            mode,
        ])
        .args(["--request-id", rid])
        .args(extra);
    let out = run(c).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    serde_json::from_str(out.stdout.trim()).unwrap()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn metric(addr: std::net::SocketAddr, line: &str) -> u64 {
    let body = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix(line).map(|v| v.trim().parse().unwrap()))
        .unwrap_or_else(|| panic!("no {line} in {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_become_genai_traces_joined_to_the_callers_trace() {
    let stack = Stack::start().await;
    let receiver = OtlpReceiver::start().await;
    let key = stack
        .seed_models(&[
            ModelSpec::new("gpt", &[("mock", "up")]),
            ModelSpec::new("broken", &[("mock", "mock-503")]),
        ])
        .await;
    // Weight 0 on the good target: it is only ever the fallback.
    let out = run(stack.weirctl(&[
        "models",
        "create",
        "--key",
        "flaky",
        "--target",
        "mock:mock-503:1",
        "--target",
        "mock:up:0",
    ]))
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let url = receiver.url();
    let node = Stack::start_data_plane_with(
        &stack.control_plane,
        &stack.dataplane_token,
        "traced",
        move |s| s.otel = Some(export_to(url)),
    )
    .await;
    let cfg = node.config.clone();
    eventually(Duration::from_secs(10), || {
        let cfg = cfg.clone();
        async move {
            cfg.current
                .load()
                .routes
                .contains_key("flaky")
                .then_some(())
        }
    })
    .await
    .expect("the node has every route");
    let base = format!("http://{}/v1", node.addr);
    let hex_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_trace = "0af7651916cd43dd8448eb211c80319c";
    let caller_span = "b7ad6b7169203331";
    let traceparent = format!("00-{caller_trace}-{caller_span}-01");

    let plain = sdk(&base, &key, "gpt", "plain", hex_id, &[]).await;
    assert!(plain["content"].is_string(), "{plain}");
    sdk(
        &base,
        &key,
        "gpt",
        "stream",
        "tel-stream",
        &["--traceparent", &traceparent],
    )
    .await;
    sdk(&base, &key, "flaky", "plain", "tel-fallback", &[]).await;
    let failed = sdk(&base, &key, "broken", "plain", "tel-error", &[]).await;
    assert_eq!(failed["status"], 503, "{failed}");
    let emb = sdk(&base, &key, "gpt", "embeddings", "tel-embed", &[]).await;
    assert_eq!(emb["count"], 2, "{emb}");
    let resp = sdk(&base, &key, "gpt", "responses", "tel-responses", &[]).await;
    assert!(resp["text"].is_string(), "{resp}");

    // A budget refusal: a user with a $0 budget, retried until the node has the limit.
    for args in [
        vec!["users", "create", "--name", "broke"],
        vec![
            "limits",
            "set",
            "--user",
            "broke",
            "--budget-usd",
            "0",
            "--period",
            "day",
        ],
    ] {
        let out = run(stack.weirctl(&args)).await;
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let out = run(stack.weirctl(&[
        "keys",
        "create",
        "--user",
        "broke",
        "--name",
        "b",
        "--secret-only",
    ]))
    .await;
    let broke = out.stdout.trim().to_string();
    let client = reqwest::Client::new();
    let mut refused_id = None;
    for i in 0..100 {
        let rid = format!("tel-budget-{i}");
        let r = client
            .post(format!("{base}/chat/completions"))
            .bearer_auth(&broke)
            .header("x-request-id", &rid)
            .header("x-claude-code-session-id", "tel-sess-1")
            .json(&json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            refused_id = Some(rid);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused_id = refused_id.expect("the $0 budget reached the node");

    let received = receiver.received.clone();
    let spans = eventually(Duration::from_secs(15), || {
        let received = received.clone();
        async move {
            let spans = received.spans();
            let servers = spans.iter().filter(|(_, s)| s.kind == 2).count();
            (servers >= 7).then_some(spans)
        }
    })
    .await
    .expect("every server span reached the receiver");

    assert!(received
        .authorizations
        .lock()
        .unwrap()
        .iter()
        .all(|a| a == "Bearer otlp-token"));
    for (resource, _) in &spans {
        assert_eq!(attr(resource, "service.name"), Some(json!("weir-test")));
        assert_eq!(attr(resource, "service.instance.id"), Some(json!("traced")));
    }
    let server = |rid: &str| {
        spans
            .iter()
            .map(|(_, s)| s)
            .find(|s| s.kind == 2 && attr(&s.attributes, "weir.request_id") == Some(json!(rid)))
            .unwrap_or_else(|| panic!("no server span for {rid}"))
            .clone()
    };
    let children = |parent: &opentelemetry_proto::tonic::trace::v1::Span| {
        let mut c: Vec<_> = spans
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.parent_span_id == parent.span_id && s.trace_id == parent.trace_id)
            .cloned()
            .collect();
        c.sort_by_key(|s| s.start_time_unix_nano);
        c
    };

    // A caller's 32-hex x-request-id names the trace; one client span in GenAI conventions.
    let s = server(hex_id);
    assert_eq!(hex(&s.trace_id), hex_id);
    assert!(s.parent_span_id.is_empty());
    assert_eq!(s.name, "POST /v1/chat/completions");
    assert_eq!(
        attr(&s.attributes, "weir.trace_origin"),
        Some(json!("x-request-id"))
    );
    assert_eq!(
        attr(&s.attributes, "gen_ai.operation.name"),
        Some(json!("chat"))
    );
    assert!(attr(&s.attributes, "user.id").is_some());
    // A request in an agent session carries the session where LLM back ends group by it.
    let in_session = server(&refused_id);
    assert_eq!(
        attr(&in_session.attributes, "session.id"),
        Some(json!("tel-sess-1"))
    );
    assert_eq!(
        attr(&in_session.attributes, "weir.session.source"),
        Some(json!("x-claude-code-session-id"))
    );
    assert!(attr(&in_session.attributes, "user.id").is_some());
    let kids = children(&s);
    assert_eq!(kids.len(), 1);
    let c = &kids[0];
    assert_eq!(c.kind, 3, "client");
    assert_eq!(c.name, "chat up");
    for (k, want) in [
        ("gen_ai.provider.name", json!("openai")),
        ("gen_ai.request.model", json!("up")),
        ("server.address", json!("127.0.0.1")),
        ("server.port", json!(stack.upstream.addr.port())),
    ] {
        assert_eq!(attr(&c.attributes, k), Some(want), "{k}");
    }
    for k in [
        "gen_ai.response.id",
        "gen_ai.response.model",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.response.finish_reasons",
    ] {
        assert!(
            attr(&c.attributes, k).is_some(),
            "{k} missing: {:?}",
            c.attributes
        );
    }
    // The upstream was called as a child of that client span.
    let sent = stack
        .upstream
        .observed
        .requests
        .lock()
        .unwrap()
        .iter()
        .find(|r| r.headers.get("x-request-id").is_some_and(|v| v == hex_id))
        .cloned()
        .expect("upstream saw the request");
    assert_eq!(
        sent.headers.get("traceparent").unwrap(),
        &format!("00-{hex_id}-{}-01", hex(&c.span_id))
    );

    // A caller's traceparent: same trace, the caller's span is the parent.
    let s = server("tel-stream");
    assert_eq!(hex(&s.trace_id), caller_trace);
    assert_eq!(hex(&s.parent_span_id), caller_span);
    assert_eq!(attr(&s.attributes, "weir.stream"), Some(json!(true)));
    assert_eq!(children(&s).len(), 1);

    // A fallback: two client spans in order, the first failed with the upstream's status.
    let s = server("tel-fallback");
    let kids = children(&s);
    assert_eq!(kids.len(), 2);
    assert_eq!(attr(&kids[0].attributes, "error.type"), Some(json!("503")));
    assert_eq!(kids[0].status.as_ref().unwrap().code, 2);
    assert_eq!(
        attr(&kids[1].attributes, "weir.attempt.produced_response"),
        Some(json!(true))
    );
    assert!(s.events.iter().any(|e| e.name == "weir.fallback"));

    // An upstream error: the server span says so.
    let s = server("tel-error");
    assert_eq!(
        attr(&s.attributes, "http.response.status_code"),
        Some(json!(503))
    );
    assert_eq!(s.status.as_ref().unwrap().code, 2);
    assert!(attr(&s.attributes, "error.type").is_some());

    // The Responses API is a chat operation on its own route.
    let s = server("tel-responses");
    assert_eq!(s.name, "POST /v1/responses");
    assert_eq!(
        attr(&s.attributes, "weir.operation"),
        Some(json!("responses"))
    );
    let kids = children(&s);
    assert_eq!(kids.len(), 1);
    assert!(attr(&kids[0].attributes, "gen_ai.response.id").is_some());

    // A budget refusal: no client span, the decision as an event, the error on the span.
    let s = server(&refused_id);
    assert!(children(&s).is_empty());
    assert_eq!(
        attr(&s.attributes, "error.type"),
        Some(json!("budget_error"))
    );
    assert_eq!(
        attr(&s.attributes, "http.response.status_code"),
        Some(json!(429))
    );
    assert!(s.events.iter().any(|e| e.name == "weir.limits.refused"));

    // Embeddings are their own GenAI operation.
    let s = server("tel-embed");
    assert_eq!(
        attr(&s.attributes, "gen_ai.operation.name"),
        Some(json!("embeddings"))
    );
    assert_eq!(children(&s)[0].name, "embeddings up");

    assert!(metric(node.addr, "weir_spans_exported_total").await >= spans.len() as u64);

    // Metrics: the GenAI histograms and Weir's counters, cumulative, with bounded attributes.
    let received = receiver.received.clone();
    let metrics = eventually(Duration::from_secs(10), || {
        let received = received.clone();
        async move {
            let m = received.metrics.lock().unwrap().clone()?;
            let requests = m.resource_metrics[0].scope_metrics[0]
                .metrics
                .iter()
                .find(|x| x.name == "weir.requests")
                .and_then(|x| match &x.data {
                    Some(Data::Sum(s)) => Some(
                        s.data_points
                            .iter()
                            .map(|p| match p.value {
                                Some(number_data_point::Value::AsInt(v)) => v,
                                _ => 0,
                            })
                            .sum::<i64>(),
                    ),
                    _ => None,
                })?;
            (requests >= 7).then_some(m)
        }
    })
    .await
    .expect("metrics with every request");
    let all = &metrics.resource_metrics[0].scope_metrics[0].metrics;
    let names: Vec<&str> = all.iter().map(|m| m.name.as_str()).collect();
    for want in [
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
        "weir.time_to_first_chunk",
        "weir.requests",
        "weir.tokens",
        "weir.usage_records",
        "weir.request_logs",
        "weir.config.version",
        "weir.config.nacks",
        "weir.config.stream_connected",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let usage = all
        .iter()
        .find(|m| m.name == "gen_ai.client.token.usage")
        .unwrap();
    let Some(Data::Histogram(h)) = &usage.data else {
        panic!("histogram")
    };
    assert!(h
        .data_points
        .iter()
        .all(|p| p.count > 0 && !p.bucket_counts.is_empty()));
    let text = format!("{metrics:?}");
    for leaked in [hex_id, "tel-stream", key.as_str()] {
        assert!(
            !text.contains(leaked),
            "{leaked} must not be a metric attribute"
        );
    }
    node.shutdown().await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_costs_spans_not_requests() {
    let stack = Stack::start().await;
    let key = stack.seed(&[("gpt", "up")]).await;
    // A port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let node = Stack::start_data_plane_with(
        &stack.control_plane,
        &stack.dataplane_token,
        "dead-collector",
        move |s| s.otel = Some(export_to(url)),
    )
    .await;
    let client = reqwest::Client::new();
    for i in 0..20 {
        let r = client
            .post(format!("http://{}/v1/chat/completions", node.addr))
            .bearer_auth(&key)
            .json(&json!({"model": "gpt", "messages": [{"role": "user", "content": format!("hi {i}")}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let addr = node.addr;
    let failed = eventually(Duration::from_secs(15), || async move {
        let n = metric(addr, "weir_spans_dropped_total{reason=\"export_failed\"}").await;
        (n >= 40).then_some(n)
    })
    .await;
    assert!(failed.is_some(), "the failed export is counted");
    assert_eq!(metric(node.addr, "weir_spans_exported_total").await, 0);
    node.shutdown().await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_also_go_over_otlp_http_with_protobuf_bodies() {
    let stack = Stack::start().await;
    let receiver = OtlpReceiver::start_http().await;
    let key = stack.seed(&[("gpt", "up")]).await;
    let mut settings = export_to(format!("{}/v1/traces", receiver.url()));
    settings.protocol = Protocol::HttpProtobuf;
    settings.metrics_endpoint = format!("{}/v1/metrics", receiver.url());
    let node = Stack::start_data_plane_with(
        &stack.control_plane,
        &stack.dataplane_token,
        "http-traced",
        move |s| s.otel = Some(settings),
    )
    .await;
    let base = format!("http://{}/v1", node.addr);
    sdk(&base, &key, "gpt", "plain", "tel-http", &[]).await;
    let received = receiver.received.clone();
    let spans = eventually(Duration::from_secs(15), || {
        let received = received.clone();
        async move {
            let spans = received.spans();
            (spans.len() >= 2).then_some(spans)
        }
    })
    .await
    .expect("spans arrived over HTTP");
    let server = spans
        .iter()
        .find(|(_, s)| s.kind == 2)
        .expect("server span");
    assert_eq!(
        attr(&server.1.attributes, "weir.request_id"),
        Some(json!("tel-http"))
    );
    assert!(spans
        .iter()
        .any(|(_, s)| s.kind == 3 && s.parent_span_id == server.1.span_id));
    assert_eq!(
        received
            .authorizations
            .lock()
            .unwrap()
            .first()
            .map(String::as_str),
        Some("Bearer otlp-token")
    );
    node.shutdown().await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_added_with_weirctl_reaches_running_nodes_and_leaves_with_its_removal() {
    let stack = Stack::start().await;
    let receiver = OtlpReceiver::start().await;
    let key = stack.seed(&[("gpt", "up")]).await;
    let (stack_ref, key_ref) = (&stack, &key);
    let ask = |rid: String| async move {
        assert_eq!(stack_ref.chat(key_ref, "gpt", &rid).await, 200);
    };
    ask("before-sink".into()).await;

    let out = run(stack.weirctl(&[
        "sinks",
        "create",
        "--name",
        "local",
        "--endpoint",
        &receiver.url(),
        "--metrics",
    ]))
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let received = receiver.received.clone();
    let mut n = 0;
    let arrived = eventually(Duration::from_secs(15), || {
        n += 1;
        let received = received.clone();
        async move {
            ask(format!("with-sink-{n}")).await;
            received
                .spans()
                .iter()
                .any(|(_, s)| s.kind == 2)
                .then_some(())
        }
    })
    .await;
    assert!(
        arrived.is_some(),
        "the running node exports to the new sink"
    );
    assert!(
        !received
            .spans()
            .iter()
            .any(|(_, s)| attr(&s.attributes, "weir.request_id") == Some(json!("before-sink"))),
        "nothing was exported before the sink existed"
    );
    let listed = run(stack.weirctl(&["sinks", "list", "-o", "json"])).await;
    let v: Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(v[0]["name"], "local");
    assert_eq!(v[0]["protocol"], "grpc");

    // A preset with an endpoint of its own, or without its secrets, is refused by name.
    let preset = run(stack.weirctl(&[
        "sinks",
        "create",
        "--name",
        "lf",
        "--kind",
        "langfuse",
        "--endpoint",
        "https://cloud.langfuse.com",
    ]))
    .await;
    assert_eq!(preset.code, 7, "{}", preset.stderr);
    assert!(
        preset.stderr.contains("derives its endpoint"),
        "{}",
        preset.stderr
    );
    let preset =
        run(stack.weirctl(&["sinks", "create", "--name", "lf", "--kind", "langfuse"])).await;
    assert_eq!(preset.code, 7, "{}", preset.stderr);
    assert!(
        preset.stderr.contains("needs the secret public_key"),
        "{}",
        preset.stderr
    );

    let out = run(stack.weirctl(&["sinks", "delete", "--name", "local"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let cfg = stack.data_plane.config.clone();
    eventually(Duration::from_secs(10), || {
        let cfg = cfg.clone();
        async move { cfg.current.load().sinks.is_empty().then_some(()) }
    })
    .await
    .expect("the node dropped the sink");
    // Let anything already queued before the removal flush, then nothing more arrives.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = received.spans().len();
    for i in 0..5 {
        ask(format!("after-sink-{i}")).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        received.spans().len(),
        before,
        "a removed sink gets nothing"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_capture_is_per_sink_and_comes_from_the_redacted_payload() {
    let stack = Stack::start().await;
    let with = OtlpReceiver::start().await;
    let without = OtlpReceiver::start().await;
    let legacy = OtlpReceiver::start().await;
    let key = stack.seed(&[("gpt", "up")]).await;
    let legacy_url = legacy.url();
    for args in [
        vec![
            "sinks",
            "create",
            "--name",
            "legacy",
            "--endpoint",
            &legacy_url,
            "--capture-content",
            "--legacy-attributes",
            "--new-root",
        ],
        vec![
            "sinks",
            "create",
            "--name",
            "with",
            "--endpoint",
            &with.url(),
            "--capture-content",
        ],
        vec![
            "sinks",
            "create",
            "--name",
            "without",
            "--endpoint",
            &without.url(),
        ],
        vec!["policy", "set", "--redact", "body.messages.*.content"],
    ] {
        let out = run(stack.weirctl(&args)).await;
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let client = reqwest::Client::new();
    let gateway = stack.gateway_url();
    let received = with.received.clone();
    let mut n = 0;
    // Until both sinks and the redaction path are on the node.
    let span = eventually(Duration::from_secs(15), || {
        n += 1;
        let (client, gateway, key, received) = (
            client.clone(),
            gateway.clone(),
            key.clone(),
            received.clone(),
        );
        async move {
            let rid = format!("content-{n}");
            let r = client
                .post(format!("{gateway}/chat/completions"))
                .bearer_auth(key)
                .header("x-request-id", &rid)
                .header(
                    "traceparent",
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                )
                .json(&json!({"model": "gpt", "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "the secret plan is 42"}]}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            tokio::time::sleep(Duration::from_millis(1200)).await;
            received.spans().into_iter().map(|(_, s)| s).find(|s| {
                s.kind == 3
                    && attr(&s.attributes, "gen_ai.input.messages")
                        .is_some_and(|v| v.as_str().unwrap().contains("REDACTED"))
            })
        }
    })
    .await
    .expect("a client span with redacted content");
    let input = attr(&span.attributes, "gen_ai.input.messages").unwrap();
    let input: Value = serde_json::from_str(input.as_str().unwrap()).unwrap();
    assert_eq!(input[0]["role"], "user");
    let text = input.to_string();
    assert!(!text.contains("secret plan"), "{text}");
    let output = attr(&span.attributes, "gen_ai.output.messages").unwrap();
    assert!(
        output.as_str().unwrap().contains("mock upstream"),
        "{output}"
    );
    assert!(attr(&span.attributes, "gen_ai.system_instructions").is_some());
    // The legacy sink: indexed attributes, and a new root linked to the caller's span.
    let spans = legacy.received.spans();
    let client_span = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.kind == 3 && attr(&s.attributes, "gen_ai.prompt.0.role").is_some())
        .expect("indexed attributes");
    assert_eq!(
        attr(&client_span.attributes, "gen_ai.prompt.0.role"),
        Some(json!("system"))
    );
    assert_eq!(
        attr(&client_span.attributes, "gen_ai.completion.0.role"),
        Some(json!("assistant"))
    );
    let root = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.kind == 2 && s.span_id == client_span.parent_span_id)
        .expect("its server span");
    assert!(root.parent_span_id.is_empty(), "a new root");
    assert_eq!(hex(&root.links[0].span_id), "b7ad6b7169203331");
    // The content sink kept the caller as parent.
    let with_spans = with.received.spans();
    let with_root = with_spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.kind == 2 && s.span_id == span.parent_span_id)
        .expect("server span");
    assert_eq!(hex(&with_root.parent_span_id), "b7ad6b7169203331");

    // The other sink got the same traces without any content.
    let plain = without.received.spans();
    assert!(!plain.is_empty());
    for (_, s) in &plain {
        for k in [
            "gen_ai.input.messages",
            "gen_ai.output.messages",
            "gen_ai.system_instructions",
        ] {
            assert!(
                attr(&s.attributes, k).is_none(),
                "{k} leaked to a sink without content"
            );
        }
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_preset_sends_its_back_ends_transport_path_headers_and_shape() {
    // The node reads preset secrets from its environment (this process, in-process nodes).
    for (k, v) in [
        ("WEIR_E2E_LF_PK", "pk-lf-1"),
        ("WEIR_E2E_LF_SK", "sk-lf-2"),
        ("WEIR_E2E_PX_KEY", "px-key"),
        ("WEIR_E2E_DD_KEY", "dd-key"),
        ("WEIR_E2E_LS_KEY", "ls-key"),
        ("WEIR_E2E_OL_KEY", "ol-key"),
    ] {
        // SAFETY: set once, before any node reads them; names unique to this test.
        unsafe { std::env::set_var(k, v) };
    }
    let stack = Stack::start().await;
    let receiver = OtlpReceiver::start_http().await;
    let key = stack.seed(&[("gpt", "up")]).await;
    let base = receiver.url();
    let presets: Vec<Vec<String>> = vec![
        vec![
            "langfuse",
            "--option",
            &format!("base_url={base}/lf"),
            "--secret-from-env",
            "public_key=WEIR_E2E_LF_PK",
            "--secret-from-env",
            "secret_key=WEIR_E2E_LF_SK",
            "--capture-content",
            "--legacy-attributes",
        ],
        vec![
            "phoenix",
            "--option",
            &format!("base_url={base}/px"),
            "--option",
            "project=weir-e2e",
            "--secret-from-env",
            "api_key=WEIR_E2E_PX_KEY",
        ],
        vec![
            "datadog",
            "--option",
            &format!("base_url={base}/dd"),
            "--option",
            "ml_app=gateway",
            "--secret-from-env",
            "api_key=WEIR_E2E_DD_KEY",
            "--capture-content",
        ],
        vec![
            "langsmith",
            "--option",
            &format!("base_url={base}/ls"),
            "--option",
            "project=prod",
            "--secret-from-env",
            "api_key=WEIR_E2E_LS_KEY",
        ],
        vec![
            "openlayer",
            "--option",
            &format!("base_url={base}/ol"),
            "--option",
            "pipeline_id=pl-1",
            "--secret-from-env",
            "api_key=WEIR_E2E_OL_KEY",
        ],
    ]
    .into_iter()
    .map(|v| v.into_iter().map(String::from).collect())
    .collect();
    for p in &presets {
        let mut args = vec![
            "sinks",
            "create",
            "--name",
            p[0].as_str(),
            "--kind",
            p[0].as_str(),
        ];
        args.extend(p[1..].iter().map(String::as_str));
        let out = run(stack.weirctl(&args)).await;
        assert_eq!(out.code, 0, "{}: {}", p[0], out.stderr);
    }
    let cfg = stack.data_plane.config.clone();
    eventually(Duration::from_secs(10), || {
        let cfg = cfg.clone();
        async move { (cfg.current.load().sinks.len() == 5).then_some(()) }
    })
    .await
    .expect("the node took all five presets");
    let r = reqwest::Client::new()
        .post(format!("{}/chat/completions", stack.gateway_url()))
        .bearer_auth(&key)
        .header("x-request-id", "preset-1")
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .json(&json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let received = receiver.received.clone();
    eventually(Duration::from_secs(15), || {
        let received = received.clone();
        async move { (received.http_requests.lock().unwrap().len() >= 5).then_some(()) }
    })
    .await
    .expect("every preset exported");

    let requests = received.http_requests.lock().unwrap().clone();
    let headers_at = |path: &str| {
        requests
            .iter()
            .find(|(p, _)| p == path)
            .unwrap_or_else(|| {
                panic!(
                    "nothing POSTed to {path}: {:?}",
                    requests.iter().map(|r| &r.0).collect::<Vec<_>>()
                )
            })
            .1
            .clone()
    };
    let h = headers_at("/lf/api/public/otel/v1/traces");
    assert_eq!(
        h["authorization"], "Basic cGstbGYtMTpzay1sZi0y",
        "base64(pk-lf-1:sk-lf-2)"
    );
    assert_eq!(h["x-langfuse-ingestion-version"], "4");
    assert_eq!(h["content-type"], "application/x-protobuf");
    let h = headers_at("/px/v1/traces");
    assert_eq!(h["authorization"], "Bearer px-key");
    let h = headers_at("/dd/v1/traces");
    assert_eq!(h["dd-api-key"], "dd-key");
    assert_eq!(h["dd-otlp-source"], "llmobs");
    assert_eq!(h["dd-ml-app"], "gateway");
    let h = headers_at("/ls/v1/traces");
    assert_eq!(h["x-api-key"], "ls-key");
    assert_eq!(h["langsmith-project"], "prod");
    let h = headers_at("/ol/v1/traces");
    assert_eq!(h["authorization"], "Bearer ol-key");
    assert_eq!(h["x-bt-parent"], "pipeline_id:pl-1");

    // Shapes: Phoenix's project as a resource attribute; LangSmith's server span a new root
    // linked to the caller; Langfuse with indexed content, Datadog with the message arrays.
    let batches = received.batches.lock().unwrap().clone();
    assert!(batches
        .iter()
        .any(|rs| rs
            .resource
            .as_ref()
            .is_some_and(
                |r| attr(&r.attributes, "openinference.project.name") == Some(json!("weir-e2e"))
            )));
    let servers: Vec<_> = batches
        .iter()
        .flat_map(|rs| rs.scope_spans.iter().flat_map(|ss| ss.spans.iter()))
        .filter(|s| s.kind == 2)
        .collect();
    assert_eq!(servers.len(), 5, "one server span per sink");
    assert_eq!(
        servers
            .iter()
            .filter(|s| s.parent_span_id.is_empty())
            .count(),
        1,
        "only LangSmith's is a new root"
    );
    assert!(servers
        .iter()
        .any(|s| s.parent_span_id.is_empty() && s.links.len() == 1));
    let clients: Vec<_> = batches
        .iter()
        .flat_map(|rs| rs.scope_spans.iter().flat_map(|ss| ss.spans.iter()))
        .filter(|s| s.kind == 3)
        .collect();
    assert_eq!(
        clients
            .iter()
            .filter(|s| attr(&s.attributes, "gen_ai.prompt.0.content").is_some())
            .count(),
        1
    );
    assert_eq!(
        clients
            .iter()
            .filter(|s| attr(&s.attributes, "gen_ai.input.messages").is_some())
            .count(),
        2
    );
    stack.shutdown().await;
}
