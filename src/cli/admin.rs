//! `arka admin`: DoAction from the command line. `status` prints the member table of
//! `cluster_status` and exits 1 when the cluster has no leader or no quorum; other actions
//! print their JSON result. Cluster-wide changes go to the leader (redirects are followed);
//! node-local actions go to the node named by `--addr`.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use serde_json::Value;

use super::connect_args::ConnectArgs;
use crate::client::{Client, ClientError, ClusterClient, ConnectOptions, RetryPolicy};

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The node to ask, e.g. grpc://127.0.0.1:8815; repeat to give more seeds for actions
    /// that go to the leader.
    #[arg(
        long,
        default_value = "grpc://127.0.0.1:8815",
        env = "ARKA_ADDR",
        value_delimiter = ','
    )]
    addr: Vec<String>,
    /// Print `status` as the raw JSON of this node's `status` action instead of the table.
    #[arg(long)]
    raw: bool,
    /// The action, e.g. status, cluster_status, list_tables, create_table, add_node.
    action: String,
    /// The action's JSON body.
    body: Option<String>,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// Actions answered by the node asked, not the leader.
const NODE_LOCAL: &[&str] = &[
    "status",
    "cluster_status",
    "list_tables",
    "get_durability_status",
    "snapshot",
    "inject_fault",
];

fn print(text: &str) {
    // A closed pipe (`arka admin … | head`) just ends the output.
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

fn report_error(action: &str, e: &ClientError) -> i32 {
    eprintln!("{action}: {e}");
    if let Some(leader) = e.leader() {
        eprintln!("leader: {leader}");
    }
    2
}

pub async fn run(args: AdminArgs) -> anyhow::Result<i32> {
    let first = args.addr.first().cloned().unwrap_or_default();
    let body = args.body.unwrap_or_default().into_bytes();
    let options = args.connect.options()?;
    let result = if args.action == "status" && !args.raw {
        return status_table(&first, &options).await;
    } else if NODE_LOCAL.contains(&args.action.as_str()) {
        match Client::connect_with(&first, &options).await {
            Ok(client) => client.action_bytes(&args.action, body).await,
            Err(e) => Err(e),
        }
    } else {
        let retry = RetryPolicy {
            deadline: Duration::from_secs(10),
            ..RetryPolicy::default()
        };
        match ClusterClient::connect_with_options(&args.addr, retry, options).await {
            Ok(cluster) => cluster.action_bytes(&args.action, body).await,
            Err(e) => Err(e),
        }
    };
    match result {
        Ok(value) => {
            print(&serde_json::to_string_pretty(&value)?);
            Ok(0)
        }
        Err(e) => Ok(report_error(&args.action, &e)),
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.1}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// The member table of `cluster_status`; exit 1 when unhealthy.
async fn status_table(addr: &str, options: &ConnectOptions) -> anyhow::Result<i32> {
    let report = match Client::connect_with(addr, options).await {
        Ok(client) => client.action("cluster_status", &Value::Null).await,
        Err(e) => Err(e),
    };
    let report = match report {
        Ok(report) => report,
        Err(e) => return Ok(report_error("status", &e)),
    };
    let columns = [
        ("ID", "node_id"),
        ("ROLE", "role"),
        ("VOTER", "voter"),
        ("LIVENESS", "liveness"),
        ("APPLIED", "applied_lsn"),
        ("LAG", "lag_entries"),
        ("LAG_S", "lag_seconds"),
        ("FLIGHT", "flight_location"),
        ("RAFT", "raft_addr"),
        ("GOSSIP", "gossip_addr"),
    ];
    let members = report["members"].as_array().cloned().unwrap_or_default();
    let rows: Vec<Vec<String>> = members
        .iter()
        .map(|m| columns.iter().map(|(_, key)| cell(&m[*key])).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (title, _))| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([title.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    print(&line(columns.iter().map(|(t, _)| t.to_string()).collect()));
    for row in rows {
        print(&line(row));
    }
    let healthy = report["healthy"] == Value::Bool(true);
    let problems: Vec<String> = report["problems"]
        .as_array()
        .map(|p| p.iter().map(cell).collect())
        .unwrap_or_default();
    print(&format!(
        "leader {} term {} · {}/{} voters alive · {}",
        cell(&report["leader_id"]),
        cell(&report["term"]),
        cell(&report["voters_alive"]),
        cell(&report["voters"]),
        if healthy {
            "healthy".to_string()
        } else {
            format!("UNHEALTHY: {}", problems.join("; "))
        }
    ));
    Ok(if healthy { 0 } else { 1 })
}
