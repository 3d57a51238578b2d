//! Interop with plain pyarrow: the README quick start and the DoPut / GetFlightInfo / DoGet /
//! ListFlights / drop flow, run by pytest against a cluster started with `arka dev`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use arka::client::Client;
use serde_json::Value;
use tempfile::TempDir;

/// A base port whose Flight, Raft and gossip ports (P.., P+100.., P+200..) are free now, all
/// below the kernel's ephemeral range (32768 and up) so no outgoing connection takes them.
fn free_base_port(nodes: u16) -> u16 {
    let seed = std::process::id() as u16;
    (0..500u16)
        .map(|i| 10_000 + (seed.wrapping_add(i * 7) % 22_000))
        .find(|base| {
            (0..nodes).all(|i| {
                [0, 100, 200].iter().all(|off| {
                    let port = base + off + i;
                    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
                        && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
                })
            })
        })
        .expect("a free port range")
}

struct Dev(Child);

impl Drop for Dev {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child: SIGTERM lets `arka dev` stop its nodes cleanly.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

async fn wait_for_leader(addr: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(client) = Client::connect(addr).await {
            if let Ok(status) = client.action("status", &Value::Null).await {
                if status["role"] == "leader" {
                    return;
                }
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "arka dev did not elect node 1"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pyarrow_quickstart_and_flows_against_arka_dev() {
    let dir = TempDir::new().expect("tempdir");
    let base = free_base_port(3);
    let dev = Dev(Command::new(env!("CARGO_BIN_EXE_arka"))
        .args([
            "dev",
            "--nodes",
            "3",
            "--base-port",
            &base.to_string(),
            "--data-dir",
        ])
        .arg(dir.path().join("dev"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("start arka dev"));
    let addrs: Vec<String> = (0..3)
        .map(|i| format!("grpc://127.0.0.1:{}", base + i))
        .collect();
    wait_for_leader(&addrs[0]).await;

    let tests = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python");
    let output = Command::new("python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", tests])
        .env("ARKA_ADDRS", addrs.join(","))
        .env("ARKA_ADDR", &addrs[0])
        .output()
        .expect("run pytest (pip install pyarrow pytest)");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{report}");
    assert!(
        output.status.success(),
        "pyarrow interop tests failed:\n{report}"
    );
    drop(dev);
}
