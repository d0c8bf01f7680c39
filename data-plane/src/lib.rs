//! Weir's data plane: a stateless OpenAI-compatible proxy that records every request.
//!
//! - [`settings`]: listen address, control plane, queue bounds.
//! - [`snapshot`]: the immutable config a request uses, one version throughout.
//! - [`snapshot_store`]: the last good config on disk, for starts without the control plane.
//! - [`config_stream`]: subscribing to the control plane, ACK/NACK, reconnects.
//! - [`key_auth`]: gateway keys, by hash.
//! - [`idle_spin`]: serving runtimes that may poll for work briefly before they sleep.
//! - [`caller_tags`]: the `x-weir-*` tag headers, validated.
//! - [`limits`]: requests/tokens per minute and budgets per key, user and team.
//! - [`operation`]: the served operations, their upstream paths and body shapes.
//! - [`proxy`]: the HTTP server and the request phases.
//! - [`route_plan`]: attempt order, retries and fallback.
//! - [`anthropic_translation`]: OpenAI chat ⇄ Anthropic Messages, bodies and streams.
//! - [`upstream`]: the pooled upstream client.
//! - [`sse_transcript`]: framing server-sent events.
//! - [`usage`]: token usage and tool counts from responses.
//! - [`harness`] and [`agent_session`]: which agent sent a request, its session and turn kind.
//! - [`payload_policy`]: wrap, redact and cap payloads for the log.
//! - [`trace_context`]: W3C trace context in and out.
//! - [`genai_trace`]: a finished request as GenAI-convention spans.
//! - [`genai_metrics`]: request metrics, aggregated for OTLP.
//! - [`genai_content`]: message content for spans, from the redacted payload.
//! - [`otlp_export`]: batched, bounded OTLP span export.
//! - [`telemetry_sinks`]: the node's live OTLP destinations, from its environment and config.
//! - [`token_estimate`]: prompt tokens counted locally when a stream ends before its usage.
//! - [`request_record`]: what the request path hands to the log worker.
//! - [`log_shipper`]: the bounded queue and the batching, at-least-once shipper.
//! - [`gateway_error`]: every error a client can see, as OpenAI error JSON.

pub mod agent_session;
pub mod anthropic_translation;
pub mod body;
pub mod caller_tags;
pub mod config_stream;
pub mod gateway_error;
pub mod genai_content;
pub mod genai_metrics;
pub mod genai_trace;
pub mod harness;
pub mod idle_spin;
pub mod key_auth;
pub mod limits;
pub mod log_shipper;
pub mod operation;
pub mod otlp_export;
pub mod payload_policy;
pub mod proxy;
pub mod request_record;
pub mod route_plan;
pub mod settings;
pub mod snapshot;
pub mod snapshot_store;
pub mod sse_transcript;
pub mod telemetry_sinks;
pub mod token_estimate;
pub mod trace_context;
pub mod upstream;
pub mod usage;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use settings::Settings;

/// A running data plane.
pub struct DataPlane {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// Live config (tests read versions from it).
    pub config: Arc<config_stream::ConfigState>,
    /// The request-log queue (tests read its counters).
    pub logs: log_shipper::LogQueue,
    stop: watch::Sender<bool>,
    servers: proxy::Servers,
    follower: JoinHandle<()>,
}

impl DataPlane {
    /// Binds, starts following the config stream and serves.
    pub async fn start(settings: Settings) -> std::io::Result<Self> {
        let listeners = proxy::bind(settings.listen, settings.serve_threads)?;
        let addr = listeners[0].local_addr()?;
        let mut settings = settings;
        settings.listen = addr;
        let settings = Arc::new(settings);
        let config = Arc::new(config_stream::ConfigState::default());
        if let Some(dir) = &settings.snapshot_dir {
            config_stream::load_persisted(dir, &config);
        }
        let follower = tokio::spawn(config_stream::follow(settings.clone(), config.clone()));
        let tls = upstream::tls_config(settings.upstream_ca.as_deref())?;
        let logs = log_shipper::start(settings.clone(), tls.clone(), config.clone());
        let gw = proxy::Gateway::new(
            config.clone(),
            tls.clone(),
            upstream::client(settings.upstream_connect_timeout, tls),
            logs.clone(),
            settings.clone(),
        );
        let (stop, stop_rx) = watch::channel(false);
        let servers = proxy::start_servers(&gw, listeners, &stop_rx)?;
        tracing::info!(%addr, node = %settings.node_id, "data plane serving");
        Ok(DataPlane {
            addr,
            config,
            logs,
            stop,
            servers,
            follower,
        })
    }

    /// Whether the node holds a complete config.
    pub fn is_ready(&self) -> bool {
        self.config.current.load().is_complete()
    }

    /// Stops accepting, lets open connections finish (up to 10 s), ships the request logs it
    /// holds (up to the drain timeout), stops following config.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.servers.join().await;
        self.logs.close().await;
        self.follower.abort();
    }
}
