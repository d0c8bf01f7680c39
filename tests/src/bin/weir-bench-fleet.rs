//! `weir-bench-fleet`: config propagation across a fleet.
//!
//! Starts a durable Postgres and a control plane, loads 100,000 gateway keys, connects 1, 10
//! and 100 nodes (in-process clients of the real config stream, each with its own snapshot),
//! and measures how long a key revoke made through the admin API takes to be enforced on every
//! node (p50/p99 over nodes × revokes), plus the full snapshot size, the delta size of one
//! revoke and the memory one node's snapshot takes.
//!
//! Usage: weir-bench-fleet [--keys N] [--revokes N]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use uuid::Uuid;
use weir_data_plane::config_stream::{self, ConfigState};
use weir_proto::admin::admin_client::AdminClient;
use weir_proto::admin::*;
use weir_proto::config::ResourceType;

fn arg(name: &str, default: usize) -> anyhow::Result<usize> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .context(format!("{name} needs a value"))?
            .parse()
            .context(format!("{name} must be a number")),
        None => Ok(default),
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n_keys = arg("--keys", 100_000)?;
    let revokes = arg("--revokes", 20)?;
    let dir = tempfile::Builder::new()
        .prefix("weir-bench-fleet-")
        .tempdir()?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    }
    let token = format!("t{}", Uuid::new_v4().simple());
    let admin_token = format!("a{}", Uuid::new_v4().simple());
    let cp = weir_control_plane::ControlPlane::start(weir_control_plane::Settings {
        database_url: None,
        data_dir: dir.path().to_path_buf(),
        grpc_listen: ([127, 0, 0, 1], 0).into(),
        http_listen: ([127, 0, 0, 1], 0).into(),
        purge: Default::default(),
        reconcile: Default::default(),
        admin_token: Some(admin_token.clone()),
        dataplane_token: token.clone(),
        replica_id: "bench".into(),
        group_tokens: Default::default(),
        tls: None,
        secrets_key: None,
    })
    .await?;
    let url = format!("http://{}", cp.grpc_addr);
    let channel = tonic::transport::Endpoint::from_shared(url.clone())?
        .connect()
        .await?;
    let value: tonic::metadata::MetadataValue<_> = format!("Bearer {admin_token}").parse()?;
    let mut admin = AdminClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
        r.metadata_mut().insert("authorization", value.clone());
        Ok(r)
    });
    admin
        .create_user(CreateUserRequest {
            name: "bench".into(),
            ..Default::default()
        })
        .await?;
    // The keys to revoke go through the admin API; the bulk is written directly.
    let mut victims = Vec::new();
    for i in 0..revokes {
        let k = admin
            .create_api_key(CreateApiKeyRequest {
                name: format!("victim-{i}"),
                owner_user: "bench".into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        victims.push((k.key.context("key")?.id, k.secret));
    }
    sqlx::query(
        "INSERT INTO api_keys (id, name, key_hash, display_prefix, owner_user_id, user_id)
         SELECT gen_random_uuid(), 'bulk-' || i, sha256(('bulk-secret-' || i)::bytea),
                'weir_sk_' || lpad(i::text, 8, '0'), u.id, u.id
         FROM generate_series(1, $1::int) AS i, users u WHERE u.name = 'bench'",
    )
    .bind(n_keys as i32)
    .execute(&cp.pool)
    .await?;
    sqlx::query(
        "UPDATE config_versions SET version = version + 1 WHERE resource_type = 'api_keys'",
    )
    .execute(&cp.pool)
    .await?;
    sqlx::query("SELECT pg_notify('weir_config', 'api_keys')")
        .execute(&cp.pool)
        .await?;
    let total_keys = n_keys + revokes;
    eprintln!("{total_keys} keys loaded");

    println!("| nodes | revokes | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    let mut victims = victims.into_iter();
    let mut sizes = (0u64, 0u64, 0u64);
    for nodes in [1usize, 10, 100] {
        let base_rss = rss_kib();
        let mut states = Vec::new();
        let mut tasks = Vec::new();
        for n in 0..nodes {
            let mut s = weir_data_plane::Settings::new(url.clone(), token.clone());
            s.node_id = format!("bench-{nodes}-{n}");
            let state = Arc::new(ConfigState::default());
            tasks.push(tokio::spawn(config_stream::follow(
                Arc::new(s),
                state.clone(),
            )));
            states.push(state);
        }
        let remaining = total_keys - (revokes - victims.len());
        let started = Instant::now();
        loop {
            if states
                .iter()
                .all(|s| s.current.load().keys.len() == remaining)
            {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(120),
                "nodes never loaded the keys"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let slot = ResourceType::ApiKeys as usize;
        if nodes == 1 {
            sizes.0 = states[0].last_response_bytes[slot].load(Ordering::Relaxed);
            sizes.2 = rss_kib().saturating_sub(base_rss);
        }
        let per_count = (revokes / 3).max(1);
        let mut lat = Vec::new();
        for _ in 0..per_count {
            let Some((id, secret)) = victims.next() else {
                break;
            };
            let hash = weir_proto::api_key::hash(&secret);
            let t0 = Instant::now();
            admin
                .revoke_api_key(RevokeApiKeyRequest { key: id })
                .await?;
            let mut pending: Vec<&Arc<ConfigState>> = states.iter().collect();
            while !pending.is_empty() {
                pending.retain(|s| {
                    if s.current.load().keys.contains_key(&hash) {
                        true
                    } else {
                        lat.push(t0.elapsed());
                        false
                    }
                });
                anyhow::ensure!(
                    t0.elapsed() < Duration::from_secs(30),
                    "a revoke never arrived"
                );
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            sizes.1 = states[0].last_response_bytes[slot].load(Ordering::Relaxed);
        }
        lat.sort();
        println!(
            "| {nodes} | {per_count} | {:.1} | {:.1} | {:.1} |",
            percentile(&lat, 0.5).as_secs_f64() * 1e3,
            percentile(&lat, 0.99).as_secs_f64() * 1e3,
            lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        );
        for t in tasks {
            t.abort();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!();
    println!(
        "- full key snapshot for {total_keys} keys: {:.1} MiB on the wire",
        sizes.0 as f64 / 1048576.0
    );
    println!(
        "- one revoke among them: {} bytes on the wire (a delta)",
        sizes.1
    );
    println!(
        "- one node's memory for the snapshot (RSS growth of this process): ~{} MiB",
        sizes.2 / 1024
    );
    cp.shutdown().await;
    Ok(())
}
