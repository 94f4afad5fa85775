//! The Autobahn testsuite's cases against the gateway's WebSocket code,
//! through the `/echo` endpoint that `testing.echo` turns on: the same frame
//! reading, reassembly, limits, close handling and permessage-deflate as
//! `/ws`. Run by kosoku, which executes Autobahn's own case files (through
//! `scripts/autobahn.py`, which corrects how kosoku hands the compression
//! cases their echoes).
//!
//! Sections 1 to 7, 9 and 10 run whole (there is no section 8); of the
//! compression sections 12 and 13, every data and parameter set with
//! messages up to 256 bytes and fragmented ones up to 16 KiB. `scripts/autobahn.sh` runs
//! every case of 12 and 13 (docs/security.md has the result).

use std::path::{Path, PathBuf};
use switchyard_testkit::{TestNode, test_config};

/// Runs `cases` (kosoku's `-i` patterns) and checks Autobahn's verdict on
/// each; at least `at_least` must run.
async fn run_cases(cases: &[String], at_least: usize) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap();
    let python = std::env::var_os("SWITCHYARD_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target/pyenv/bin/python"));
    assert!(python.exists(), "{} is missing: run scripts/test.sh, which installs kosoku", python.display());

    let mut config = test_config();
    config.testing.echo = true;
    config.client.compression = true;
    // Section 9 sends messages of up to 16 MiB.
    config.client.max_message_size = 20 << 20;
    config.client.max_queue_bytes = 64 << 20;
    config.client.max_reply_bytes = 64 << 20;
    let node = TestNode::start(config).await;
    let report = std::env::temp_dir().join(format!("switchyard-autobahn-{}-{}", std::process::id(), cases[0]));
    let mut command = tokio::process::Command::new(&python);
    command.arg(repo.join("scripts/autobahn.py")).arg(format!("ws://{}/echo", node.addr));
    command.arg("-o").arg(&report).kill_on_drop(true);
    for case in cases {
        command.args(["-i", case]);
    }
    let output = tokio::time::timeout(std::time::Duration::from_secs(300), command.output()).await.unwrap().unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));

    // Read the report, not only the exit code.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.join("index.json")).unwrap_or_default()).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&report);
    let ran = index.as_object().and_then(|agents| agents.values().next()).and_then(|c| c.as_object()).cloned();
    let ran = ran.unwrap_or_else(|| panic!("no report:\n{log}"));
    assert!(ran.len() >= at_least, "only {} cases ran:\n{log}", ran.len());
    let failed: Vec<String> = ran
        .iter()
        .filter(|(_, v)| !matches!(v["behavior"].as_str(), Some("OK" | "NON-STRICT" | "INFORMATIONAL")))
        .map(|(k, v)| format!("{k}: {} / {}", v["behavior"], v["behaviorClose"]))
        .collect();
    assert!(failed.is_empty(), "cases failed: {failed:?}\n{log}");
    assert!(output.status.success(), "{log}");
}

#[tokio::test]
async fn every_autobahn_case_of_sections_1_to_10_passes() {
    let sections: Vec<String> =
        ["1", "2", "3", "4", "5", "6", "7", "9", "10"].iter().map(|s| format!("{s}.*")).collect();
    run_cases(&sections, 291).await;
}

#[tokio::test]
async fn the_compression_cases_pass() {
    // Five data sets (12.1-12.5) with the default offer, and the seven
    // parameter sets of 13 (context takeover, window bits, several offers):
    // messages of 16, 64 and 256 bytes, and of 8 and 16 KiB in 256-byte
    // fragments.
    let mut cases = Vec::new();
    for group in (1..=5).map(|n| format!("12.{n}")).chain((1..=7).map(|n| format!("13.{n}"))) {
        cases.extend([1, 2, 3, 11, 12].map(|n| format!("{group}.{n}")));
    }
    run_cases(&cases, 60).await;
}
