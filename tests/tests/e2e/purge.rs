//! Retention: dry runs count and delete nothing, purges take whole logs (never a part) and never
//! the ledger, bad policies stop the control plane at start, and racing replicas purge once.

use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use uuid::Uuid;
use weir_e2e::{bin, record, run, Stack};
use weir_proto::logs::Tag;

async fn count(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// Child rows whose request log is gone.
async fn orphans(pool: &sqlx::PgPool) -> i64 {
    let mut n = 0;
    for t in [
        "request_log_payloads",
        "request_log_tags",
        "request_log_attempts",
    ] {
        n += count(
            pool,
            &format!(
                "SELECT count(*) FROM {t} c WHERE NOT EXISTS (
                     SELECT 1 FROM request_logs l WHERE l.log_id = c.log_id AND l.created_at = c.created_at)"
            ),
        )
        .await;
    }
    n
}

fn json(out: &weir_e2e::Output) -> Value {
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_count_purges_take_whole_logs_and_spare_the_ledger() {
    let stack = Stack::start().await;
    let now = Utc::now();
    let user = Uuid::new_v4();
    // Ten days old (a whole day's partition goes), 25 hours old (older than 1d: the cutoff's
    // day is trimmed or an older day dropped, depending on the hour) and 30 minutes old (kept).
    let ages = [
        (chrono::Duration::days(10), 5),
        (chrono::Duration::hours(25), 3),
        (chrono::Duration::minutes(30), 4),
    ];
    let mut recs = Vec::new();
    for (age, n) in ages {
        for i in 0..n {
            let mut r = record(now - age, user, "m", 10);
            r.tags = vec![
                Tag {
                    key: "ticket".into(),
                    value: format!("t-{i}"),
                },
                Tag {
                    key: "service".into(),
                    value: "billing".into(),
                },
            ];
            r.request_payload =
                br#"{"body":{"messages":[{"role":"user","content":"hi"}]}}"#.to_vec();
            r.response_payload = br#"{"body":{"choices":[]}}"#.to_vec();
            recs.push(r);
        }
    }
    stack.ingest(vec![recs]).await;
    let pool = stack.control_plane.pool.clone();
    assert_eq!(count(&pool, "SELECT count(*) FROM request_logs").await, 12);
    let ledger = count(&pool, "SELECT count(*) FROM usage_cost_events").await;
    assert_eq!(ledger, 12);
    let tags_before = count(&pool, "SELECT count(*) FROM request_log_tags").await;

    // Dry runs: right counts, nothing deleted.
    let dry =
        json(&run(stack.weirctl(&["purge", "--dry-run", "--retention", "1d", "-o", "json"])).await);
    let dry = &dry[0];
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["request_logs"], 8);
    assert_eq!(dry["payloads"], 8);
    assert_eq!(dry["tags"], 16);
    assert_eq!(dry["attempts"], 8);
    assert_eq!(dry["retention"], "1d");
    let week = json(&run(stack.weirctl(&["purge", "--dry-run", "-o", "json"])).await);
    assert_eq!(week[0]["request_logs"], 5, "the configured retention is 7d");
    assert_eq!(count(&pool, "SELECT count(*) FROM request_logs").await, 12);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM request_log_tags").await,
        tags_before
    );

    // The purge: whole logs with their children; the ledger stays.
    let ran = json(&run(stack.weirctl(&["purge", "run", "--retention", "1d", "-o", "json"])).await);
    let ran = &ran[0];
    assert_eq!(ran["dry_run"], false);
    assert_eq!(ran["request_logs"], 8, "{ran}");
    assert_eq!(ran["tags"], 16);
    assert_eq!(ran["payloads"], 8);
    assert_eq!(ran["attempts"], 8);
    assert!(ran["partitions_dropped"].as_u64().unwrap() >= 1, "{ran}");
    assert_eq!(ran["error"], "");
    assert_eq!(count(&pool, "SELECT count(*) FROM request_logs").await, 4);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM request_log_tags").await,
        8
    );
    assert_eq!(orphans(&pool).await, 0, "no child row outlives its log");
    assert_eq!(
        count(&pool, "SELECT count(*) FROM usage_cost_events").await,
        ledger,
        "the spend ledger is never purged"
    );
    let ten_days_ago = weir_control_plane::partitions::partition_name(
        "request_logs",
        (now - chrono::Duration::days(10)).date_naive(),
    );
    assert_eq!(
        count(
            &pool,
            &format!("SELECT count(*) FROM pg_class WHERE relname = '{ten_days_ago}'")
        )
        .await,
        0,
        "the old day's partition is dropped, not emptied"
    );
    // Spend is still reported in full after the purge.
    let out = run(stack.weirctl(&["spend", "--by", "model", "-o", "json"])).await;
    assert_eq!(json(&out)["total"]["requests"], 12);

    // Ingest keeps working, also for a late record of a purged day (its partition comes back).
    stack
        .ingest(vec![vec![record(
            now - chrono::Duration::days(10),
            user,
            "m",
            1,
        )]])
        .await;
    assert_eq!(count(&pool, "SELECT count(*) FROM request_logs").await, 5);
    // The day counts a purge reads followed the drop, the trim and the late record.
    let again =
        json(&run(stack.weirctl(&["purge", "--dry-run", "--retention", "1d", "-o", "json"])).await);
    assert_eq!(again[0]["request_logs"], 1, "only the late record: {again}");
    assert_eq!(again[0]["attempts"], 1);

    // History, newest first; the same over HTTP.
    let history = json(&run(stack.weirctl(&["purge", "history", "-o", "json"])).await);
    let runs = history.as_array().unwrap();
    assert_eq!(runs.len(), 4);
    assert_eq!(runs[0]["dry_run"], true);
    assert_eq!(runs[1]["dry_run"], false);
    assert_eq!(runs[1]["trigger"], "manual");
    assert_eq!(runs[1]["replica"], "test-cp");
    assert!(!runs[1]["finished_at"].as_str().unwrap().is_empty());
    assert_eq!(runs[3]["dry_run"], true);
    let http: Value = reqwest::Client::new()
        .get(format!(
            "http://{}/api/v1/admin/purge/runs",
            stack.control_plane.http_addr
        ))
        .bearer_auth(&stack.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(http["runs"].as_array().unwrap().len(), 4);
    let bad = run(stack.weirctl(&["purge", "--dry-run", "--retention", "2d"])).await;
    assert_eq!(bad.code, 7, "{}", bad.stderr);
    assert!(bad.stderr.contains("1d, 3d or 7d"), "{}", bad.stderr);
    let bad = run(stack.weirctl(&["purge"])).await;
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_racing_on_the_schedule_purge_once_a_day() {
    let stack = Stack::start_with(|s| {
        s.purge.retention = "1d".parse().unwrap();
    })
    .await;
    let url = stack.database_url().await;
    let other = weir_control_plane::ControlPlane::start(weir_control_plane::Settings {
        database_url: Some(url),
        data_dir: std::env::temp_dir(),
        grpc_listen: ([127, 0, 0, 1], 0).into(),
        http_listen: ([127, 0, 0, 1], 0).into(),
        purge: stack.control_plane.purger.policy.clone(),
        reconcile: Default::default(),
        admin_token: None,
        dataplane_token: stack.dataplane_token.clone(),
        replica_id: "test-cp-2".into(),
        group_tokens: Default::default(),
        tls: None,
        secrets_key: None,
    })
    .await
    .unwrap();
    let now = Utc::now();
    stack
        .ingest(vec![(0..6)
            .map(|_| record(now - chrono::Duration::days(3), Uuid::new_v4(), "m", 1))
            .collect()])
        .await;
    // Both replicas fire at the same minute, several times (a bad schedule, or skewed clocks).
    let (a, b) = (stack.control_plane.purger.clone(), other.purger.clone());
    let mut tasks = Vec::new();
    for _ in 0..3 {
        for p in [a.clone(), b.clone()] {
            tasks.push(tokio::spawn(
                async move { p.run_scheduled().await.unwrap() },
            ));
        }
    }
    let mut ran = Vec::new();
    for t in tasks {
        if let Some(id) = t.await.unwrap() {
            ran.push(id);
        }
    }
    assert_eq!(ran.len(), 1, "one scheduled purge per UTC day: {ran:?}");
    let pool = stack.control_plane.pool.clone();
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM purge_runs WHERE trigger = 'schedule'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM purge_runs WHERE scheduled_day = (now() AT TIME ZONE 'UTC')::date"
        )
        .await,
        1
    );
    assert_eq!(count(&pool, "SELECT request_logs FROM purge_runs").await, 6);
    assert_eq!(count(&pool, "SELECT count(*) FROM request_logs").await, 0);
    other.shutdown().await;
    stack.shutdown().await;
}

#[tokio::test]
async fn bad_purge_policies_stop_the_control_plane_at_start() {
    let cases = [
        ("WEIR_PURGE_RETENTION", "30d", "1d, 3d or 7d"),
        ("WEIR_PURGE_SCHEDULE", "*/5 * * * *", "more than once a day"),
        (
            "WEIR_PURGE_SCHEDULE",
            "0 3,15 * * *",
            "more than once a day",
        ),
        ("WEIR_PURGE_SCHEDULE", "0 3 * *", "5-field"),
    ];
    for (name, value, want) in cases {
        let mut cmd = std::process::Command::new(bin("weir-control-plane"));
        cmd.env("WEIR_DATAPLANE_TOKEN", "t")
            .env("WEIR_PURGE_ENABLED", "true")
            .env(name, value)
            .env("WEIR_DATA_DIR", "/nonexistent/weir-never-used");
        let out = tokio::time::timeout(Duration::from_secs(30), run(cmd))
            .await
            .expect("refused quickly");
        assert_ne!(out.code, 0, "{name}={value} started");
        assert!(
            out.stderr.contains(want) && out.stderr.contains(name),
            "{name}={value}: {}",
            out.stderr
        );
    }
}
