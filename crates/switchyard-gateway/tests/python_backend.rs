//! The raw publish path from a second language: the Python example in
//! docs/examples builds an Envelope with the generated protobuf classes and
//! PUBLISHes it; a subscriber receives it.

use std::path::{Path, PathBuf};
use std::process::Command;
use switchyard_client::{Client, Encoding, Options};
use switchyard_testkit::{RedisServer, TestNode, test_config, within};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The Python that scripts/test.sh prepared (with redis, protobuf and
/// grpcio-tools), or the one named by SWITCHYARD_TEST_PYTHON.
fn python() -> PathBuf {
    let python = std::env::var_os("SWITCHYARD_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/pyenv/bin/python"));
    assert!(python.exists(), "{} is missing: run scripts/test.sh, which installs it", python.display());
    python
}

#[tokio::test]
async fn a_python_backend_publishes_a_raw_envelope() {
    let python = python();
    let generated = std::env::temp_dir().join(format!("switchyard-pb2-{}", std::process::id()));
    std::fs::create_dir_all(&generated).unwrap();
    let status = Command::new(&python)
        .current_dir(repo())
        .args(["-m", "grpc_tools.protoc", "-I", "proto", "--python_out"])
        .arg(&generated)
        .args(["proto/switchyard/v1/client.proto", "proto/switchyard/v1/cluster.proto"])
        .status()
        .unwrap();
    assert!(status.success(), "protoc failed");

    let redis = RedisServer::start().await;
    let mut config = test_config();
    config.broker.redis_url = Some(redis.url());
    let node = TestNode::start(config).await;
    let mut subscriber = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    subscriber.subscribe("news").await.unwrap();

    let output = Command::new(&python)
        .current_dir(repo())
        .env("PYTHONPATH", &generated)
        .args(["docs/examples/publish_envelope.py", "--redis", &redis.url(), "news", r#"{"from": "python"}"#])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&generated);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "1", "one node listens");

    let p = within("the Python publication", subscriber.next_publication()).await.unwrap();
    assert_eq!(&p.data[..], br#"{"from": "python"}"#);
    assert_eq!(p.info.map(|i| i.user).as_deref(), Some("python-backend"));
}
