//! The node's side of the config stream: subscribe, validate, swap, ACK or NACK, and reconnect
//! with jittered backoff, serving the last good snapshot all the while.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::transport::Endpoint;
use tonic::{Request, Status};
use weir_proto::config::config_discovery_client::ConfigDiscoveryClient;
use weir_proto::config::{DiscoveryRequest, ErrorDetail, Node, ResourceType};

use crate::settings::Settings;
use crate::snapshot::{Snapshot, SUBSCRIBED};

/// The live config and what the node knows about its stream.
#[derive(Default)]
pub struct ConfigState {
    /// The current snapshot; load once per request.
    pub current: ArcSwap<Snapshot>,
    /// Whether the stream is up right now.
    pub connected: AtomicBool,
    /// NACKs sent since start.
    pub nacks: AtomicU64,
    /// Serving a config loaded from disk that the control plane has not confirmed yet.
    pub from_disk: AtomicBool,
    /// Encoded size of the last response received, per resource type (for the fleet benchmark
    /// and tests: a revoke among many keys must stay small).
    pub last_response_bytes: [AtomicU64; 8],
}

/// Loads the persisted snapshot, if it is complete and valid, as the current config.
pub fn load_persisted(dir: &std::path::Path, state: &ConfigState) {
    let env = |name: &str| std::env::var(name).ok();
    let mut snap = Snapshot::default();
    for resp in crate::snapshot_store::load(dir) {
        let Some(res) = &resp.resources else { continue };
        match snap.with(&resp.version, res, &env) {
            Ok(next) => snap = next,
            Err(e) => {
                tracing::warn!(error = %e, "persisted config no longer applies; waiting for the control plane");
                return;
            }
        }
    }
    if snap.is_complete() {
        tracing::warn!(dir = %dir.display(), "serving the persisted config until the control plane answers");
        state.current.store(Arc::new(snap));
        state.from_disk.store(true, Ordering::Relaxed);
    }
}

/// Largest config response a node accepts.
pub const MAX_CONFIG_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Why a stream session ended.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("invalid control-plane URL {0:?}")]
    Url(String),
    #[error("connecting: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("stream: {0}")]
    Status(#[from] Status),
    #[error("the control plane closed the stream")]
    Closed,
    #[error("TLS: {0}")]
    Tls(String),
}

/// Adds the data-plane token to every call.
pub fn token_interceptor(
    token: &str,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    let value: Option<MetadataValue<_>> = format!("Bearer {token}").parse().ok();
    move |mut req: Request<()>| {
        if let Some(v) = &value {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// Opens a gRPC channel to the control plane; `https://` URLs use TLS, trusting `ca` (PEM) or,
/// without it, the public webpki roots.
pub async fn connect(
    url: &str,
    ca: Option<&std::path::Path>,
) -> Result<tonic::transport::Channel, StreamError> {
    let mut ep = Endpoint::from_shared(url.to_string())
        .map_err(|_| StreamError::Url(url.to_string()))?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    if url.starts_with("https://") {
        let tls =
            weir_proto::grpc_tls::client_config(ca).map_err(|e| StreamError::Tls(e.to_string()))?;
        ep = ep
            .tls_config(tls)
            .map_err(|e| StreamError::Tls(e.to_string()))?;
    }
    Ok(ep.connect().await?)
}

/// Follows the config stream for the life of the process.
pub async fn follow(settings: Arc<Settings>, state: Arc<ConfigState>) {
    let mut delay = Backoff::default();
    let urls: Vec<String> = settings
        .control_planes()
        .into_iter()
        .map(str::to_string)
        .collect();
    let mut next = 0usize;
    loop {
        // Fail over: each new attempt goes to the next replica.
        let url = urls
            .get(next % urls.len().max(1))
            .cloned()
            .unwrap_or_default();
        next += 1;
        let result = session(&settings, &url, &state, &mut delay).await;
        state.connected.store(false, Ordering::Relaxed);
        match result {
            Ok(()) | Err(StreamError::Closed) => {
                tracing::warn!("config stream closed; serving the last good config")
            }
            Err(e) => {
                tracing::warn!(error = %e, "config stream down; serving the last good config")
            }
        }
        tokio::time::sleep(delay.next_delay()).await;
    }
}

async fn session(
    settings: &Settings,
    url: &str,
    state: &ConfigState,
    delay: &mut Backoff,
) -> Result<(), StreamError> {
    let channel = connect(url, settings.control_plane_ca.as_deref()).await?;
    // A full key set of 100,000 keys is ~10 MB: well past tonic's 4 MB default.
    let mut client = ConfigDiscoveryClient::with_interceptor(
        channel,
        token_interceptor(&settings.dataplane_token),
    )
    .max_decoding_message_size(MAX_CONFIG_MESSAGE_BYTES);
    let (tx, rx) = mpsc::channel(16);
    let held = state.current.load_full();
    for (i, t) in SUBSCRIBED.iter().enumerate() {
        let node = (i == 0).then(|| Node {
            id: settings.node_id.clone(),
            group: settings.group.clone(),
            software_version: env!("CARGO_PKG_VERSION").to_string(),
            labels: Default::default(),
            address: settings.listen.to_string(),
        });
        let _ = tx
            .send(DiscoveryRequest {
                node,
                r#type: *t as i32,
                version: held.version(*t).to_string(),
                response_nonce: String::new(),
                error_detail: None,
            })
            .await;
    }
    let mut responses = client.stream(ReceiverStream::new(rx)).await?.into_inner();
    state.connected.store(true, Ordering::Relaxed);
    delay.reset();
    // The control plane answers every subscription whose version moved; from here on the
    // config is its, not the disk's.
    state.from_disk.store(false, Ordering::Relaxed);
    let env = |name: &str| std::env::var(name).ok();
    while let Some(resp) = responses.message().await? {
        delay.reset();
        let t = ResourceType::try_from(resp.r#type).unwrap_or(ResourceType::Unspecified);
        if let Some(slot) = state
            .last_response_bytes
            .get(resp.r#type.clamp(0, 7) as usize)
        {
            slot.store(prost::Message::encoded_len(&resp) as u64, Ordering::Relaxed);
        }
        let current = state.current.load_full();
        let outcome = match &resp.resources {
            Some(res) => current.with(&resp.version, res, &env),
            None => Err(weir_proto::validate::Invalid {
                code: "unknown_resource",
                message: format!(
                    "response for type {} carried no resources this build understands",
                    resp.r#type
                ),
            }),
        };
        let reply = match outcome {
            Ok(next) => {
                state.current.store(Arc::new(next));
                if let Some(dir) = &settings.snapshot_dir {
                    if let Err(e) = crate::snapshot_store::save(dir, &resp) {
                        tracing::warn!(error = %e, "could not persist the config; a restart without the control plane will not serve");
                    }
                }
                tracing::info!(resource = ?t, version = %resp.version, "config applied");
                DiscoveryRequest {
                    node: None,
                    r#type: resp.r#type,
                    version: resp.version,
                    response_nonce: resp.nonce,
                    error_detail: None,
                }
            }
            Err(invalid) => {
                state.nacks.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    resource = ?t,
                    version = %resp.version,
                    code = invalid.code,
                    error = %invalid.message,
                    "config rejected; keeping the last good version"
                );
                DiscoveryRequest {
                    node: None,
                    r#type: resp.r#type,
                    version: current.version(t).to_string(),
                    response_nonce: resp.nonce,
                    error_detail: Some(ErrorDetail {
                        code: invalid.code.to_string(),
                        message: invalid.message,
                    }),
                }
            }
        };
        if tx.send(reply).await.is_err() {
            return Err(StreamError::Closed);
        }
    }
    Err(StreamError::Closed)
}

/// Exponential backoff with full jitter, 100 ms up to 10 s.
#[derive(Debug, Default)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    const BASE_MS: u64 = 100;
    const MAX_MS: u64 = 10_000;

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let cap = (Self::BASE_MS << self.attempt.min(10)).min(Self::MAX_MS);
        self.attempt = self.attempt.saturating_add(1);
        Duration::from_millis(rand::Rng::gen_range(&mut rand::thread_rng(), cap / 2..=cap))
    }

    /// Back to the shortest delay after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_resets() {
        let mut b = Backoff::default();
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        for _ in 0..20 {
            assert!(b.next_delay() <= Duration::from_millis(10_000));
        }
        assert!(b.next_delay() >= Duration::from_millis(5_000));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
