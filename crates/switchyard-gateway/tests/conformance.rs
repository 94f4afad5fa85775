//! The Autobahn testsuite's cases (sections 1 to 7, 9 and 10; there is no
//! section 8, and 12 and 13 need permessage-deflate) against the gateway's
//! WebSocket code, through the `/echo` endpoint that `testing.echo` turns
//! on: the same frame reading, reassembly, limits and close handling as
//! `/ws`. Run by kosoku, which executes Autobahn's own case files.

use std::path::{Path, PathBuf};
use switchyard_testkit::{TestNode, test_config};

#[tokio::test]
async fn every_autobahn_case_passes() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap();
    let bin = std::env::var_os("SWITCHYARD_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target/pyenv/bin/python"))
        .with_file_name("kosoku");
    assert!(bin.exists(), "{} is missing: run scripts/test.sh, which installs it", bin.display());

    let mut config = test_config();
    config.testing.echo = true;
    // Section 9 sends messages of up to 16 MiB.
    config.client.max_message_size = 20 << 20;
    config.client.max_queue_bytes = 64 << 20;
    config.client.max_reply_bytes = 64 << 20;
    let node = TestNode::start(config).await;
    let report = std::env::temp_dir().join(format!("switchyard-autobahn-{}", std::process::id()));
    let mut command = tokio::process::Command::new(&bin);
    command.arg(format!("ws://{}/echo", node.addr)).arg("-o").arg(&report).kill_on_drop(true);
    for section in ["1", "2", "3", "4", "5", "6", "7", "9", "10"] {
        command.args(["-i", &format!("{section}.*")]);
    }
    let output = tokio::time::timeout(std::time::Duration::from_secs(300), command.output()).await.unwrap().unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));

    // Read the report, not only the exit code.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.join("index.json")).unwrap_or_default()).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&report);
    let cases = index.as_object().and_then(|agents| agents.values().next()).and_then(|c| c.as_object()).cloned();
    let cases = cases.unwrap_or_else(|| panic!("no report:\n{log}"));
    assert!(cases.len() > 290, "only {} cases ran:\n{log}", cases.len());
    let failed: Vec<String> = cases
        .iter()
        .filter(|(_, v)| !matches!(v["behavior"].as_str(), Some("OK" | "NON-STRICT" | "INFORMATIONAL")))
        .map(|(k, v)| format!("{k}: {} / {}", v["behavior"], v["behaviorClose"]))
        .collect();
    assert!(failed.is_empty(), "cases failed: {failed:?}\n{log}");
    assert!(output.status.success(), "{log}");
}
