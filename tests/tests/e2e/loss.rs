//! Nothing is lost: under steady load, the control plane dies for 10 s and comes back, then
//! Postgres restarts; afterwards every request served has exactly one request log.

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use weir_control_plane::embedded_pg::{Durability, EmbeddedPostgres};
use weir_e2e::{eventually, free_port, mock_upstream::MockUpstream, random_token, Stack};

async fn control_plane(
    url: &str,
    port: u16,
    admin: &str,
    token: &str,
) -> weir_control_plane::ControlPlane {
    weir_control_plane::ControlPlane::start(weir_control_plane::Settings {
        database_url: Some(url.to_string()),
        data_dir: std::env::temp_dir(),
        grpc_listen: ([127, 0, 0, 1], port).into(),
        http_listen: ([127, 0, 0, 1], 0).into(),
        purge: Default::default(),
        reconcile: Default::default(),
        admin_token: Some(admin.to_string()),
        dataplane_token: token.to_string(),
        replica_id: format!("cp-{port}"),
        group_tokens: Default::default(),
        tls: None,
        secrets_key: None,
    })
    .await
    .expect("control plane starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_outage_and_a_postgres_restart_lose_no_request_log() {
    let dir = tempfile::Builder::new()
        .prefix("weir-loss-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let pg_root = dir.path().join("pg");
    let mut pg = EmbeddedPostgres::start(&pg_root, Durability::Throwaway).unwrap();
    weir_control_plane::database::create_database_if_missing(&pg.url("postgres"), "weir")
        .await
        .unwrap();
    let url = pg.url("weir");
    let (admin, token, port) = (random_token(), random_token(), free_port());
    let upstream = MockUpstream::start(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let cp = control_plane(&url, port, &admin, &token).await;
    let dp = Stack::start_data_plane(&cp, &token, "loss-dp").await;
    let stack = Stack {
        upstream,
        control_plane: cp,
        data_plane: dp,
        admin_token: admin.clone(),
        dataplane_token: token.clone(),
    };
    let key = stack.seed(&[("gpt", "mock-model")]).await;
    let Stack {
        upstream,
        control_plane: cp,
        data_plane: dp,
        ..
    } = stack;

    // Steady load: four clients in a loop, counting what they were served.
    let served = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (served, failed, stop) = (served.clone(), failed.clone(), stop.clone());
        let (url, key) = (
            format!("http://{}/v1/chat/completions", dp.addr),
            key.clone(),
        );
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let r = http
                    .post(&url)
                    .bearer_auth(&key)
                    .header("x-request-id", format!("loss-{c}-{i}"))
                    .json(&json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => served.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The control plane goes away for 10 s: the node keeps serving and keeps the batches.
    cp.shutdown().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let during = served.load(Ordering::Relaxed);
    assert!(
        dp.logs.counters().buffered.load(Ordering::Relaxed) > 0,
        "batches wait for the control plane"
    );
    let cp = control_plane(&url, port, &admin, &token).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Then Postgres restarts under the control plane.
    pg.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    pg = EmbeddedPostgres::start(&pg_root, Durability::Throwaway).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let served = served.load(Ordering::Relaxed);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no request failed during the outages"
    );
    assert!(served > during, "traffic went on after the outage");

    // Everything the node holds reaches Postgres, once.
    let counters = dp.logs.counters().clone();
    let settled = eventually(Duration::from_secs(60), || {
        let c = counters.clone();
        async move {
            let enq = c.enqueued.load(Ordering::Relaxed);
            (c.acked.load(Ordering::Relaxed) >= enq && c.buffered.load(Ordering::Relaxed) == 0)
                .then_some(())
        }
    })
    .await;
    assert!(settled.is_some(), "the node never shipped its backlog");
    assert_eq!(counters.dropped_queue_full.load(Ordering::Relaxed), 0);
    assert_eq!(counters.dropped_buffer_full.load(Ordering::Relaxed), 0);
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM request_logs WHERE request_id LIKE 'loss-%'")
            .fetch_one(&cp.pool)
            .await
            .unwrap();
    assert_eq!(
        rows as u64, served,
        "one request log per served request, no more, no less"
    );
    let ledger: i64 = sqlx::query_scalar("SELECT count(*) FROM usage_cost_events")
        .fetch_one(&cp.pool)
        .await
        .unwrap();
    assert_eq!(ledger as u64, served);
    dp.shutdown().await;
    cp.shutdown().await;
    drop(upstream);
    drop(pg);
}

/// Connections Postgres closed while they sat idle in the control plane's pool are checked when
/// next taken (once idle for a second or more) and replaced, never handed to a query: admin
/// reads and ingest go on without an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_closed_while_idle_are_replaced_not_used() {
    let stack = Stack::start().await;
    let key = stack.seed(&[("gpt", "mock-model")]).await;
    assert_eq!(stack.chat(&key, "gpt", "idle-conn-0").await, 200);
    let pool = stack.control_plane.pool.clone();
    // Several connections open and idle in the pool.
    let held: Vec<_> = futures::future::join_all((0..4).map(|_| pool.acquire()))
        .await
        .into_iter()
        .map(|c| c.expect("a pooled connection"))
        .collect();
    drop(held);
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND backend_type = 'client backend') t",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(killed >= 3, "{killed} backends closed");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for i in 0..8 {
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|e| panic!("query {i} after the backends closed: {e}"));
        assert_eq!(one, 1);
    }
    assert_eq!(stack.chat(&key, "gpt", "idle-conn-1").await, 200);
    let logged = eventually(Duration::from_secs(10), || {
        let pool = pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM request_logs WHERE request_id LIKE 'idle-conn-%'",
            )
            .fetch_one(&pool)
            .await
            .ok()?;
            (n == 2).then_some(())
        }
    })
    .await;
    assert!(logged.is_some(), "both requests logged");
    stack.shutdown().await;
}
