//! `weir-bench-ingest`: control-plane ingest throughput, request logs per second into Postgres.
//!
//! Starts a private durable Postgres cluster and a control plane, then streams batches of
//! realistic records (summary + ~2 KB payload + 2 tags + 1 attempt + ledger row) over the real
//! gRPC ingest service from several simulated nodes, and reports acked records per second.
//!
//! Usage: weir-bench-ingest [--records N] [--nodes N] [--batch N]

use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_stream::wrappers::ReceiverStream;
use uuid::Uuid;
use weir_proto::logs::log_ingest_client::LogIngestClient;
use weir_proto::logs::{Attempt, Caller, LogBatch, PolicyMeta, RequestLog, Tag, Usage};

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

fn record(i: usize, user: &str, key: &str, payloads: bool) -> RequestLog {
    // ~2 KB of request and response payload, the shape a small chat produces.
    let prompt = "lorem ipsum dolor sit amet ".repeat(40);
    let request = serde_json::json!({"headers": {"authorization": "[REDACTED]", "content-type": "application/json",
        "user-agent": "OpenAI/Python 1.99.1"}, "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]}});
    let response = serde_json::json!({"body": {"id": format!("chatcmpl-{i}"), "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! ".repeat(40)}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 19, "completion_tokens": 9, "total_tokens": 28}}});
    RequestLog {
        log_id: Uuid::now_v7().as_bytes().to_vec(),
        request_id: format!("bench-{i}"),
        operation: "chat_completions".into(),
        stream: false,
        model_key: "gpt-4o-mini".into(),
        provider_key: "openai".into(),
        upstream_model: "gpt-4o-mini".into(),
        status_code: 200,
        outcome: "success".into(),
        duration_us: 1_200,
        ttfb_us: Some(900),
        usage: Some(Usage {
            input_tokens: Some(19),
            output_tokens: Some(9),
            cached_input_tokens: Some(0),
            reasoning_tokens: Some(0),
            total_tokens: Some(28),
            ..Default::default()
        }),
        caller: Some(Caller {
            api_key_id: key.into(),
            user_id: user.into(),
            ..Default::default()
        }),
        node_id: "bench-node".into(),
        fleet_group: "default".into(),
        tags: vec![
            Tag {
                key: "service".into(),
                value: "billing".into(),
            },
            Tag {
                key: "ticket".into(),
                value: format!("t-{}", i % 100),
            },
        ],
        request_payload: if payloads {
            serde_json::to_vec(&request).expect("json")
        } else {
            Vec::new()
        },
        response_payload: if payloads {
            serde_json::to_vec(&response).expect("json")
        } else {
            Vec::new()
        },
        policy: Some(PolicyMeta {
            capture_mode: if payloads {
                "redacted_payloads"
            } else {
                "summary_only"
            }
            .into(),
            request_max_bytes: 65536,
            response_max_bytes: 65536,
            stream_max_events: 128,
            policy_version: "1".into(),
        }),
        attempts: vec![Attempt {
            number: 1,
            provider_key: "openai".into(),
            upstream_model: "gpt-4o-mini".into(),
            status_code: 200,
            duration_us: 1_000,
            ttfb_us: Some(800),
            produced_response: true,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The control plane's own allocator (control-plane/src/main.rs), so the in-process control
/// plane measured here allocates as the shipped binary does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let total = arg("--records", 200_000)?;
    let nodes = arg("--nodes", 2)?.max(1);
    let batch = arg("--batch", 512)?.max(1);
    // --payloads 0: summary rows only, as with capture off.
    let payloads = arg("--payloads", 1)? != 0;
    let dir = tempfile::Builder::new()
        .prefix("weir-bench-ingest-")
        .tempdir()?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    }
    let token = format!("t{}", Uuid::new_v4().simple());
    let cp = weir_control_plane::ControlPlane::start(weir_control_plane::Settings {
        database_url: None,
        data_dir: dir.path().to_path_buf(),
        grpc_listen: ([127, 0, 0, 1], 0).into(),
        http_listen: ([127, 0, 0, 1], 0).into(),
        purge: Default::default(),
        reconcile: Default::default(),
        admin_token: None,
        dataplane_token: token.clone(),
        replica_id: "bench".into(),
        group_tokens: Default::default(),
        tls: None,
        secrets_key: None,
    })
    .await?;
    // Experiments (e.g. what an index costs) run their SQL here, before anything is sent.
    if let Ok(sql) = std::env::var("BENCH_SETUP_SQL") {
        sqlx::raw_sql(&sql).execute(&cp.pool).await?;
    }
    let url = format!("http://{}", cp.grpc_addr);
    // Pre-build every record so the measurement is the control plane's work, not ours.
    let users: Vec<String> = (0..50).map(|_| Uuid::now_v7().to_string()).collect();
    let per_node = total / nodes;
    let mut node_batches: Vec<Vec<LogBatch>> = Vec::new();
    for n in 0..nodes {
        let mut batches = Vec::new();
        let mut seq = 1u64;
        let mut i = 0;
        while i < per_node {
            let records = (i..(i + batch).min(per_node))
                .map(|j| {
                    record(
                        n * per_node + j,
                        &users[j % users.len()],
                        &users[(j + 7) % users.len()],
                        payloads,
                    )
                })
                .collect();
            batches.push(LogBatch {
                sequence: seq,
                records,
            });
            seq += 1;
            i += batch;
        }
        node_batches.push(batches);
    }
    let bytes: usize = node_batches
        .iter()
        .flatten()
        .map(prost::Message::encoded_len)
        .sum();
    eprintln!(
        "sending {} records from {nodes} nodes in batches of {batch} ({:.0} MiB on the wire)",
        per_node * nodes,
        bytes as f64 / 1048576.0
    );
    let started = Instant::now();
    let mut tasks = Vec::new();
    for batches in node_batches {
        let url = url.clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let channel = tonic::transport::Endpoint::from_shared(url)?
                .connect()
                .await?;
            let value: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse()?;
            let mut client =
                LogIngestClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
                    r.metadata_mut().insert("authorization", value.clone());
                    Ok(r)
                })
                .max_encoding_message_size(64 * 1024 * 1024);
            let (tx, rx) = tokio::sync::mpsc::channel(8);
            let mut acks = client.ingest(ReceiverStream::new(rx)).await?.into_inner();
            let expected = batches.len();
            let sender = tokio::spawn(async move {
                for b in batches {
                    if tx.send(b).await.is_err() {
                        break;
                    }
                }
            });
            let mut inserted = 0u64;
            let mut worst = Duration::ZERO;
            let mut last = Instant::now();
            for _ in 0..expected {
                let ack = acks.message().await?.context("stream ended early")?;
                inserted += ack.inserted as u64;
                worst = worst.max(last.elapsed());
                last = Instant::now();
            }
            sender.await?;
            anyhow::Ok((inserted, worst))
        }));
    }
    let mut inserted = 0;
    let mut worst = Duration::ZERO;
    for t in tasks {
        let (n, w) = t.await??;
        inserted += n;
        worst = worst.max(w);
    }
    let elapsed = started.elapsed();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM request_logs")
        .fetch_one(&cp.pool)
        .await?;
    println!(
        "ingest: {inserted} request logs in {:.2} s = {:.0} logs/s ({} rows in request_logs; longest wait between acks {:?})",
        elapsed.as_secs_f64(),
        inserted as f64 / elapsed.as_secs_f64(),
        rows,
        worst
    );
    cp.shutdown().await;
    Ok(())
}
