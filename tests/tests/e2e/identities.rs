//! Teams, service accounts and their keys through weirctl, and what their traffic records: a
//! service account's request keeps its summary row even when capture is disabled, attributed to
//! its team and the user it was created for; a user's request then leaves only the ledger.

use std::time::Duration;

use serde_json::{json, Value};
use weir_e2e::{eventually, run, Stack};

async fn json_of(stack: &Stack, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = run(stack.weirctl(&all)).await;
    assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_keys_keep_summaries_and_attribute_to_team_and_user() {
    let stack = Stack::start().await;
    let alice_key = stack.seed(&[("gpt", "up")]).await;

    let team = json_of(&stack, &["teams", "create", "--name", "search"]).await;
    let team_id = team[0]["id"].as_str().unwrap().to_string();
    let team = json_of(
        &stack,
        &["teams", "add-member", "--team", "search", "--user", "alice"],
    )
    .await;
    assert_eq!(team[0]["members"], json!(["alice"]));
    // Alice's key had no team: it is attributed to her new one.
    let keys = json_of(&stack, &["keys", "list"]).await;
    assert_eq!(keys[0]["team_id"], team_id.as_str());

    let sa = json_of(
        &stack,
        &[
            "service-accounts",
            "create",
            "--name",
            "indexer",
            "--team",
            "search",
        ],
    )
    .await;
    let sa_id = sa[0]["id"].as_str().unwrap().to_string();
    let listed = json_of(&stack, &["service-accounts", "list", "--team", "search"]).await;
    assert_eq!(listed[0]["name"], "indexer");
    let out = run(stack.weirctl(&[
        "keys",
        "create",
        "--service-account",
        "search/indexer",
        "--user",
        "alice",
        "--name",
        "svc",
        "--secret-only",
    ]))
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let sa_key = out.stdout.trim().to_string();
    stack.wait_for_key(&sa_key).await;
    let keys = json_of(&stack, &["keys", "list"]).await;
    let svc = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "svc")
        .unwrap()
        .clone();
    assert_eq!(svc["owner_service_account_name"], "search/indexer");
    assert_eq!(
        svc["owner_user_id"], "",
        "owned by the service account, not a user"
    );

    // Capture disabled: users' traffic keeps only the ledger, service accounts' their summary.
    let out = run(stack.weirctl(&["policy", "set", "--capture-mode", "disabled"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let cfg = stack.data_plane.config.clone();
    eventually(Duration::from_secs(10), || {
        let cfg = cfg.clone();
        async move {
            let s = cfg.current.load();
            s.policy
                .as_ref()
                .filter(|p| p.capture_mode == "disabled")
                .map(|_| ())
        }
    })
    .await
    .expect("the node has the disabled policy");
    // And the node has the key's team (its config is refreshed with the key changes).
    for (key, rid) in [(&sa_key, "sa-1"), (&alice_key, "user-1")] {
        assert_eq!(stack.chat(key, "gpt", rid).await, 200, "{rid}");
    }
    let pool = stack.control_plane.pool.clone();
    let ledger = eventually(Duration::from_secs(10), || {
        let pool = pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM usage_cost_events")
                .fetch_one(&pool)
                .await
                .unwrap();
            (n >= 2).then_some(n)
        }
    })
    .await;
    assert_eq!(ledger, Some(2), "both requests are in the spend ledger");
    type Row = (
        String,
        Option<uuid::Uuid>,
        Option<uuid::Uuid>,
        Option<uuid::Uuid>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT request_id, service_account_id, team_id, user_id FROM request_logs ORDER BY request_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        rows.len(),
        1,
        "only the service account's summary row: {rows:?}"
    );
    let (rid, sa, team, user) = &rows[0];
    assert_eq!(rid, "sa-1");
    assert_eq!(sa.unwrap().to_string(), sa_id);
    assert_eq!(team.unwrap().to_string(), team_id);
    assert!(user.is_some(), "attributed to alice");
    let payloads: i64 = sqlx::query_scalar("SELECT count(*) FROM request_log_payloads")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(payloads, 0, "no payloads under disabled capture");

    // Mistakes get precise errors and exit codes.
    for (args, code, says) in [
        (
            vec!["keys", "create", "--name", "x"],
            7,
            "exactly one owner",
        ),
        (
            vec![
                "keys",
                "create",
                "--name",
                "x",
                "--service-account",
                "search/ghost",
            ],
            3,
            "not found",
        ),
        (
            vec![
                "keys",
                "create",
                "--name",
                "x",
                "--service-account",
                "search/indexer",
                "--user",
                "ghost",
            ],
            3,
            "not found",
        ),
        (
            vec![
                "service-accounts",
                "create",
                "--name",
                "bot",
                "--team",
                "nobody",
            ],
            3,
            "not found",
        ),
        (
            vec![
                "service-accounts",
                "create",
                "--name",
                "indexer",
                "--team",
                "search",
            ],
            4,
            "already exists",
        ),
        (
            vec![
                "teams",
                "remove-member",
                "--team",
                "search",
                "--user",
                "bob",
            ],
            3,
            "not found",
        ),
    ] {
        let out = run(stack.weirctl(&args)).await;
        assert_eq!(out.code, code, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
    }
    let team = json_of(
        &stack,
        &[
            "teams",
            "remove-member",
            "--team",
            "search",
            "--user",
            "alice",
        ],
    )
    .await;
    assert_eq!(team[0]["members"], json!([]));
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_viewer_sees_only_its_teams_logs_and_nothing_else() {
    let stack = Stack::start().await;
    let alice_key = stack.seed(&[("gpt", "up")]).await;
    for args in [
        vec!["teams", "create", "--name", "search"],
        vec!["teams", "create", "--name", "ads"],
        vec!["users", "create", "--name", "bob"],
        vec!["teams", "add-member", "--team", "search", "--user", "alice"],
        vec!["teams", "add-member", "--team", "ads", "--user", "bob"],
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
    let bob_key = out.stdout.trim().to_string();
    stack.wait_for_key(&bob_key).await;
    for (key, rid) in [(&alice_key, "al-1"), (&bob_key, "bob-1")] {
        assert_eq!(stack.chat(key, "gpt", rid).await, 200, "{rid}");
    }
    let pool = stack.control_plane.pool.clone();
    let bob_log: uuid::Uuid = eventually(Duration::from_secs(10), || {
        let pool = pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM request_logs")
                .fetch_one(&pool)
                .await
                .unwrap();
            if n < 2 {
                return None;
            }
            sqlx::query_scalar("SELECT log_id FROM request_logs WHERE request_id = 'bob-1'")
                .fetch_optional(&pool)
                .await
                .unwrap()
        }
    })
    .await
    .expect("both logs written");

    let out = run(stack.weirctl(&[
        "admin-tokens",
        "create",
        "--name",
        "search-viewer",
        "--role",
        "team_viewer",
        "--team",
        "search",
        "--secret-only",
    ]))
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let viewer = out.stdout.trim().to_string();
    assert!(viewer.starts_with("weir-admin-"));
    let as_viewer = |args: &[&str]| {
        let mut c = stack.weirctl(args);
        c.env("WEIR_ADMIN_TOKEN", &viewer);
        c
    };
    // By list: only the team's rows.
    let out = run(as_viewer(&["logs", "list", "-o", "json"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let ids: Vec<&str> = v["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["al-1"]);
    // By id or request id: another team's log does not exist for the viewer (strict 404).
    for id in ["bob-1".to_string(), bob_log.to_string()] {
        let out = run(as_viewer(&["logs", "show", &id])).await;
        assert_eq!(out.code, 3, "{id}: {}", out.stderr);
        assert!(!out.stdout.contains("bob"), "{}", out.stdout);
    }
    let out = run(as_viewer(&["logs", "show", "al-1", "-o", "json"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Nothing but logs: admin operations are refused.
    for args in [
        vec!["users", "list"],
        vec!["admin-tokens", "list"],
        vec!["teams", "create", "--name", "x"],
    ] {
        let out = run(as_viewer(&args)).await;
        assert_eq!(out.code, 5, "{args:?}: {}", out.stderr);
    }
    // Revoked: refused at once; the list shows it revoked, never a secret.
    let tokens = json_of(&stack, &["admin-tokens", "list"]).await;
    let id = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "search-viewer")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!tokens.to_string().contains(&viewer));
    let out = run(stack.weirctl(&["admin-tokens", "revoke", &id])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run(as_viewer(&["logs", "list"])).await;
    assert_eq!(out.code, 5, "{}", out.stderr);
    // Bad roles are refused by name.
    for (args, says) in [
        (
            vec![
                "admin-tokens",
                "create",
                "--name",
                "v",
                "--role",
                "team_viewer",
            ],
            "needs a team",
        ),
        (
            vec!["admin-tokens", "create", "--name", "v", "--role", "root"],
            "platform_admin or team_viewer",
        ),
        (
            vec![
                "admin-tokens",
                "create",
                "--name",
                "v",
                "--role",
                "team_viewer",
                "--team",
                "nope",
            ],
            "not found",
        ),
    ] {
        let out = run(stack.weirctl(&args)).await;
        assert_ne!(out.code, 0, "{args:?}");
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
    }
    stack.shutdown().await;
}
