//! The admin API as HTTP JSON (driven with reqwest), its OpenAPI document, gateway-key feedback,
//! and the leaderboard and harness-usage rules over records sent through the real ingest stream.

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;
use weir_e2e::{eventually, record, repo_root, Stack};
use weir_proto::logs::Harness;

/// A small JSON client for the stack's admin HTTP API.
struct Http {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Http {
    fn new(stack: &Stack) -> Http {
        Http {
            base: format!("http://{}", stack.control_plane.http_addr),
            token: stack.admin_token.clone(),
            client: reqwest::Client::new(),
        }
    }

    fn with_token(&self, token: &str) -> Http {
        Http {
            base: self.base.clone(),
            token: token.into(),
            client: self.client.clone(),
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .client
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if !self.token.is_empty() {
            req = req.bearer_auth(&self.token);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("admin HTTP answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, body).await;
        assert_eq!(status, 200, "{method} {path}: {v}");
        v
    }
}

fn request_ids(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> = list["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["request_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_over_http_json_has_the_grpc_semantics() {
    let stack = Stack::start().await;
    let alice_key = stack.seed(&[("gpt", "up"), ("other", "up")]).await;
    let http = Http::new(&stack);

    // The served document is the checked-in one.
    let served = reqwest::get(format!("{}/api/v1/admin/openapi.json", http.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let checked_in = std::fs::read_to_string(repo_root().join("docs/openapi.json")).unwrap();
    assert!(
        served == checked_in,
        "served OpenAPI differs from docs/openapi.json"
    );

    // Probes need no token.
    for (path, want) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let r = reqwest::get(format!("{}{path}", http.base)).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.text().await.unwrap().trim(), want);
    }

    // Errors are JSON with the gRPC code's name and the right HTTP status.
    let (s, v) = http
        .with_token("")
        .call("GET", "/api/v1/admin/users", None)
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    let (s, v) = http.call("GET", "/api/v1/admin/nothing-here", None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")));
    let (s, v) = http.call("DELETE", "/api/v1/admin/users", None).await;
    assert_eq!(s, 405, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("GET, POST"),
        "{v}"
    );
    let (s, v) = http
        .call(
            "POST",
            "/api/v1/admin/users",
            Some(json!({"name": "bob", "colour": 1})),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_argument")),
        "{v}"
    );

    // Identities.
    let bob = http
        .ok(
            "POST",
            "/api/v1/admin/users",
            Some(json!({"name": "bob", "email": "b@x.io"})),
        )
        .await;
    assert_eq!(bob["name"], "bob");
    assert_eq!(bob["request_logging_enabled"], true);
    let (s, v) = http
        .call("POST", "/api/v1/admin/users", Some(json!({"name": "bob"})))
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("already_exists")),
        "{v}"
    );
    http.ok("POST", "/api/v1/admin/teams", Some(json!({"name": "core"})))
        .await;
    let team = http
        .ok("PUT", "/api/v1/admin/teams/core/members/bob", None)
        .await;
    assert_eq!(team["members"], json!(["bob"]));
    let team_id = team["id"].as_str().unwrap().to_string();
    let users = http.ok("GET", "/api/v1/admin/users", None).await;
    assert_eq!(users["users"].as_array().unwrap().len(), 2);
    let created = http
        .ok(
            "POST",
            "/api/v1/admin/keys",
            Some(json!({"name": "bob-key", "owner_user": "bob"})),
        )
        .await;
    let bob_key = created["secret"].as_str().unwrap().to_string();
    stack.wait_for_key(&bob_key).await;

    // Traffic: alice tagged, bob plain.
    let client = reqwest::Client::new();
    let status = client
        .post(format!("{}/chat/completions", stack.gateway_url()))
        .bearer_auth(&alice_key)
        .header("x-request-id", "h-1")
        .header("x-weir-tags", "ticket=t-9")
        .header("x-weir-service", "billing")
        .header("x-weir-component", "checkout")
        .header("x-weir-env", "prod")
        .json(&json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    assert_eq!(stack.chat(&alice_key, "other", "h-2").await, 200);
    assert_eq!(stack.chat(&bob_key, "gpt", "bob-1").await, 200);
    let all = eventually(Duration::from_secs(10), || async {
        let v = http
            .ok("GET", "/api/v1/admin/observability/request-logs", None)
            .await;
        (v["logs"].as_array().unwrap().len() == 3).then_some(v)
    })
    .await
    .expect("three request logs");
    let bob_id = bob["id"].as_str().unwrap();

    // Filters, as query parameters.
    let harness = all["logs"][0]["harness"].as_str().unwrap().to_string();
    let filters: Vec<(String, Vec<&str>)> = vec![
        ("tag_key=ticket&tag_value=t-9".into(), vec!["h-1"]),
        ("service=billing".into(), vec!["h-1"]),
        ("component=checkout&env=prod".into(), vec!["h-1"]),
        ("env=staging".into(), vec![]),
        (format!("team_id={team_id}"), vec!["bob-1"]),
        ("tag_key=ticket".into(), vec!["h-1"]),
        ("model_key=other".into(), vec!["h-2"]),
        (format!("user_id={bob_id}"), vec!["bob-1"]),
        ("request_id=h-2".into(), vec!["h-2"]),
        (
            "status_code=200&provider_key=mock".into(),
            vec!["bob-1", "h-1", "h-2"],
        ),
        ("status_code=404".into(), vec![]),
        (
            "operation=chat_completions&model_key=gpt".into(),
            vec!["bob-1", "h-1"],
        ),
        (format!("harness={harness}&model_key=other"), vec!["h-2"]),
        (
            "since=2000-01-01T00:00:00Z&until=2001-01-01T00:00:00Z".into(),
            vec![],
        ),
    ];
    for (q, want) in &filters {
        let v = http
            .ok(
                "GET",
                &format!("/api/v1/admin/observability/request-logs?{q}"),
                None,
            )
            .await;
        assert_eq!(request_ids(&v), *want, "{q}");
    }
    // Cursor pagination.
    let p1 = http
        .ok(
            "GET",
            "/api/v1/admin/observability/request-logs?limit=2",
            None,
        )
        .await;
    assert_eq!(p1["logs"].as_array().unwrap().len(), 2);
    let cursor = p1["next_cursor"].as_str().unwrap();
    assert!(!cursor.is_empty());
    let p2 = http
        .ok(
            "GET",
            &format!("/api/v1/admin/observability/request-logs?limit=2&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(p2["logs"].as_array().unwrap().len(), 1);
    assert_eq!(p2["next_cursor"], "");
    let (s, v) = http
        .call(
            "GET",
            "/api/v1/admin/observability/request-logs?status_code=abc",
            None,
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("status_code"),
        "{v}"
    );

    // Detail, and a strict 404.
    let d = http
        .ok("GET", "/api/v1/admin/observability/request-logs/h-1", None)
        .await;
    assert_eq!(
        d["tags"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["key"] == "ticket")
            .count(),
        1
    );
    assert_eq!(d["attempts"].as_array().unwrap().len(), 1);
    let (s, v) = http
        .call(
            "GET",
            &format!(
                "/api/v1/admin/observability/request-logs/{}",
                Uuid::now_v7()
            ),
            None,
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{v}"
    );

    // A team viewer sees only its team's logs, by list and by id.
    let viewer = http
        .ok(
            "POST",
            "/api/v1/admin/admin-tokens",
            Some(json!({"name": "v", "role": "team_viewer", "team": "core"})),
        )
        .await["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let as_viewer = http.with_token(&viewer);
    let v = as_viewer
        .ok("GET", "/api/v1/admin/observability/request-logs", None)
        .await;
    assert_eq!(request_ids(&v), ["bob-1"]);
    let (s, _) = as_viewer
        .call("GET", "/api/v1/admin/observability/request-logs/h-1", None)
        .await;
    assert_eq!(s, 404, "another team's log is not found, not forbidden");
    let (s, v) = as_viewer.call("GET", "/api/v1/admin/keys", None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (403, Some("permission_denied"))
    );

    // Feedback: by an admin, and by a gateway key of the log's owner only.
    let f = http
        .ok(
            "POST",
            "/api/v1/admin/observability/request-logs/h-1/feedback",
            Some(json!({"scores": {"helpful": 1}, "labels": ["good"]})),
        )
        .await;
    assert_eq!(f["labels"], json!(["good"]));
    let as_bob = http.with_token(&bob_key);
    let (s, v) = as_bob
        .call(
            "POST",
            "/api/v1/feedback/h-1",
            Some(json!({"labels": ["stolen"]})),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{v}"
    );
    let (s, _) = as_bob
        .call(
            "POST",
            "/api/v1/admin/observability/request-logs/bob-1/feedback",
            Some(json!({"labels": ["x"]})),
        )
        .await;
    assert_eq!(s, 200, "the admin route also takes the owner's key");
    let f = as_bob
        .ok(
            "POST",
            "/api/v1/feedback/bob-1",
            Some(json!({"labels": ["mine"], "comment": "fine"})),
        )
        .await;
    assert_eq!(
        f["labels"],
        json!(["mine", "x"]),
        "repeated feedback merges"
    );
    let (s, _) = as_bob.call("GET", "/api/v1/admin/users", None).await;
    assert_eq!(s, 401, "a gateway key is no admin token");
    let v = http
        .ok(
            "GET",
            "/api/v1/admin/observability/request-logs?feedback_label=mine",
            None,
        )
        .await;
    assert_eq!(request_ids(&v), ["bob-1"]);
    let d = http
        .ok(
            "GET",
            "/api/v1/admin/observability/request-logs/bob-1",
            None,
        )
        .await;
    assert_eq!(d["feedback"]["comment"], "fine");

    // Spend over HTTP.
    let spend = http
        .ok(
            "GET",
            "/api/v1/admin/observability/spend?group_by=model",
            None,
        )
        .await;
    assert_eq!(spend["total"]["requests"], 3);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaderboard_and_harness_usage_follow_their_ranking_rules() {
    use weir_proto::admin::*;
    let stack = Stack::start().await;
    stack
        .seed(&[("m-a", "up"), ("m-b", "up"), ("m-c", "up")])
        .await;
    let mut admin = stack.admin().await;
    // $1 per million input tokens on m-a and m-b: cost in picodollars = tokens * 1e6. m-c has no
    // price (its requests count, at zero spend).
    for m in ["m-a", "m-b"] {
        admin
            .set_price(SetPriceRequest {
                model_key: m.into(),
                input_per_mtok: "1".into(),
                cached_input_per_mtok: String::new(),
                output_per_mtok: "0".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let mut ids = std::collections::HashMap::new();
    let mut names: Vec<String> = ["zed", "amy", "bea", "cat", "dan", "eve"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    names.extend((0..26).map(|i| format!("filler-{i:02}")));
    for n in &names {
        let u = admin
            .create_user(CreateUserRequest {
                name: n.clone(),
                email: String::new(),
                request_logging_enabled: None,
            })
            .await
            .unwrap()
            .into_inner();
        ids.insert(n.clone(), Uuid::parse_str(&u.id).unwrap());
    }
    let team = admin
        .create_team(CreateTeamRequest { name: "t".into() })
        .await
        .unwrap()
        .into_inner();
    // Prices apply from the moment they are set.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let now = chrono::Utc::now();
    let id = |n: &str| ids[n];
    let mut recs = vec![
        record(now, id("zed"), "m-a", 5000),
        // zed three days ago (before the price: unpriced, but counted) and ten days ago (outside 7d).
        record(now - chrono::Duration::days(3), id("zed"), "m-a", 1),
        record(now - chrono::Duration::days(10), id("zed"), "m-a", 1),
        // amy and bea tie on spend and requests: name decides. cat has the same spend with fewer
        // requests.
        record(now, id("amy"), "m-a", 1000),
        record(now, id("amy"), "m-c", 777),
        record(now, id("bea"), "m-a", 1000),
        record(now, id("bea"), "m-c", 777),
        record(now, id("cat"), "m-a", 1000),
        // dan: most requests on m-b, most spend on m-a: m-b dominates.
        record(now, id("dan"), "m-b", 10),
        record(now, id("dan"), "m-b", 10),
        record(now, id("dan"), "m-a", 3000),
    ];
    for r in recs
        .iter_mut()
        .filter(|r| r.caller.as_ref().unwrap().user_id == id("dan").to_string())
    {
        r.caller.as_mut().unwrap().team_id = team.id.clone();
    }
    // eve: tools recorded on some requests only; a recorded zero is a zero.
    for (exposed, invoked) in [(Some(4), Some(0)), (Some(2), None), (None, None)] {
        let mut r = record(now, id("eve"), "m-a", 100);
        r.exposed_tool_count = exposed;
        r.invoked_tool_count = invoked;
        recs.push(r);
    }
    for i in 0..26 {
        recs.push(record(
            now,
            id(&format!("filler-{i:02}")),
            "m-a",
            26 - i as u64,
        ));
    }
    // Harnesses: seven, so the chart's top-5 cut shows.
    let harness_counts = [
        ("claude_code", "Claude Code", 10),
        ("codex_cli", "Codex CLI", 9),
        ("aider", "Aider", 4),
        ("cline", "Cline", 3),
        ("curl", "curl", 2),
        ("goose", "Goose", 1),
    ];
    for (i, r) in recs.iter_mut().enumerate() {
        // Spread over harnesses by index; the remainder stays unclassified.
        let mut acc = 0;
        for (key, label, n) in harness_counts {
            if i < acc + n {
                r.harness = Some(Harness {
                    key: key.into(),
                    label: label.into(),
                    ..Default::default()
                });
                break;
            }
            acc += n;
        }
    }
    let total = recs.len();
    let half = recs.split_off(total / 2);
    stack.ingest(vec![recs.clone(), half.clone()]).await;
    // Resent batches (a node that missed the acks) count once.
    stack.ingest(vec![recs, half]).await;

    let http = Http::new(&stack);
    let check = |lb: &Value, when: &str| {
        let rows = lb["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 30, "{when}: the table is the top 30 of 32");
        let order: Vec<&str> = rows
            .iter()
            .map(|r| r["user_name"].as_str().unwrap())
            .collect();
        assert_eq!(
            &order[..6],
            ["zed", "dan", "amy", "bea", "cat", "eve"],
            "{when}"
        );
        assert_eq!(order[6], "filler-00", "{when}");
        assert!(
            !order.contains(&"filler-25") && !order.contains(&"filler-24"),
            "{when}"
        );
        assert_eq!(rows[0]["rank"], 1);
        assert_eq!(
            rows[0]["requests"], 2,
            "{when}: zed's 10-day-old request is outside 7d"
        );
        assert_eq!(rows[0]["cost_pusd"], 5_000_000_000i64, "{when}");
        assert_eq!(rows[0]["cost_usd"], "0.005", "{when}");
        assert_eq!(rows[1]["dominant_model"], "m-b", "{when}");
        assert_eq!(rows[2]["requests"], 2);
        assert_eq!(rows[4]["requests"], 1);
        let eve = &rows[5];
        assert_eq!(eve["avg_exposed_tools"], 3.0, "{when}: nulls ignored");
        assert_eq!(
            eve["avg_invoked_tools"], 0.0,
            "{when}: a recorded zero stays"
        );
        assert!(
            rows[0].get("avg_exposed_tools").is_none(),
            "{when}: never recorded"
        );
        let buckets = lb["bucket_starts"].as_array().unwrap();
        assert_eq!(buckets.len(), 14);
        let chart = lb["chart"].as_array().unwrap();
        assert_eq!(chart.len(), 5, "{when}: top 5 charted");
        assert_eq!(chart[0]["name"], "zed");
        let reqs: Vec<u64> = chart[0]["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(reqs.len(), 14, "{when}: zero-filled");
        assert_eq!(reqs[13], 1, "{when}: the current bucket");
        assert_eq!(reqs.iter().sum::<u64>(), 2, "{when}");
        assert_eq!(reqs.iter().filter(|r| **r == 0).count(), 12, "{when}");
        let costs: i64 = chart[0]["cost_pusd"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .sum();
        assert_eq!(
            costs, 5_000_000_000,
            "{when}: the series sums to the table's total"
        );
    };
    // Before the fold (pending totals) and after it: the same answer.
    let before = http
        .ok(
            "GET",
            "/api/v1/admin/observability/leaderboard?range=7d",
            None,
        )
        .await;
    check(&before, "pending");
    weir_control_plane::usage_rollup::fold(&stack.control_plane.pool)
        .await
        .unwrap();
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM usage_rollup_pending")
        .fetch_one(&stack.control_plane.pool)
        .await
        .unwrap();
    assert_eq!(pending, 0, "folded");
    let after = http
        .ok("GET", "/api/v1/admin/observability/leaderboard", None)
        .await;
    check(&after, "folded");

    let month = http
        .ok(
            "GET",
            "/api/v1/admin/observability/leaderboard?range=31d",
            None,
        )
        .await;
    assert_eq!(month["bucket_starts"].as_array().unwrap().len(), 62);
    assert_eq!(
        month["rows"][0]["requests"], 3,
        "31d includes the 10-day-old request"
    );
    let (s, v) = http
        .call(
            "GET",
            "/api/v1/admin/observability/leaderboard?range=30d",
            None,
        )
        .await;
    assert_eq!(s, 400);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("7d or 31d"));

    // Harness usage: by requests, ties by spend; top 5 charted.
    let h = http
        .ok(
            "GET",
            "/api/v1/admin/observability/harness-usage?range=7d",
            None,
        )
        .await;
    let order: Vec<&str> = h["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["harness"].as_str().unwrap())
        .collect();
    // Records 0-9 are claude_code (zed's 5000 tokens among them, and his 10-day-old request),
    // 10-18 codex_cli: 9 requests each in range, and claude_code's spend breaks the tie. The
    // unclassified rest (40 - 29) outnumbers both.
    assert_eq!(
        order,
        [
            "unknown",
            "claude_code",
            "codex_cli",
            "aider",
            "cline",
            "curl",
            "goose"
        ]
    );
    let rows = h["rows"].as_array().unwrap();
    assert_eq!(rows[0]["requests"], 11);
    assert_eq!(
        rows[1]["requests"], 9,
        "one of claude_code's is older than 7 days"
    );
    assert_eq!(rows[2]["requests"], 9);
    assert_eq!(rows[1]["label"], "Claude Code");
    let chart = h["chart"].as_array().unwrap();
    assert_eq!(chart.len(), 5);
    assert_eq!(chart[0]["requests"].as_array().unwrap().len(), 14);

    // A team viewer's leaderboard holds its team's requests only.
    let viewer = admin
        .create_admin_token(CreateAdminTokenRequest {
            name: "tv".into(),
            role: "team_viewer".into(),
            team: "t".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    let lb = http
        .with_token(&viewer)
        .ok("GET", "/api/v1/admin/observability/leaderboard", None)
        .await;
    let names: Vec<&str> = lb["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["user_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dan"]);

    // weirctl: the same answers, as JSON and as tables.
    let out = weir_e2e::run(stack.weirctl(&["leaderboard", "-o", "json"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["rows"][0]["user_name"], "zed");
    assert_eq!(v["rows"].as_array().unwrap().len(), 30);
    let out = weir_e2e::run(stack.weirctl(&["harnesses", "--chart"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("Claude Code") && out.stdout.contains("BUCKET (UTC)"),
        "{}",
        out.stdout
    );
    let out = weir_e2e::run(stack.weirctl(&["leaderboard", "--range", "30d"])).await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("7d or 31d"), "{}", out.stderr);
    stack.shutdown().await;
}
