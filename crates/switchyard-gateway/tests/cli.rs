//! The `switchyard` binary's configuration handling.

use std::process::Command;

fn switchyard(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    command.args(args).env_remove("SWITCHYARD_CONFIG").env_remove("SWITCHYARD_LISTEN");
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("run switchyard");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A file in the temp dir, removed on drop.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(text: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("switchyard-cli-{}-{n}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn config_check_prints_the_effective_config() {
    let file =
        TempFile::new("listen = \"127.0.0.1:9000\"\n[namespaces.chat]\nhistory_size = 100\nhistory_ttl = \"10m\"\n");
    let (code, stdout, stderr) =
        switchyard(&["config", "check", file.path()], &[("SWITCHYARD_CLIENT__PING_INTERVAL", "5s")]);
    assert_eq!(code, 0, "{stderr}");
    let effective: toml::Value = toml::from_str(&stdout).unwrap();
    assert_eq!(effective["listen"].as_str(), Some("127.0.0.1:9000"));
    assert_eq!(effective["client"]["ping_interval"].as_str(), Some("5s"));
    assert_eq!(effective["namespaces"]["chat"]["history_size"].as_integer(), Some(100));
    assert!(effective["namespaces"].get("default").is_some());
}

#[test]
fn a_bad_config_exits_64_with_a_clear_message() {
    let file = TempFile::new("[client]\nmax_chanels = 3\n");
    let (code, _, stderr) = switchyard(&["config", "check", file.path()], &[]);
    assert_eq!(code, 64);
    assert!(stderr.contains("max_chanels"), "{stderr}");
    let (code, _, stderr) = switchyard(&["serve", "--config", file.path()], &[]);
    assert_eq!(code, 64);
    assert!(stderr.contains("max_chanels"), "{stderr}");
    let (code, _, stderr) =
        switchyard(&["serve", "--listen", "127.0.0.1:0"], &[("SWITCHYARD_CLIENT__PING_INTERVAL", "0s")]);
    assert_eq!(code, 64);
    assert!(stderr.contains("client.ping_interval"), "{stderr}");
}

#[test]
fn the_documented_examples_are_valid() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md")).unwrap();
    let examples: Vec<&str> = docs.split("```toml\n").skip(1).filter_map(|s| s.split("```").next()).collect();
    assert!(!examples.is_empty());
    for example in examples {
        let file = TempFile::new(example);
        let (code, _, stderr) = switchyard(&["config", "check", file.path()], &[]);
        assert_eq!(code, 0, "{example}\n{stderr}");
    }
}
