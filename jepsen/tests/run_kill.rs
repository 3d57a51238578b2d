//! A short pass of the kill nemesis against a real cluster in network namespaces (needs
//! root, as CI has): the queue workload under kill -9 of a node, of the leader and of a
//! majority must end with a valid verdict, and the report must hold the history.

use std::path::PathBuf;
use std::process::Command;

/// The `arka` binary of this build, beside this test's own folder.
fn arka_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target profile dir");
    let arka = profile.join("arka");
    assert!(
        arka.exists(),
        "{} is missing: build the workspace first",
        arka.display()
    );
    arka
}

#[test]
fn the_queue_workload_under_kill_9_gives_a_valid_verdict() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test makes network namespaces: run it as root"
    );
    let out = tempfile::TempDir::new().expect("tempdir");
    let run = Command::new(env!("CARGO_BIN_EXE_arka-jepsen"))
        .args([
            "run",
            "--nemesis",
            "kill",
            "--time-limit",
            "20",
            "--seed",
            "3",
            "--arka",
        ])
        .arg(arka_binary())
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("run arka-jepsen");
    let printed =
        String::from_utf8_lossy(&run.stdout).to_string() + &String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{printed}");
    let verdict: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.path().join("verdict.json")).expect("verdict.json"),
    )
    .expect("verdict");
    assert_eq!(verdict["valid"], true, "{printed}");
    assert!(
        verdict["counts"]["sends_ok"].as_u64() > Some(100),
        "{printed}"
    );
    assert_eq!(
        verdict["counts"]["final_reads"], 6,
        "every table read from every node: {printed}"
    );
    let history = std::fs::read_to_string(out.path().join("history.jsonl")).expect("history");
    assert!(
        history.contains(r#""f":"start_fault""#),
        "the nemesis acted: {printed}"
    );
}
