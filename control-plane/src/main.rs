//! `weir-control-plane`: serves the config stream, log ingest and the admin API.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use weir_control_plane::{database::Database, ControlPlane, Settings};

#[derive(Parser)]
#[command(name = "weir-control-plane", version, about)]
struct Cli {
    /// TOML settings file; WEIR_* environment variables override it.
    #[arg(long, env = "WEIR_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print the admin API's OpenAPI document (docs/openapi.json) and exit.
    Openapi,
    /// Probe a running control plane's /healthz (on WEIR_HTTP_LISTEN, plain HTTP) and exit 0
    /// when it answers 200 (for container health checks).
    Healthcheck,
}

/// mimalloc: measurably faster than the system allocator for the many small, short-lived
/// allocations of request handling (see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .init();
    let cli = Cli::parse();
    if let Some(Command::Healthcheck) = cli.command {
        let addr = std::env::var("WEIR_HTTP_LISTEN")
            .unwrap_or_else(|_| weir_control_plane::settings::DEFAULT_HTTP_LISTEN.into());
        let addr = addr
            .parse()
            .with_context(|| format!("WEIR_HTTP_LISTEN={addr:?}"))?;
        return weir_proto::health::probe(addr).map_err(anyhow::Error::msg);
    }
    if let Some(Command::Openapi) = cli.command {
        let routes = weir_control_plane::http_routes::Routes::load().map_err(anyhow::Error::msg)?;
        print!("{}", weir_control_plane::openapi::document_text(&routes));
        return Ok(());
    }
    let settings = Settings::load(cli.config.as_deref()).context("loading settings")?;
    match cli.command.unwrap_or(Command::Serve) {
        // Handled above, before settings (they need none).
        Command::Openapi | Command::Healthcheck => {}
        Command::Migrate => {
            Database::open(settings.database_url.as_deref(), &settings.data_dir).await?;
            tracing::info!("migrations applied");
        }
        Command::Serve => {
            let cp = ControlPlane::start(settings).await?;
            // Printed for scripts that start us with port 0.
            println!("weir-control-plane listening on {}", cp.grpc_addr);
            println!("weir-control-plane admin HTTP on {}", cp.http_addr);
            shutdown_signal().await;
            tracing::info!("shutting down");
            cp.shutdown().await;
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
