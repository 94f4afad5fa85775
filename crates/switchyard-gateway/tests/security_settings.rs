//! The security settings a deployment behind an identity provider expects:
//! `aud` and `iss` checked, keys fetched from the provider's JWKS URL and
//! rotated without a restart; request bodies trickled too slowly refused;
//! the admin page's state-changing requests from its own origin only.

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_client::{Client, ClientError, Encoding, Options};
use switchyard_testkit::http::{request, sample};
use switchyard_testkit::{TestNode, test_config, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An EC key pair made with openssl, as an encoding key and its JWK.
fn ec_key(dir: &PathBuf, name: &str, kid: &str) -> (EncodingKey, Jwk) {
    let run = |args: &[&str]| {
        assert!(Command::new("openssl").current_dir(dir).args(args).status().unwrap().success(), "{args:?}");
    };
    run(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name]);
    let key = EncodingKey::from_ec_pem(&std::fs::read(dir.join(name)).unwrap()).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some(kid.into());
    (key, jwk)
}

fn es256(key: &EncodingKey, kid: &str, claims: serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    let exp = switchyard_core::clock::unix_seconds() + 600;
    let mut all = json!({"sub": "ada", "exp": exp});
    all.as_object_mut().unwrap().extend(claims.as_object().unwrap().clone());
    encode(&header, &all, key).unwrap()
}

/// An identity provider: serves whatever key set it holds at `/jwks`, and
/// counts the requests.
struct Provider {
    addr: std::net::SocketAddr,
    keys: Arc<Mutex<Vec<Jwk>>>,
    requests: Arc<Mutex<u32>>,
    task: tokio::task::JoinHandle<()>,
}

impl Provider {
    async fn start(keys: Vec<Jwk>) -> Provider {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let keys = Arc::new(Mutex::new(keys));
        let requests = Arc::new(Mutex::new(0));
        let (served, counted) = (keys.clone(), requests.clone());
        let task = tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (served, counted) = (served.clone(), counted.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |_req| {
                        *counted.lock().unwrap() += 1;
                        let body = serde_json::to_vec(&JwkSet { keys: served.lock().unwrap().clone() }).unwrap();
                        async move { Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(body)))) }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Provider { addr, keys, requests, task }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn connect(node: &TestNode, token: &str) -> Result<Client, ClientError> {
    let client = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await?;
    client.connect_command(token).await.map(|_| client)
}

/// The error code a connect with `token` is refused with.
async fn refused(node: &TestNode, token: &str) -> Option<u32> {
    match connect(node, token).await {
        Err(ClientError::Server(e)) => Some(e.code),
        _ => None,
    }
}

#[tokio::test]
async fn keys_come_from_the_providers_jwks_url_and_rotate_without_a_restart() {
    let dir = std::env::temp_dir().join(format!("switchyard-jwks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (old_key, old_jwk) = ec_key(&dir, "old.key", "old");
    let (new_key, new_jwk) = ec_key(&dir, "new.key", "new");
    let provider = Provider::start(vec![old_jwk]).await;
    let mut config = test_config();
    config.auth.jwks_url = Some(format!("http://{}/jwks", provider.addr));
    config.auth.audience = Some("switchyard".into());
    config.auth.issuer = Some("https://idp.example".into());
    let node = TestNode::start(config).await;
    let good = json!({"aud": "switchyard", "iss": "https://idp.example"});

    connect(&node, &es256(&old_key, "old", good.clone())).await.expect("a key of the set");
    // `aud` and `iss` are checked.
    for claims in [
        json!({"aud": "another", "iss": "https://idp.example"}),
        json!({"iss": "https://idp.example"}),
        json!({"aud": "switchyard", "iss": "https://evil.example"}),
        json!({"aud": "switchyard"}),
    ] {
        assert_eq!(refused(&node, &es256(&old_key, "old", claims.clone())).await, Some(101), "{claims}");
    }
    // The provider rotates: a token with the new key's `kid` makes the node
    // fetch the set again, and the old key is gone with it.
    *provider.keys.lock().unwrap() = vec![new_jwk];
    connect(&node, &es256(&new_key, "new", good.clone())).await.expect("the rotated-in key");
    assert_eq!(refused(&node, &es256(&old_key, "old", good.clone())).await, Some(101), "the rotated-out key");
    // Unknown `kid`s do not make the node ask again and again.
    let asked = *provider.requests.lock().unwrap();
    assert_eq!(asked, 2, "fetched at start, and once for the new kid");
    for n in 0..20 {
        let _ = connect(&node, &es256(&new_key, &format!("made-up-{n}"), good.clone())).await;
    }
    assert!(*provider.requests.lock().unwrap() <= asked + 1, "refetches are rate limited");
    let metrics = node.metrics().await;
    assert!(sample(&metrics, "switchyard_jwks_fetches_total", "outcome=\"ok\"") >= 1.0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_body_trickled_too_slowly_is_refused_and_its_connection_freed() {
    let mut config = test_config();
    config.api.key = Some("k".into());
    config.limits.body_timeout = Duration::from_millis(300);
    let node = TestNode::start(config).await;
    for path in ["/api/publish", "/sse/command"] {
        let mut stream = TcpStream::connect(node.addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\nauthorization: apikey k\r\ncontent-length: 100\r\n\r\n{{",
            node.addr
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        // Nothing more comes: the node answers, then closes.
        let mut answer = Vec::new();
        within("the answer and the close", stream.read_to_end(&mut answer)).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains("did not arrive"), "{path}: {answer}");
    }
    assert_eq!(sample(&node.metrics().await, "switchyard_http_body_timeouts_total", ""), 2.0);
}

#[tokio::test]
async fn the_admin_page_acts_only_for_its_own_origin() {
    let mut config = test_config();
    config.admin.password = Some("pw".into());
    config.admin.public = true;
    let node = TestNode::start(config).await;
    let login = |origin: Option<String>| {
        let addr = node.addr;
        async move {
            let mut req = hyper::Request::post("/admin/login").header("host", addr.to_string());
            if let Some(origin) = origin {
                req = req.header("origin", origin);
            }
            let req = req.body(Full::new(Bytes::from(json!({"password": "pw"}).to_string()))).unwrap();
            request(addr, req).await.unwrap().0
        }
    };
    assert_eq!(login(Some("https://evil.example".into())).await, 403);
    assert_eq!(login(Some(format!("http://{}", node.addr))).await, 200);
    assert_eq!(login(None).await, 200);
}
