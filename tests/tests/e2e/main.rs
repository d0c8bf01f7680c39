//! End-to-end tests: real Postgres, real gRPC and HTTP over loopback, the mock upstream speaking
//! OpenAI's wire format, and real clients (the OpenAI Python SDK, `weirctl`, reqwest).

mod admin_auth;
mod admin_http;
mod budget_spend;
mod chart;
mod cost;
mod embedded_pg;
mod fleet;
mod foundation;
mod gateway;
mod identities;
mod ingest;
mod limits;
mod loss;
mod provider_secrets;
mod purge;
mod quickstart;
mod request_logs;
mod sessions;
mod telemetry;
