//! TLS termination: `wss://` and `https://` on the public listener, and a
//! certificate swapped on disk taken up without a restart.

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use switchyard_testkit::redis::make_certificates;
use switchyard_testkit::{TestNode, test_config, within};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-tls-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    make_certificates(&dir);
    dir
}

/// A TLS connection to `addr` that trusts only the CA in `ca`.
async fn tls(addr: std::net::SocketAddr, ca: &Path) -> std::io::Result<TlsStream<TcpStream>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(ca).unwrap()).unwrap();
    let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::new(config)).connect(ServerName::IpAddress(addr.ip().into()), tcp).await
}

#[tokio::test]
async fn wss_works_and_a_new_certificate_is_picked_up() {
    let first = scratch("first");
    let second = scratch("second");
    let live = scratch("live");
    for f in ["redis.crt", "redis.key"] {
        std::fs::copy(first.join(f), live.join(f)).unwrap();
    }
    let mut config = test_config();
    config.tls.cert = Some(live.join("redis.crt"));
    config.tls.key = Some(live.join("redis.key"));
    config.tls.reload_interval = Duration::from_millis(100);
    let node = TestNode::start(config).await;

    // https: health over TLS.
    let stream = tls(node.addr, &first.join("ca.crt")).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::get("/healthz").header("host", "127.0.0.1").body(Empty::<Bytes>::new()).unwrap();
    assert_eq!(sender.send_request(request).await.unwrap().status(), 200);

    // wss: a WebSocket session over TLS.
    let stream = tls(node.addr, &first.join("ca.crt")).await.unwrap();
    let request = hyper::Request::get("/ws")
        .header("host", "127.0.0.1")
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header("sec-websocket-key", fastwebsockets::handshake::generate_key())
        .header("sec-websocket-version", "13")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let (mut ws, _) =
        fastwebsockets::handshake::client(&hyper_util::rt::TokioExecutor::new(), request, stream).await.unwrap();
    ws.write_frame(fastwebsockets::Frame::text(fastwebsockets::Payload::Owned(
        br#"{"id": 1, "subscribe": {"channel": "secure"}}"#.to_vec(),
    )))
    .await
    .unwrap();
    let reply = ws.read_frame().await.unwrap();
    assert_eq!(&reply.payload[..], br#"{"id":1,"subscribe":{}}"#);

    // Plain TCP on a TLS listener gets nowhere.
    assert!(switchyard_testkit::http::get(node.addr, "/healthz").await.is_err());

    // Rotate: the second CA's certificate replaces the first on disk.
    assert!(tls(node.addr, &second.join("ca.crt")).await.is_err(), "not trusted before the swap");
    for f in ["redis.key", "redis.crt"] {
        std::fs::copy(second.join(f), live.join(f)).unwrap();
    }
    // Polls the observable event (a handshake the new CA trusts) until the deadline.
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    within("the new certificate to be served", async {
        loop {
            poll.tick().await;
            if tls(node.addr, &second.join("ca.crt")).await.is_ok() {
                return;
            }
        }
    })
    .await;
    // The connection made before the swap still works.
    ws.write_frame(fastwebsockets::Frame::text(fastwebsockets::Payload::Owned(
        br#"{"id": 2, "unsubscribe": {"channel": "secure"}}"#.to_vec(),
    )))
    .await
    .unwrap();
    assert_eq!(&ws.read_frame().await.unwrap().payload[..], br#"{"id":2,"unsubscribe":{}}"#);
    for dir in [first, second, live] {
        let _ = std::fs::remove_dir_all(dir);
    }
}
