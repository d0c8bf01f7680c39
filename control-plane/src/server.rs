//! Assembles a running control plane: database, partitions, config hub, and the gRPC server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::Interceptor;
use tonic::{Request, Status};
use weir_proto::admin::admin_server::AdminServer;
use weir_proto::config::config_discovery_server::ConfigDiscoveryServer;
use weir_proto::logs::log_ingest_server::LogIngestServer;

use crate::admin::AdminService;
use crate::admin_http::{self, AdminHttp};
use crate::config_snapshot::ConfigHub;
use crate::config_stream::ConfigService;
use crate::database::{self, Database, DatabaseError};
use crate::log_ingest::{IngestService, LogWriter};
use crate::partitions::Partitions;
use crate::provider_secrets::SecretBox;
use crate::purge::Purger;
use crate::settings::Settings;

/// Largest log batch accepted (payloads included).
pub const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Database(#[from] DatabaseError),
    #[error("preparing the database: {0}")]
    Setup(#[from] sqlx::Error),
    #[error(transparent)]
    Secrets(#[from] crate::provider_secrets::SecretError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("admin HTTP API: {0}")]
    Http(String),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running control plane.
pub struct ControlPlane {
    /// Where gRPC is served.
    pub grpc_addr: SocketAddr,
    /// Where the admin API is served as HTTP JSON.
    pub http_addr: SocketAddr,
    /// The database pool (tests and tools read through it).
    pub pool: sqlx::PgPool,
    /// Runs this replica's purges (the schedule, and tests racing replicas).
    pub purger: Arc<Purger>,
    stop: Option<oneshot::Sender<()>>,
    stopping: tokio::sync::watch::Sender<bool>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    background: Vec<JoinHandle<()>>,
    _db: Database,
}

impl ControlPlane {
    /// Opens the database, applies migrations and starts serving.
    pub async fn start(settings: Settings) -> Result<Self, StartError> {
        let db = Database::open(settings.database_url.as_deref(), &settings.data_dir).await?;
        let pool = db.pool.clone();
        if let Some(token) = &settings.admin_token {
            database::ensure_admin_token(&pool, token).await?;
        }
        let partitions = Arc::new(Partitions::default());
        partitions.ensure_ahead(&pool).await?;
        let secrets = match (&settings.secrets_key, &db.embedded) {
            (Some(k), _) => Some(Arc::new(SecretBox::from_hex(&k.0)?)),
            (None, Some(_)) => Some(Arc::new(SecretBox::load_or_create(
                &settings.data_dir.join("secrets.key"),
            )?)),
            // An external database without a key: stored secrets are refused with a clear error.
            (None, None) => None,
        };
        let hub = ConfigHub::load(pool.clone(), secrets.clone()).await?;

        let mut background = vec![
            tokio::spawn(hub.clone().follow()),
            tokio::spawn(crate::usage_rollup::keep_folding(pool.clone())),
        ];
        {
            let (pool, partitions) = (pool.clone(), partitions.clone());
            background.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(3600));
                loop {
                    tick.tick().await;
                    if let Err(e) = partitions.ensure_ahead(&pool).await {
                        tracing::warn!(error = %e, "creating request-log partitions ahead failed");
                    }
                }
            }));
        }

        let listener = TcpListener::bind(settings.grpc_listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: settings.grpc_listen,
                source,
            })?;
        let grpc_addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: settings.grpc_listen,
            source,
        })?;
        let node_auth = NodeAuth::new(&settings.dataplane_token, &settings.group_tokens);
        let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
        let config = ConfigDiscoveryServer::with_interceptor(
            ConfigService::new(
                hub,
                pool.clone(),
                settings.replica_id.clone(),
                stopping.clone(),
            ),
            node_auth.clone(),
        );
        let ingest = tonic::service::interceptor::InterceptedService::new(
            LogIngestServer::new(IngestService::new(
                Arc::new(LogWriter::new(pool.clone(), partitions.clone())),
                stopping,
            ))
            .max_decoding_message_size(MAX_BATCH_BYTES),
            node_auth,
        );
        let purger = Arc::new(Purger::new(
            pool.clone(),
            partitions.clone(),
            settings.purge.clone(),
            settings.replica_id.clone(),
        ));
        background.push(tokio::spawn(purger.clone().keep_scheduling()));
        let admin = AdminServer::new(AdminService::new(
            pool.clone(),
            secrets,
            purger.clone(),
            settings.reconcile.clone(),
        ));
        let http = Arc::new(AdminHttp::new(admin.clone(), pool.clone()).map_err(StartError::Http)?);
        let http_tls = match &settings.tls {
            Some((cert, key)) => {
                Some(admin_http::tls_acceptor(cert, key).map_err(StartError::Tls)?)
            }
            None => None,
        };
        let (http_listener, http_addr) = admin_http::bind_listener(settings.http_listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: settings.http_listen,
                source,
            })?;
        background.push(tokio::spawn(admin_http::serve(
            http_listener,
            http,
            http_tls,
        )));
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let mut builder = tonic::transport::Server::builder();
        if let Some((cert, key)) = &settings.tls {
            let read = |p: &std::path::PathBuf| {
                std::fs::read(p)
                    .map_err(|e| StartError::Tls(format!("reading {}: {e}", p.display())))
            };
            let identity = tonic::transport::Identity::from_pem(read(cert)?, read(key)?);
            builder = builder
                .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
                .map_err(|e| StartError::Tls(e.to_string()))?;
        }
        let server = tokio::spawn(
            builder
                .http2_keepalive_interval(Some(Duration::from_secs(20)))
                .add_service(config)
                .add_service(ingest)
                .add_service(admin)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stop_rx.await;
                }),
        );
        tracing::info!(%grpc_addr, %http_addr, replica = %settings.replica_id, "control plane serving");
        Ok(ControlPlane {
            grpc_addr,
            http_addr,
            pool,
            purger,
            stop: Some(stop_tx),
            stopping: stopping_tx,
            server,
            background,
            _db: db,
        })
    }

    /// Stops serving, then closes the database (stopping the embedded cluster, if any).
    pub async fn shutdown(mut self) {
        // End the node streams first, so nodes move to another replica at once.
        let _ = self.stopping.send(true);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        for b in &self.background {
            b.abort();
        }
        // Open streams end with the server; give them a moment, then move on.
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.server).await;
        self.server.abort();
        self.pool.close().await;
    }
}

/// Which groups a node's token admits; set by [`NodeAuth`] on every node request.
#[derive(Debug, Clone)]
pub enum NodeScope {
    /// The fleet-wide token: any group.
    AnyGroup,
    /// A group's bootstrap token: that group only.
    Group(String),
}

/// Checks the data-plane token on the config and ingest streams.
#[derive(Clone)]
struct NodeAuth {
    fleet: [u8; 32],
    groups: Arc<Vec<([u8; 32], String)>>,
}

impl NodeAuth {
    fn new(token: &str, group_tokens: &std::collections::BTreeMap<String, String>) -> Self {
        NodeAuth {
            fleet: weir_proto::api_key::hash(token),
            groups: Arc::new(
                group_tokens
                    .iter()
                    .map(|(g, t)| (weir_proto::api_key::hash(t), g.clone()))
                    .collect(),
            ),
        }
    }
}

impl Interceptor for NodeAuth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let presented = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("missing data-plane token"))?;
        // Comparing digests keeps the comparison's timing independent of the secret.
        let h = weir_proto::api_key::hash(presented);
        let scope = if h == self.fleet {
            NodeScope::AnyGroup
        } else if let Some((_, g)) = self.groups.iter().find(|(t, _)| *t == h) {
            NodeScope::Group(g.clone())
        } else {
            return Err(Status::unauthenticated("invalid data-plane token"));
        };
        req.extensions_mut().insert(scope);
        Ok(req)
    }
}
