//! `weir-data-plane`: the OpenAI-compatible proxy.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use weir_data_plane::{DataPlane, Settings};

#[derive(Parser)]
#[command(name = "weir-data-plane", version, about)]
struct Cli {
    /// Address clients connect to.
    #[arg(long, env = "WEIR_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The control plane's gRPC URL.
    #[arg(
        long,
        env = "WEIR_CONTROL_PLANE",
        default_value = "http://127.0.0.1:50051"
    )]
    control_plane: String,
    /// PEM CA certificate of the control plane's TLS certificate (for https:// URLs).
    #[arg(long, env = "WEIR_CONTROL_PLANE_CA")]
    control_plane_ca: Option<std::path::PathBuf>,
    /// Token for the config and ingest streams.
    #[arg(long, env = "WEIR_DATAPLANE_TOKEN", hide_env_values = true)]
    dataplane_token: String,
    /// This node's id (default: hostname-pid).
    #[arg(long, env = "WEIR_NODE_ID")]
    node_id: Option<String>,
    /// Fleet group.
    #[arg(long, env = "WEIR_FLEET_GROUP", default_value = "default")]
    group: String,
    /// PEM CA certificates to trust for upstream TLS, besides the public roots.
    #[arg(long, env = "WEIR_UPSTREAM_CA")]
    upstream_ca: Option<std::path::PathBuf>,
    /// Serving threads (default: one per CPU).
    #[arg(long, env = "WEIR_SERVE_THREADS")]
    serve_threads: Option<usize>,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "WEIR_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,
    /// Folder for the last good config, to start from when the control plane is unreachable.
    #[arg(long, env = "WEIR_SNAPSHOT_DIR")]
    snapshot_dir: Option<std::path::PathBuf>,
    /// Finished requests' records that may wait for the log worker (default 65536); past it, or
    /// past --log-queue-bytes, a record is dropped and counted (`dropped_queue_full`).
    #[arg(long, env = "WEIR_LOG_QUEUE_RECORDS", value_parser = clap::value_parser!(u64).range(1..=16_777_216))]
    log_queue_records: Option<u64>,
    /// Request, response and stream bytes the waiting records may hold (default 268435456,
    /// 256 MiB): bounds the node's memory when large payloads meet a busy log worker.
    #[arg(long, env = "WEIR_LOG_QUEUE_BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    log_queue_bytes: Option<u64>,
    /// Request-log records kept unacked while the control plane is unreachable.
    #[arg(long, env = "WEIR_LOG_BUFFER_RECORDS")]
    log_buffer_records: Option<usize>,
    /// Most request-log records per batch sent to the control plane (1–65536, default 2048):
    /// smaller batches shorten the tail latency of co-located recording under load and cost
    /// more recording CPU per request (at low load batches are small anyway).
    #[arg(long, env = "WEIR_LOG_BATCH_RECORDS", value_parser = clap::value_parser!(u32).range(1..=65536))]
    log_batch_records: Option<u32>,
    /// Nice value of the log worker thread (0–19): higher yields more CPU to serving when the
    /// machine is saturated, at the risk of dropping (and counting) request logs.
    #[arg(long, env = "WEIR_LOG_WORKER_NICE", value_parser = clap::value_parser!(i32).range(0..=19))]
    log_worker_nice: Option<i32>,
    /// The longest a serving thread keeps polling for work before it sleeps, in µs (0–1000,
    /// default 50; 0 turns it off): lower latency on VMs whose idle CPUs halt at once. Polling
    /// stops as soon as another task wants the CPU, and the window closes while requests wait
    /// long on their providers.
    #[arg(long, env = "WEIR_SERVE_IDLE_SPIN_US", value_parser = clap::value_parser!(u32).range(0..=1000))]
    serve_idle_spin_us: Option<u32>,
    /// Probe a running node's /healthz on --listen and exit 0 when it answers 200 (for
    /// container health checks).
    #[arg(long)]
    healthcheck: bool,
}

/// mimalloc: measurably faster than the system allocator for the many small, short-lived
/// allocations of request handling (see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The main runtime only follows config and ships nothing on the request path; serving threads
/// run their own runtimes (see `proxy::start_servers`).
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    if cli.healthcheck {
        return weir_proto::health::probe(cli.listen).map_err(anyhow::Error::msg);
    }
    let mut s = Settings::new(cli.control_plane, cli.dataplane_token);
    s.listen = cli.listen;
    s.group = cli.group;
    if let Some(id) = cli.node_id {
        s.node_id = id;
    }
    if let Some(n) = cli.serve_threads {
        s.serve_threads = n.max(1);
    }
    if let Some(n) = cli.max_body_bytes {
        s.max_body_bytes = n;
    }
    s.snapshot_dir = cli.snapshot_dir;
    s.upstream_ca = cli.upstream_ca;
    s.otel = weir_data_plane::otlp_export::ExportSettings::from_env(|k| std::env::var(k).ok())
        .context("OpenTelemetry export settings")?;
    s.control_plane_ca = cli.control_plane_ca;
    if let Some(n) = cli.log_queue_records {
        s.log_queue_records = n as usize;
    }
    if let Some(n) = cli.log_queue_bytes {
        s.log_queue_bytes = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if let Some(n) = cli.log_buffer_records {
        s.log_buffer_records = n;
    }
    if let Some(n) = cli.log_batch_records {
        s.log_batch_records = n as usize;
    }
    if let Some(n) = cli.log_worker_nice {
        s.log_worker_nice = n;
    }
    if let Some(us) = cli.serve_idle_spin_us {
        s.serve_idle_spin = std::time::Duration::from_micros(us.into());
    }
    let dp = DataPlane::start(s)
        .await
        .context("starting the data plane")?;
    println!("weir-data-plane listening on {}", dp.addr);
    shutdown_signal().await;
    tracing::info!("shutting down");
    dp.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_batch_records_is_bounded() {
        let parse = |v: &str| {
            Cli::try_parse_from([
                "weir-data-plane",
                "--dataplane-token",
                "t",
                "--log-batch-records",
                v,
            ])
        };
        assert_eq!(parse("64").unwrap().log_batch_records, Some(64));
        for bad in ["0", "65537", "-1", "many"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn log_queue_bounds_are_checked() {
        let parse = |flag: &str, v: &str| {
            Cli::try_parse_from(["weir-data-plane", "--dataplane-token", "t", flag, v])
        };
        let records = |v| parse("--log-queue-records", v).map(|c| c.log_queue_records);
        let bytes = |v| parse("--log-queue-bytes", v).map(|c| c.log_queue_bytes);
        assert_eq!(records("100000").unwrap(), Some(100_000));
        assert_eq!(bytes("1048576").unwrap(), Some(1 << 20));
        for bad in ["0", "-1", "lots"] {
            assert!(records(bad).is_err(), "records {bad}");
            assert!(bytes(bad).is_err(), "bytes {bad}");
        }
        assert!(records("16777217").is_err(), "records past 16 Mi");
    }

    #[test]
    fn serve_idle_spin_is_bounded() {
        let parse = |v: &str| {
            Cli::try_parse_from([
                "weir-data-plane",
                "--dataplane-token",
                "t",
                "--serve-idle-spin-us",
                v,
            ])
        };
        assert_eq!(parse("50").unwrap().serve_idle_spin_us, Some(50));
        assert_eq!(parse("0").unwrap().serve_idle_spin_us, Some(0));
        for bad in ["1001", "-1", "soon"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
