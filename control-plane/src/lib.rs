//! Weir's control plane.
//!
//! - [`settings`]: its own configuration (file + `WEIR_*` environment).
//! - [`embedded_pg`]: a private Postgres cluster when none is configured (and for tests).
//! - [`database`]: pool, migrations, bootstrap rows.
//! - [`partitions`]: daily partitions of the request-log tables.
//! - [`config_snapshot`]: the versioned config read from Postgres and published on change.
//! - [`config_stream`]: the xDS-like stream data planes subscribe to.
//! - [`log_ingest`]: request-log batches in, one transaction each, ack after commit.
//! - [`provider_secrets`]: upstream secrets sealed before they reach Postgres.
//! - [`admin`]: the admin service.
//! - [`server`]: wires it all together.

pub mod admin;
pub mod config_snapshot;
pub mod config_stream;
pub mod database;
pub mod embedded_pg;
pub mod log_ingest;
pub mod partitions;
pub mod provider_secrets;
pub mod server;
pub mod settings;

pub use server::ControlPlane;
pub use settings::Settings;
