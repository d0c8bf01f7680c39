//! The data plane's own settings: where to listen, where the control plane is, and the bounds of
//! its queues. Everything about routing comes from the config stream.

use std::net::SocketAddr;
use std::time::Duration;

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Client-facing listen address.
    pub listen: SocketAddr,
    /// Serving threads, each with its own listener socket, runtime and upstream pool.
    pub serve_threads: usize,
    /// The control planes' gRPC URLs, comma-separated, e.g.
    /// `http://cp-0:50051,http://cp-1:50051`; a node moves to the next one when one fails.
    pub control_plane: String,
    /// Token presented on the config and ingest streams.
    pub dataplane_token: String,
    /// PEM CA certificate that signed the control plane's TLS certificate (for `https://` URLs);
    /// without it, the public webpki roots are trusted.
    pub control_plane_ca: Option<std::path::PathBuf>,
    /// This node's id.
    pub node_id: String,
    /// Fleet group.
    pub group: String,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Largest upstream (non-streaming) response body relayed.
    pub max_response_bytes: usize,
    /// Records waiting for the log worker; beyond it a record is dropped and counted.
    pub log_queue_records: usize,
    /// Request and response bytes the records waiting for the log worker may hold; beyond it a
    /// record is dropped and counted like one over `log_queue_records`.
    pub log_queue_bytes: usize,
    /// Records kept (sealed in batches) until the control plane acks them.
    pub log_buffer_records: usize,
    /// Nice value of the log worker thread: how much it yields to request serving when the CPU
    /// is short (0 competes equally; higher values yield more and may drop records).
    pub log_worker_nice: i32,
    /// Records per batch.
    pub log_batch_records: usize,
    /// Longest a partial batch waits before it is sent.
    pub log_batch_delay: Duration,
    /// How long a partial batch waits while no earlier batch awaits its ack (zero: only
    /// `log_batch_delay` and the batch's size seal it); see `log_shipper::seal_deadline`.
    pub log_batch_idle_delay: Duration,
    /// Longest a shutdown waits for unacked request logs to be acked.
    pub log_drain_timeout: Duration,
    /// Where the last good config is kept, to start from when the control plane is unreachable;
    /// `None` keeps nothing on disk.
    pub snapshot_dir: Option<std::path::PathBuf>,
    /// PEM CA certificates trusted for upstream TLS besides the public webpki roots.
    pub upstream_ca: Option<std::path::PathBuf>,
    /// OTLP span export; `None` exports nothing (and passes the caller's `traceparent` on
    /// unchanged).
    pub otel: Option<crate::otlp_export::ExportSettings>,
    /// Connect timeout to upstreams.
    pub upstream_connect_timeout: Duration,
    /// Time allowed for an upstream's response headers.
    pub upstream_first_byte_timeout: Duration,
    /// The longest a serving thread polls for work before it sleeps (zero: it sleeps at once);
    /// see [`crate::idle_spin`].
    pub serve_idle_spin: Duration,
}

impl Settings {
    /// Defaults for everything but the control plane and its token.
    pub fn new(control_plane: impl Into<String>, dataplane_token: impl Into<String>) -> Self {
        Settings {
            listen: ([127, 0, 0, 1], 8080).into(),
            serve_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            control_plane: control_plane.into(),
            dataplane_token: dataplane_token.into(),
            control_plane_ca: None,
            node_id: default_node_id(),
            group: "default".into(),
            max_body_bytes: 32 * 1024 * 1024,
            max_response_bytes: 64 * 1024 * 1024,
            log_queue_records: 65_536,
            log_queue_bytes: 256 << 20,
            log_buffer_records: 200_000,
            log_worker_nice: 10,
            log_batch_records: 2048,
            log_batch_delay: Duration::from_millis(100),
            log_batch_idle_delay: Duration::from_millis(5),
            log_drain_timeout: Duration::from_secs(5),
            snapshot_dir: None,
            upstream_ca: None,
            otel: None,
            upstream_connect_timeout: Duration::from_secs(10),
            upstream_first_byte_timeout: Duration::from_secs(300),
            serve_idle_spin: Duration::from_micros(50),
        }
    }
}

impl Settings {
    /// The control-plane URLs, in the order given.
    pub fn control_planes(&self) -> Vec<&str> {
        self.control_plane
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect()
    }
}

fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "data-plane".into());
    format!("{host}-{}", std::process::id())
}
