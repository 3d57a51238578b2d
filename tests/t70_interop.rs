//! Interop with plain pyarrow: the README quick start and the DoPut / GetFlightInfo / DoGet /
//! ListFlights / drop flow, run by pytest against a cluster started with `arka dev`; and the
//! examples in `examples/` (Rust and Python) against another.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use arka::client::{Client, ConnectOptions, Credentials};
use serde_json::Value;
use tempfile::TempDir;

/// A base port whose Flight, Raft and gossip ports (P.., P+100.., P+200..) are free now, all
/// below the kernel's ephemeral range (32768 and up) so no outgoing connection takes them.
/// Candidates are spread by a hash of the process id and a per-process counter, so that tests
/// running at the same time in neighbouring processes do not pick overlapping ranges.
fn free_base_port(nodes: u16) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(2_654_435_761);
    (0..500)
        .map(|_| {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            10_000 + (seed.wrapping_add(n.wrapping_mul(40_503)) % 21_700) as u16
        })
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

/// Waits until node 1 leads; `options` is asked anew on each try (a secured dev cluster
/// writes its CA once it starts).
async fn wait_for_leader(addr: &str, options: &dyn Fn() -> ConnectOptions) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(client) = Client::connect_with(addr, &options()).await {
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

/// Starts `arka dev` with 3 nodes; returns it with the nodes' Flight locations once node 1
/// leads.
async fn start_dev(dir: &TempDir) -> (Dev, Vec<String>) {
    start_dev_with(dir, &[], &ConnectOptions::default).await
}

/// [`start_dev`] with more `arka dev` arguments, reached as `options` say.
async fn start_dev_with(
    dir: &TempDir,
    extra_args: &[&str],
    options: &dyn Fn() -> ConnectOptions,
) -> (Dev, Vec<String>) {
    let base = free_base_port(3);
    // A table the catalog refuses is held back after a second rather than a minute, so the
    // pyarrow test of it is quick.
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "tier-hold-table-after-ms = 1000\n").expect("write the node config");
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
        .args(extra_args)
        .env("RUST_LOG", "warn")
        .env("ARKA_CONFIG", &config)
        .stdin(Stdio::null())
        .spawn()
        .expect("start arka dev"));
    let scheme = if extra_args.contains(&"--tls") {
        "grpc+tls"
    } else {
        "grpc"
    };
    let addrs: Vec<String> = (0..3)
        .map(|i| format!("{scheme}://127.0.0.1:{}", base + i))
        .collect();
    wait_for_leader(&addrs[0], options).await;
    (dev, addrs)
}

/// Runs a command to completion; fails the test with its output unless it succeeds.
fn run(what: &str, command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("run {what}: {e}"));
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{what}:\n{report}");
    assert!(output.status.success(), "{what} failed:\n{report}");
    report
}

#[tokio::test(flavor = "multi_thread")]
async fn pyarrow_quickstart_and_flows_against_arka_dev() {
    let dir = TempDir::new().expect("tempdir");
    let (dev, addrs) = start_dev(&dir).await;
    let tests = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python");
    run(
        "pyarrow interop tests (pip install pyarrow pytest)",
        Command::new("python3")
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", tests])
            .env("ARKA_ADDRS", addrs.join(","))
            .env("ARKA_ADDR", &addrs[0]),
    );
    drop(dev);
}

/// `arka dev --tls --auth-file`: plain pyarrow over TLS with the generated CA, signing in
/// with the basic-auth Handshake as each role (tests/python/secured.py).
#[tokio::test(flavor = "multi_thread")]
async fn pyarrow_clients_of_a_tls_and_auth_cluster_are_held_to_their_roles() {
    let dir = TempDir::new().expect("tempdir");
    let users = [
        ("admin", "ops", "ops-pw"),
        ("writer", "ingest", "ingest-pw"),
        ("reader", "bi", "bi-pw"),
    ];
    let mut file = String::new();
    for (role, name, password) in users {
        let hash = arka::auth::hash_password(password).expect("hash");
        file.push_str(&format!(
            "[[user]]\nname = \"{name}\"\nrole = \"{role}\"\npassword-hash = \"{hash}\"\n"
        ));
    }
    let auth_file = dir.path().join("users.toml");
    std::fs::write(&auth_file, file).expect("write the auth file");
    let ca = dir.path().join("dev").join("tls").join("ca.pem");
    // The CA is made by `arka dev`: until it is there, the options have none (and fail).
    let options = || {
        let admin = Credentials::Password {
            user: "ops".into(),
            password: "ops-pw".into(),
        };
        let options = ConnectOptions::default().with_credentials(admin);
        options.clone().with_tls_ca_file(&ca).unwrap_or(options)
    };
    let auth_arg = auth_file.display().to_string();
    let (dev, addrs) = start_dev_with(&dir, &["--tls", "--auth-file", &auth_arg], &options).await;
    let users_json: serde_json::Map<String, Value> = users
        .iter()
        .map(|(role, name, password)| (role.to_string(), serde_json::json!([name, password])))
        .collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/secured.py");
    let output = run(
        "tests/python/secured.py",
        Command::new("python3")
            .arg(script)
            .arg(addrs.join(","))
            .arg(&ca)
            .env("ARKA_TEST_USERS", Value::Object(users_json).to_string()),
    );
    assert!(!output.contains("FAIL"), "{output}");
    drop(dev);
}

/// An example binary, built by `cargo test` next to the test binaries.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target profile dir");
    profile_dir.join("examples").join(name)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_examples_run_against_arka_dev() {
    let dir = TempDir::new().expect("tempdir");
    let (dev, addrs) = start_dev(&dir).await;
    // Seeds listed follower-first: the client must find the leader itself.
    let seeds = format!("{},{},{}", addrs[2], addrs[1], addrs[0]);

    let produced = run(
        "examples/producer",
        Command::new(example("producer")).args([&seeds, "examples", "500"]),
    );
    let last: u64 = produced
        .split("last lsn ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("the producer prints its last lsn");
    let consumed = run(
        "examples/consumer",
        Command::new(example("consumer")).args([&seeds, "examples", &last.to_string()]),
    );
    assert!(
        consumed.contains("read 500 batches (500 rows)"),
        "{consumed}"
    );

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/python/leader_redirect.py"
    );
    let redirected = run(
        "examples/python/leader_redirect.py",
        Command::new("python3").args([script, &addrs.join(",")]),
    );
    assert!(redirected.contains("redirected to grpc://"), "{redirected}");

    // The client patterns of docs/api.md; each checks its own outcome and fails otherwise.
    for (script, outcome) in [
        ("ack_tracker.py", "200 writes REPLICATED"),
        (
            "watermark_cleanup.py",
            "20 writes committed and dropped from the buffer",
        ),
        ("missed_acks.py", "all 12 writes in the table exactly once"),
    ] {
        let path = format!("{}/examples/python/{script}", env!("CARGO_MANIFEST_DIR"));
        let output = run(
            &format!("examples/python/{script}"),
            Command::new("python3").args([&path, &addrs[2]]),
        );
        assert!(output.contains(outcome), "{output}");
    }

    // The pyarrow load of the benchmarks (a short run): writes are acked, the stream ends
    // without an error.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/pyarrow_load.py");
    let output = run(
        "benches/pyarrow_load.py",
        Command::new("python3").args([script, "--addr", &addrs[1], "--seconds", "1"]),
    );
    let line = output.lines().next().unwrap_or_default();
    let load: Value = serde_json::from_str(line).expect("one JSON line");
    assert!(load["acked"].as_u64().unwrap_or(0) > 0, "{load}");
    assert_eq!(load["errors"], serde_json::json!([]), "{load}");
    drop(dev);
}
