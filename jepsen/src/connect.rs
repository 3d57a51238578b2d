//! How the harness's clients reach the cluster under test: with TLS (trusting the run's CA)
//! and signed in as the run's user. Set once when the cluster starts; every client of the
//! run (workload, consumers, nemeses, checks) connects through here.

use std::sync::OnceLock;

use arka::client::{Client, ClientError, ClusterClient, ConnectOptions, RetryPolicy};

static OPTIONS: OnceLock<ConnectOptions> = OnceLock::new();

/// Sets the run's connect options; the first call wins (one cluster per run).
pub fn set(options: ConnectOptions) {
    let _ = OPTIONS.set(options);
}

fn options() -> ConnectOptions {
    OPTIONS.get().cloned().unwrap_or_default()
}

pub async fn client(addr: &str) -> Result<Client, ClientError> {
    Client::connect_with(addr, &options()).await
}

pub async fn cluster<S: AsRef<str>>(seeds: &[S]) -> Result<ClusterClient, ClientError> {
    ClusterClient::connect_with_options(seeds, RetryPolicy::default(), options()).await
}
