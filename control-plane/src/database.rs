//! Connecting to Postgres (configured or embedded), applying migrations, and the start-up rows
//! the control plane needs.

use std::path::Path;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::embedded_pg::{Durability, EmbeddedPgError, EmbeddedPostgres};

/// The migrations in `migrations/`, compiled in.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Why the database could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("embedded Postgres: {0}")]
    Embedded(#[from] EmbeddedPgError),
    #[error("connecting to Postgres: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("applying migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Query(#[from] sqlx::Error),
}

/// A ready database: the pool, and the embedded cluster when we run one.
pub struct Database {
    /// Shared connection pool.
    pub pool: PgPool,
    /// Kept alive for as long as the database is in use; stops the cluster on drop.
    pub embedded: Option<EmbeddedPostgres>,
}

/// Database name used inside the embedded cluster.
const EMBEDDED_DB: &str = "weir";

impl Database {
    /// Connects to `url`, or starts the embedded cluster under `data_dir` when `url` is `None`,
    /// and applies migrations.
    pub async fn open(url: Option<&str>, data_dir: &Path) -> Result<Self, DatabaseError> {
        let (url, embedded) = match url {
            Some(u) => (u.to_string(), None),
            None => {
                let root = data_dir.join("postgres");
                // Starting a cluster blocks (initdb can take seconds); keep it off the runtime.
                let pg = tokio::task::spawn_blocking(move || {
                    EmbeddedPostgres::start(&root, Durability::Durable)
                })
                .await
                .expect("embedded postgres start does not panic")?;
                create_database_if_missing(&pg.url("postgres"), EMBEDDED_DB).await?;
                (pg.url(EMBEDDED_DB), Some(pg))
            }
        };
        let pool = connect(&url).await?;
        MIGRATOR.run(&pool).await?;
        Ok(Database { pool, embedded })
    }
}

/// How long a pooled connection may sit idle before it is checked with a ping when next taken.
const PING_IDLE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Opens a pool sized for a control plane.
pub async fn connect(url: &str) -> Result<PgPool, DatabaseError> {
    let opts: PgConnectOptions = url.parse().map_err(DatabaseError::Connect)?;
    // Every query here reads a few index ranges, but across ~30 daily partitions the planner's
    // cost passes the JIT threshold, and compiling a plan's ~230 functions took 465 ms for a
    // query that ran in 8 ms (the session list on 10 M rows). Off for our connections only.
    let opts = opts.options([("jit", "off")]);
    PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(std::time::Duration::from_secs(5))
        // sqlx pings every idle connection before handing it out: a round trip to Postgres per
        // acquire, five per ingested batch. A connection back in the pool for under a second
        // was just working; only ones idle longer are checked.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IDLE_AFTER {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .connect_with(opts)
        .await
        .map_err(DatabaseError::Connect)
}

/// Creates `name` through the maintenance database at `admin_url` unless it exists.
pub async fn create_database_if_missing(admin_url: &str, name: &str) -> Result<(), DatabaseError> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(admin_url)
        .await
        .map_err(DatabaseError::Connect)?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&pool)
            .await?;
    if !exists {
        // Identifiers cannot be bound; `name` is ours, quoted anyway.
        sqlx::query(&format!(
            "CREATE DATABASE \"{}\"",
            name.replace('"', "\"\"")
        ))
        .execute(&pool)
        .await?;
    }
    pool.close().await;
    Ok(())
}

/// Makes sure the configured bootstrap admin token is accepted (as a platform admin).
pub async fn ensure_admin_token(pool: &PgPool, token: &str) -> Result<(), sqlx::Error> {
    let hash = weir_proto::api_key::hash(token);
    sqlx::query(
        "INSERT INTO admin_tokens (id, name, token_hash, role)
         VALUES ($1, 'bootstrap', $2, 'platform_admin')
         ON CONFLICT (token_hash) DO NOTHING",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(&hash[..])
    .execute(pool)
    .await?;
    Ok(())
}
