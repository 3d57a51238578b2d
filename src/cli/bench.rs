//! `arka bench`: drives a running cluster (filled in below).

use clap::Args;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The leader's Flight address.
    #[arg(long, default_value = "grpc://127.0.0.1:8815")]
    addr: String,
}

pub async fn run(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
