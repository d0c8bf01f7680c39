//! Weir's control plane.
//!
//! - [`settings`]: its own configuration (file + `WEIR_*` environment).
//! - [`embedded_pg`]: a private Postgres cluster when none is configured (and for tests).
//! - [`database`]: pool, migrations, bootstrap rows.
//! - [`partitions`]: daily partitions of the request-log tables.
//! - [`config_snapshot`]: the versioned config read from Postgres and published on change.
//! - [`config_stream`]: the xDS-like stream data planes subscribe to.
//! - [`log_ingest`]: request-log batches in, one transaction each, ack after commit.
//! - [`prices`]: model price versions (rates per usage kind, tiers), stored and read back.
//! - [`provider_secrets`]: upstream secrets sealed before they reach Postgres.
//! - [`purge_policy`], [`purge`]: request-log retention rules, and purges that drop whole days.
//! - [`reconcile`]: providers' cost reports beside the ledger, per day and model.
//! - [`admin`]: the admin service.
//! - [`http_routes`], [`admin_http`], [`openapi`]: the admin service as HTTP JSON, routed by its
//!   methods' `google.api.http` options, and the OpenAPI document describing it.
//! - [`leaderboard`]: ranking and 12-hour bucketing for the leaderboard and harness usage.
//! - [`sessions`]: agent sessions read from the request logs.
//! - [`usage_rollup`]: the per-bucket usage totals those read, kept up by ingest.
//! - [`server`]: wires it all together.

pub mod admin;
pub mod admin_http;
pub mod budget_spend;
pub mod config_snapshot;
pub mod config_stream;
pub mod database;
pub mod embedded_pg;
pub mod http_routes;
pub mod leaderboard;
pub mod log_ingest;
pub mod openapi;
pub mod partitions;
pub mod pg_copy;
pub mod prices;
pub mod provider_secrets;
pub mod purge;
pub mod purge_policy;
pub mod reconcile;
pub mod server;
pub mod sessions;
pub mod settings;
pub mod usage_rollup;

pub use server::ControlPlane;
pub use settings::Settings;
