//! Agent sessions from the traffic alone: real header sets of five harnesses (sources in
//! data-plane/src/agent_session.rs) grouped per owner and session id, turn kinds, totals, and
//! the sessions API over HTTP and `weirctl`.

use std::time::Duration;

use serde_json::{json, Value};
use weir_e2e::{eventually, run, Stack};

async fn chat(stack: &Stack, key: &str, model: &str, rid: &str, headers: &[(&str, &str)]) -> u16 {
    let mut req = reqwest::Client::new()
        .post(format!("{}/chat/completions", stack.gateway_url()))
        .bearer_auth(key)
        .header("x-request-id", rid)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap().status().as_u16()
}

async fn get(stack: &Stack, path: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(format!(
            "http://{}/api/v1/admin{path}",
            stack.control_plane.http_addr
        ))
        .bearer_auth(&stack.admin_token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_group_real_harness_traffic_per_owner() {
    let stack = Stack::start().await;
    let alice = stack.seed(&[("gpt", "up"), ("mini", "up")]).await;
    for args in [
        vec!["users", "create", "--name", "bob"],
        vec!["teams", "create", "--name", "bobs"],
        vec!["teams", "add-member", "--team", "bobs", "--user", "bob"],
    ] {
        let out = run(stack.weirctl(&args)).await;
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
    }
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

    let claude = [
        ("user-agent", "claude-cli/1.0.83 (external, cli)"),
        ("x-app", "cli"),
        (
            "x-claude-code-session-id",
            "0b6f7c2e-5a1d-4c3e-9f00-2d8e1a7b6c55",
        ),
    ];
    let codex = [
        (
            "user-agent",
            "codex_cli_rs/0.20.0 (Mac OS 14.5.0; arm64) iTerm.app/3.5.14",
        ),
        ("originator", "codex_cli_rs"),
        ("session_id", "5973b6c0-94b8-487b-a530-2aeb6098ae0e"),
    ];
    let opencode = [
        (
            "user-agent",
            "opencode/0.3.133 ai-sdk/provider-utils/3.0.0 runtime/bun/1.2.19",
        ),
        ("x-opencode-session", "ses_5f2a9c81effeQmZ3"),
    ];
    let goose = [
        ("user-agent", "Goose/1.3.0"),
        ("goose-session-id", "20260809_29"),
    ];
    let copilot = [
        ("user-agent", "GitHubCopilotChat/0.29.1"),
        ("editor-version", "vscode/1.103.0"),
        ("copilot-integration-id", "vscode-chat"),
        (
            "vscode-sessionid",
            "9c6bd3a0-7c6e-4e8b-a7a9-0b1c2d3e4f501754300000000",
        ),
    ];
    let with = |base: &[(&'static str, &'static str)], extra: &[(&'static str, &'static str)]| {
        let mut h = base.to_vec();
        h.extend_from_slice(extra);
        h
    };
    // (key, model, request id, headers, expected status).
    type Sent<'a> = (&'a str, &'a str, &'a str, Vec<(&'a str, &'a str)>, u16);
    let sent: Vec<Sent> = vec![
        (alice.as_str(), "gpt", "cc-1", claude.to_vec(), 200),
        (alice.as_str(), "gpt", "cc-2", claude.to_vec(), 200),
        (alice.as_str(), "mini", "cc-3", claude.to_vec(), 200),
        // The same session id from another owner is another session.
        (bob.as_str(), "gpt", "bob-cc-1", claude.to_vec(), 200),
        (alice.as_str(), "gpt", "codex-1", codex.to_vec(), 200),
        (
            alice.as_str(),
            "gpt",
            "codex-2",
            with(&codex, &[("x-openai-subagent", "compact")]),
            200,
        ),
        (alice.as_str(), "gpt", "oc-1", opencode.to_vec(), 200),
        (alice.as_str(), "gpt", "goose-1", goose.to_vec(), 200),
        // A failed turn still belongs to its session.
        (
            alice.as_str(),
            "no-such-model",
            "goose-2",
            goose.to_vec(),
            404,
        ),
        (
            alice.as_str(),
            "gpt",
            "cp-1",
            with(&copilot, &[("x-initiator", "user")]),
            200,
        ),
        (
            alice.as_str(),
            "gpt",
            "cp-2",
            with(&copilot, &[("x-initiator", "agent")]),
            200,
        ),
        // No session signal: no session.
        (
            alice.as_str(),
            "gpt",
            "plain-1",
            vec![("user-agent", "curl/8.5.0")],
            200,
        ),
        // A malformed explicit session is refused and leaves no session.
        (
            alice.as_str(),
            "gpt",
            "bad-1",
            vec![("x-weir-session", "a b")],
            400,
        ),
    ];
    for (key, model, rid, headers, want) in &sent {
        assert_eq!(chat(&stack, key, model, rid, headers).await, *want, "{rid}");
    }
    // Every request leaves a log; wait for all but the refused one (which never has a session).
    let logged = sent.len() as i64 - 1;
    let pool = stack.control_plane.pool.clone();
    eventually(Duration::from_secs(10), || {
        let pool = pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM request_logs")
                .fetch_one(&pool)
                .await
                .unwrap();
            (n >= logged).then_some(())
        }
    })
    .await
    .expect("request logs written");

    let (status, list) = get(&stack, "/observability/sessions").await;
    assert_eq!(status, 200, "{list}");
    let sessions = list["sessions"].as_array().unwrap();
    let by_sid =
        |sid: &str| -> Vec<&Value> { sessions.iter().filter(|s| s["session_id"] == sid).collect() };
    assert_eq!(sessions.len(), 6, "{list:#}");
    let cc = by_sid("0b6f7c2e-5a1d-4c3e-9f00-2d8e1a7b6c55");
    assert_eq!(cc.len(), 2, "two owners, two sessions");
    let alice_cc = cc
        .iter()
        .find(|s| s["turns"] == 3)
        .expect("alice's three turns");
    assert_eq!(alice_cc["source"], "x-claude-code-session-id");
    assert_eq!(alice_cc["harness"], "claude_code");
    assert_eq!(alice_cc["models"], json!(["gpt", "mini"]));
    assert_eq!(
        cc.iter().filter(|s| s["turns"] == 1).count(),
        1,
        "bob's one turn"
    );
    let goose_s = by_sid("20260809_29")[0];
    assert_eq!(goose_s["turns"], 2);
    assert_eq!(goose_s["errors"], 1);
    assert_eq!(
        by_sid("ses_5f2a9c81effeQmZ3")[0]["source"],
        "x-opencode-session"
    );
    assert_eq!(
        by_sid("5973b6c0-94b8-487b-a530-2aeb6098ae0e")[0]["source"],
        "session_id"
    );
    assert!(sessions.iter().all(|s| s["session_id"] != "a b"));

    // Detail: turn kinds, order, totals.
    let codex_id = by_sid("5973b6c0-94b8-487b-a530-2aeb6098ae0e")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, d) = get(
        &stack,
        &format!("/observability/sessions/{}", urlencode(&codex_id)),
    )
    .await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(
        d["turns_by_kind"],
        json!({"unknown": 1, "subagent:compact": 1})
    );
    let turns: Vec<&str> = d["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(turns, ["codex-1", "codex-2"]);
    let copilot_id = by_sid("9c6bd3a0-7c6e-4e8b-a7a9-0b1c2d3e4f501754300000000")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, d) = get(
        &stack,
        &format!("/observability/sessions/{}", urlencode(&copilot_id)),
    )
    .await;
    assert_eq!(d["turns_by_kind"], json!({"agent": 1, "user": 1}));
    assert_eq!(d["summary"]["turns"], 2);
    let in_tokens: u64 = d["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["input_tokens"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(d["summary"]["input_tokens"].as_u64().unwrap(), in_tokens);
    let (status, v) = get(
        &stack,
        &format!(
            "/observability/sessions/{}",
            urlencode(&format!("{}:nope", uuid::Uuid::new_v4()))
        ),
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, _) = get(&stack, "/observability/sessions/garbage").await;
    assert_eq!(status, 400);

    // Filters and paging.
    let (_, errs) = get(&stack, "/observability/sessions?has_errors=true").await;
    assert_eq!(errs["sessions"].as_array().unwrap().len(), 1);
    let (_, mini) = get(&stack, "/observability/sessions?model_key=mini").await;
    assert_eq!(mini["sessions"].as_array().unwrap().len(), 1);
    let (_, h) = get(&stack, "/observability/sessions?harness=goose").await;
    assert_eq!(h["sessions"].as_array().unwrap().len(), 1, "{h}");
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (_, page) = get(
            &stack,
            &format!("/observability/sessions?limit=4&cursor={cursor}"),
        )
        .await;
        for s in page["sessions"].as_array().unwrap() {
            seen.push(s["id"].as_str().unwrap().to_string());
        }
        cursor = page["next_cursor"].as_str().unwrap().to_string();
        if cursor.is_empty() {
            break;
        }
    }
    let mut all: Vec<String> = sessions
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, all, "paging keeps the order and loses nothing");
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 6);

    // Sorted by cost, paged: the same six.
    let mut by_cost = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = get(
            &stack,
            &format!("/observability/sessions?sort=cost&limit=4&cursor={cursor}"),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        for s in page["sessions"].as_array().unwrap() {
            by_cost.push((
                s["cost_pusd"].as_i64().unwrap(),
                s["id"].as_str().unwrap().to_string(),
            ));
        }
        cursor = page["next_cursor"].as_str().unwrap().to_string();
        if cursor.is_empty() {
            break;
        }
    }
    assert_eq!(by_cost.len(), 6);
    assert!(by_cost.windows(2).all(|w| w[0].0 >= w[1].0), "{by_cost:?}");

    // A team viewer sees its team's sessions only, by list and by id.
    let out = run(stack.weirctl(&[
        "admin-tokens",
        "create",
        "--name",
        "v",
        "--role",
        "team_viewer",
        "--team",
        "bobs",
        "--secret-only",
    ]))
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let viewer = out.stdout.trim().to_string();
    let as_viewer = |path: String| {
        let viewer = viewer.clone();
        let url = format!(
            "http://{}/api/v1/admin{path}",
            stack.control_plane.http_addr
        );
        async move {
            let r = reqwest::Client::new()
                .get(url)
                .bearer_auth(viewer)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (_, v) = as_viewer("/observability/sessions".into()).await;
    let owners: Vec<&Value> = v["sessions"].as_array().unwrap().iter().collect();
    assert_eq!(owners.len(), 1, "{v}");
    assert_eq!(owners[0]["turns"], 1, "bob's session");
    let (status, _) = as_viewer(format!(
        "/observability/sessions/{}",
        urlencode(&copilot_id)
    ))
    .await;
    assert_eq!(status, 404, "alice's session is not the viewer's");

    // weirctl.
    let out = run(stack.weirctl(&["sessions", "list", "-o", "json"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["sessions"].as_array().unwrap().len(), 6);
    let out = run(stack.weirctl(&["sessions", "show", &copilot_id])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("cp-1") && out.stdout.contains("agent 1"),
        "{}",
        out.stdout
    );
    stack.shutdown().await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
