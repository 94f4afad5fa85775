//! The deployment files (deploy/, k8s/) are checked by deploy/check.py:
//! yamllint, hadolint, compose references, Kubernetes schemas, alert rules
//! and dashboard queries against the exported metrics.

use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn deployment_files_pass_their_checks() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap();
    let python = std::env::var_os("SWITCHYARD_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target/pyenv/bin/python"));
    assert!(python.exists(), "{} is missing: run scripts/test.sh, which installs it", python.display());
    let output = Command::new(&python).arg(repo.join("deploy/check.py")).output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{report}");
    assert!(report.contains("deploy: all checks passed"), "{report}");
}

#[test]
fn the_shipped_node_configs_are_valid() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for config in ["deploy/switchyard.toml", "k8s/base/switchyard.toml", "k8s/overlays/production/switchyard.toml"] {
        let output = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["config", "check"])
            .arg(repo.join(config))
            .env_remove("SWITCHYARD_CONFIG")
            .output()
            .unwrap();
        assert!(output.status.success(), "{config}: {}", String::from_utf8_lossy(&output.stderr));
    }
}
