//! `weir-mock-upstream`: the mock OpenAI-compatible upstream as a process, for the quickstart and
//! the benchmarks.

use std::net::SocketAddr;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut listen: SocketAddr = "127.0.0.1:18090".parse()?;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => {
                let v = args
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--listen needs an address"))?;
                listen = v.parse()?;
            }
            "-h" | "--help" => {
                println!("usage: weir-mock-upstream [--listen 127.0.0.1:18090]");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?}; see --help"),
        }
    }
    let mock = weir_e2e::mock_upstream::MockUpstream::start(listen).await?;
    println!("weir-mock-upstream listening on {}", mock.base_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
