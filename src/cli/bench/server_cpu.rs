//! What the servers spent on a run: the user + system CPU time of every node process (from
//! `/proc`, when the nodes run on this machine) and how often the Raft term moved.

use std::time::Duration;

use crate::client::{Client, ConnectOptions};

/// The cluster's node processes on this machine.
pub struct NodeProcs {
    pids: Vec<u32>,
}

fn status_of(status: &serde_json::Value, key: &str) -> Option<u64> {
    status[key].as_u64()
}

/// The node process `pid` if it is an arka process on this machine.
fn local_arka(pid: u32) -> Option<u32> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    String::from_utf8_lossy(&cmdline)
        .contains("arka")
        .then_some(pid)
}

impl NodeProcs {
    /// Asks every member for its pid; `None` unless all of them run here.
    pub async fn discover(leader: &Client, options: &ConnectOptions) -> Option<Self> {
        let status = leader
            .action("status", &serde_json::Value::Null)
            .await
            .ok()?;
        let mut pids = Vec::new();
        for member in status["members"].as_array()? {
            let location = member["flight_location"].as_str()?;
            let client = Client::connect_with(location, options).await.ok()?;
            let status = client
                .action("status", &serde_json::Value::Null)
                .await
                .ok()?;
            pids.push(local_arka(u32::try_from(status_of(&status, "pid")?).ok()?)?);
        }
        (!pids.is_empty()).then_some(Self { pids })
    }

    /// User + system CPU time of all node processes so far.
    pub fn cpu(&self) -> Option<Duration> {
        // SAFETY: sysconf has no preconditions.
        let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let ticks_per_sec = u64::try_from(ticks_per_sec).ok().filter(|t| *t > 0)?;
        let mut ticks = 0;
        for pid in &self.pids {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the command name, which may hold spaces: utime and stime are the
            // 12th and 13th of them.
            let (_, rest) = stat.rsplit_once(')')?;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            ticks += fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        }
        Some(Duration::from_micros(ticks * 1_000_000 / ticks_per_sec))
    }
}

/// The leader's current Raft term.
pub async fn term(leader: &Client) -> Option<u64> {
    let status = leader
        .action("status", &serde_json::Value::Null)
        .await
        .ok()?;
    status_of(&status, "term")
}
