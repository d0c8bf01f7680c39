//! Weir's wire contract and the rules both planes apply.
//!
//! - [`config`], [`logs`], [`admin`]: the generated gRPC packages (`weir.*.v1`).
//! - [`api_key`]: the gateway key format and its hash (both planes hash the same way).
//! - [`grpc_tls`]: client TLS for control-plane gRPC.
//! - [`pricing`]: exact integer prices and costs (the ledger and budgets use the same math).
//! - [`redaction_path`]: admin redaction paths: syntax and application.
//! - [`request_id`]: what a caller-supplied request id may look like.
//! - [`validate`]: config rules checked by the control plane before pushing and by the data plane
//!   before ACKing.

pub mod api_key;
pub mod grpc_tls;
pub mod health;
pub mod pricing;
pub mod redaction_path;
pub mod request_id;
pub mod sink_presets;
pub mod validate;

/// The config stream (`weir.config.v1`).
pub mod config {
    tonic::include_proto!("weir.config.v1");
}

/// Request-log ingest (`weir.logs.v1`).
pub mod logs {
    tonic::include_proto!("weir.logs.v1");
}

/// The admin service (`weir.admin.v1`).
pub mod admin {
    tonic::include_proto!("weir.admin.v1");
}

/// Every Weir `.proto` file (and its imports) as an encoded `FileDescriptorSet`, custom options
/// included: the admin service's HTTP routes are its methods' `google.api.http` options.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/weir_descriptor.bin"));
