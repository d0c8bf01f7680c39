//! The config discovery service: one session per connected data plane.
//!
//! A session answers subscriptions, pushes every newer version of a subscribed type, and records
//! ACKs and NACKs (with their error detail) in the `dataplanes` table, which is what
//! `weirctl dataplanes` reads.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use sqlx::PgPool;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use weir_proto::config::config_discovery_server::ConfigDiscovery;
use weir_proto::config::discovery_response::Resources;
use weir_proto::config::{ApiKeyDelta, DiscoveryRequest, DiscoveryResponse, Node, ResourceType};

use crate::config_snapshot::{type_name, ConfigHub, ConfigSnapshot};
use crate::server::NodeScope;

/// Serves `weir.config.v1.ConfigDiscovery`.
pub struct ConfigService {
    hub: ConfigHub,
    pool: PgPool,
    replica_id: String,
    stopping: watch::Receiver<bool>,
}

impl ConfigService {
    /// A service publishing `hub`'s snapshots.
    pub fn new(
        hub: ConfigHub,
        pool: PgPool,
        replica_id: String,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        ConfigService {
            hub,
            pool,
            replica_id,
            stopping,
        }
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<DiscoveryResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ConfigDiscovery for ConfigService {
    type StreamStream = ResponseStream;

    async fn stream(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let scope = request.extensions().get::<NodeScope>().cloned();
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("the stream ended before naming its node"))?;
        let node = first
            .node
            .clone()
            .ok_or_else(|| Status::invalid_argument("the first message must name the node"))?;
        match scope {
            Some(NodeScope::AnyGroup) => {}
            Some(NodeScope::Group(g)) if g == node.group => {}
            Some(NodeScope::Group(g)) => {
                return Err(Status::permission_denied(format!(
                    "this token admits nodes of group {g:?}, not {:?}",
                    node.group
                )))
            }
            None => return Err(Status::unauthenticated("missing data-plane token")),
        }
        if node.id.is_empty() || node.id.len() > 253 {
            return Err(Status::invalid_argument("node.id must be 1-253 characters"));
        }
        let connected_since = register(&self.pool, &node, &self.replica_id)
            .await
            .map_err(|e| Status::unavailable(format!("recording the node failed: {e}")))?;
        tracing::info!(node = %node.id, group = %node.group, "data plane connected");

        let (tx, rx) = mpsc::channel(16);
        let session = Session {
            node,
            replica: self.replica_id.clone(),
            connected_since,
            pool: self.pool.clone(),
            out: tx,
            subs: HashMap::new(),
            nonce: 0,
        };
        tokio::spawn(session.run(first, inbound, self.hub.subscribe(), self.stopping.clone()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[derive(Default)]
struct Subscription {
    /// Version last sent (or held by the node when it subscribed).
    sent: Option<String>,
    /// Nonce of the last response sent.
    nonce: String,
}

struct Session {
    node: Node,
    replica: String,
    connected_since: chrono::DateTime<chrono::Utc>,
    pool: PgPool,
    out: mpsc::Sender<Result<DiscoveryResponse, Status>>,
    subs: HashMap<i32, Subscription>,
    nonce: u64,
}

impl Session {
    async fn run(
        mut self,
        first: DiscoveryRequest,
        mut inbound: Streaming<DiscoveryRequest>,
        mut snapshots: watch::Receiver<Arc<ConfigSnapshot>>,
        mut stopping: watch::Receiver<bool>,
    ) {
        let snap = snapshots.borrow_and_update().clone();
        if self.handle(first, &snap).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                // This replica is stopping: end the stream so the node moves to another one now
                // rather than after its keepalive notices.
                _ = stopping.changed() => break,
                msg = inbound.message() => match msg {
                    Ok(Some(req)) => {
                        let snap = snapshots.borrow().clone();
                        if self.handle(req, &snap).await.is_err() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        tracing::info!(node = %self.node.id, %status, "config stream broke");
                        break;
                    }
                },
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let snap = snapshots.borrow_and_update().clone();
                    if self.push_newer(&snap).await.is_err() {
                        break;
                    }
                }
            }
        }
        tracing::info!(node = %self.node.id, "data plane disconnected");
        // Only if this session is still the node's latest: it may have reconnected elsewhere.
        let _ = sqlx::query(
            "UPDATE dataplanes SET last_seen = now(), connected_since = NULL
             WHERE node_id = $1 AND control_plane = $2 AND connected_since = $3",
        )
        .bind(&self.node.id)
        .bind(&self.replica)
        .bind(self.connected_since)
        .execute(&self.pool)
        .await;
    }

    async fn handle(&mut self, req: DiscoveryRequest, snap: &ConfigSnapshot) -> Result<(), Closed> {
        // A node newer than this control plane may subscribe to types we do not serve yet:
        // leave those unanswered rather than cut the node off from everything else.
        let t = match ResourceType::try_from(req.r#type) {
            Ok(t) if t != ResourceType::Unspecified => t,
            _ => {
                tracing::warn!(
                    node = %self.node.id,
                    resource_type = req.r#type,
                    "node subscribed to a resource type this control plane does not serve; ignored"
                );
                return Ok(());
            }
        };
        if req.response_nonce.is_empty() {
            // A subscription: the node says what it holds.
            let held = (!req.version.is_empty()).then_some(req.version);
            if let (Some(h), Some(current)) = (held.as_deref(), snap.get(t)) {
                if h == current.version {
                    // Already current (a reconnect, or a start from disk): nothing will be sent,
                    // so record it as acknowledged.
                    record_ack(&self.pool, &self.node.id, t, h).await;
                }
            }
            self.subs.insert(
                t as i32,
                Subscription {
                    sent: held,
                    nonce: String::new(),
                },
            );
            return self.push_if_newer(t, snap).await;
        }
        let current_nonce = self.subs.get(&(t as i32)).map(|s| s.nonce.as_str());
        if current_nonce != Some(req.response_nonce.as_str()) {
            // An answer to a response that a newer one already superseded.
            return Ok(());
        }
        match req.error_detail {
            None => record_ack(&self.pool, &self.node.id, t, &req.version).await,
            // A delta the node cannot apply (another base, or a build without deltas).
            Some(err)
                if t == ResourceType::ApiKeys
                    && matches!(
                        err.code.as_str(),
                        "delta_base_mismatch" | "unknown_resource"
                    ) =>
            {
                // The node does not hold what the delta was built on: send it everything.
                if let Some(sub) = self.subs.get_mut(&(t as i32)) {
                    sub.sent = None;
                }
                return self.push_if_newer(t, snap).await;
            }
            Some(err) => {
                tracing::warn!(
                    node = %self.node.id,
                    resource = type_name(t),
                    code = %err.code,
                    error = %err.message,
                    "data plane rejected config"
                );
                record_nack(&self.pool, &self.node.id, t, &err.code, &err.message).await;
            }
        }
        Ok(())
    }

    async fn push_newer(&mut self, snap: &ConfigSnapshot) -> Result<(), Closed> {
        let types: Vec<i32> = self.subs.keys().copied().collect();
        for t in types {
            if let Ok(t) = ResourceType::try_from(t) {
                self.push_if_newer(t, snap).await?;
            }
        }
        Ok(())
    }

    async fn push_if_newer(
        &mut self,
        t: ResourceType,
        snap: &ConfigSnapshot,
    ) -> Result<(), Closed> {
        let Some(entry) = snap.get(t) else {
            return Ok(());
        };
        let sub = self.subs.entry(t as i32).or_default();
        if sub.sent.as_deref() == Some(entry.version.as_str()) {
            return Ok(());
        }
        // A replica that has not reloaded yet must not take a node back to an older version
        // (a revoked key would work again); versions share one counter across replicas.
        if let Some(held) = sub.sent.as_deref() {
            if counter(held) > counter(&entry.version) {
                return Ok(());
            }
        }
        // Keys go as a delta against what the node was last sent, when that is smaller.
        let group = self.node.group.clone();
        let resources = match (t, sub.sent.as_deref(), &*entry.resources) {
            (ResourceType::ApiKeys, Some(base), Resources::ApiKeys(full)) => snap
                .key_delta_since(base)
                .filter(|d| (d.upserts.len() + d.removed.len()) * 2 < full.keys.len().max(1))
                .map(|d| {
                    Resources::ApiKeyDelta(ApiKeyDelta {
                        base_version: d.from,
                        upserts: d.upserts.into_values().collect(),
                        removed_ids: d.removed.into_iter().collect(),
                    })
                })
                .unwrap_or_else(|| (*entry.resources).clone()),
            _ => (*entry.resources).clone(),
        };
        self.nonce += 1;
        let nonce = self.nonce.to_string();
        sub.sent = Some(entry.version.clone());
        sub.nonce = nonce.clone();
        let resp = DiscoveryResponse {
            r#type: t as i32,
            version: entry.version.clone(),
            nonce,
            resources: Some(snap.for_group(&resources, &group)),
        };
        self.out.send(Ok(resp)).await.map_err(|_| Closed)
    }
}

/// The shared counter part of a version ("42" or, for limits, "42.<as_of>").
fn counter(version: &str) -> (u64, u64) {
    let mut parts = version.split('.');
    let n = |p: Option<&str>| p.and_then(|x| x.parse().ok()).unwrap_or(0);
    (n(parts.next()), n(parts.next()))
}

/// The node's side of the stream is gone.
struct Closed;

async fn register(
    pool: &PgPool,
    node: &Node,
    replica: &str,
) -> Result<chrono::DateTime<chrono::Utc>, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO dataplanes (node_id, fleet_group, software_version, address, labels,
                                 acked_versions, connected_since, last_seen, control_plane)
         VALUES ($1, $2, $3, $4, $5, '{}', now(), now(), $6)
         ON CONFLICT (node_id) DO UPDATE SET
             fleet_group = EXCLUDED.fleet_group,
             software_version = EXCLUDED.software_version,
             address = EXCLUDED.address,
             labels = EXCLUDED.labels,
             connected_since = now(),
             last_seen = now(),
             control_plane = EXCLUDED.control_plane
         RETURNING connected_since",
    )
    .bind(&node.id)
    .bind(&node.group)
    .bind(&node.software_version)
    .bind(&node.address)
    .bind(serde_json::to_value(&node.labels).unwrap_or_default())
    .bind(replica)
    .fetch_one(pool)
    .await
}

async fn record_ack(pool: &PgPool, node: &str, t: ResourceType, version: &str) {
    let r = sqlx::query(
        "UPDATE dataplanes
         SET acked_versions = jsonb_set(acked_versions, ARRAY[$2::text], to_jsonb($3::text)),
             last_seen = now(),
             -- A later ACK of the type that was refused means the problem is gone.
             last_nack = CASE WHEN last_nack LIKE $2 || ':%' THEN NULL ELSE last_nack END
         WHERE node_id = $1",
    )
    .bind(node)
    .bind(type_name(t))
    .bind(version)
    .execute(pool)
    .await;
    if let Err(e) = r {
        tracing::warn!(node, error = %e, "recording an ACK failed");
    }
}

async fn record_nack(pool: &PgPool, node: &str, t: ResourceType, code: &str, message: &str) {
    let r = sqlx::query(
        "UPDATE dataplanes SET last_nack = $2, last_nack_at = now(), last_seen = now()
         WHERE node_id = $1",
    )
    .bind(node)
    .bind(format!("{}: {code}: {message}", type_name(t)))
    .execute(pool)
    .await;
    if let Err(e) = r {
        tracing::warn!(node, error = %e, "recording a NACK failed");
    }
}
