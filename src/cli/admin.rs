//! `arka admin --addr URL ACTION [JSON]`: a thin DoAction client.

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::Action;
use clap::Args;
use std::io::Write;

use futures::TryStreamExt;

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The node to ask, e.g. grpc://127.0.0.1:8815.
    #[arg(long, default_value = "grpc://127.0.0.1:8815", env = "ARKA_ADDR")]
    addr: String,
    /// The action, e.g. status, cluster_status, list_tables, create_table, drop_table.
    action: String,
    /// The action's JSON body.
    body: Option<String>,
}

pub async fn connect(addr: &str) -> anyhow::Result<FlightServiceClient<tonic::transport::Channel>> {
    let channel = tonic::transport::Endpoint::from_shared(crate::client::endpoint_uri(addr))?
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to {addr}: {e}"))?;
    Ok(FlightServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024))
}

pub async fn run(args: AdminArgs) -> anyhow::Result<i32> {
    let mut client = connect(&args.addr).await?;
    let body = args.body.unwrap_or_default();
    let request = Action::new(args.action.clone(), body);
    let results = match client.do_action(request).await {
        Ok(response) => response.into_inner().try_collect::<Vec<_>>().await,
        Err(status) => Err(status),
    };
    let results = match results {
        Ok(results) => results,
        Err(status) => {
            eprintln!("{}: {:?}: {}", args.action, status.code(), status.message());
            if let Some(leader) = status.metadata().get(crate::error::LEADER_TRAILER) {
                eprintln!("leader: {}", leader.to_str().unwrap_or("?"));
            }
            return Ok(2);
        }
    };
    let mut out = std::io::stdout().lock();
    for result in results {
        let text = match serde_json::from_slice::<serde_json::Value>(&result.body) {
            Ok(value) => serde_json::to_string_pretty(&value)?,
            Err(_) => String::from_utf8_lossy(&result.body).into_owned(),
        };
        // A closed pipe (`arka admin … | head`) just ends the output.
        if writeln!(out, "{text}").is_err() {
            break;
        }
    }
    Ok(0)
}
