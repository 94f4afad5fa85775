//! The backend proxy against a real HTTP backend process
//! (`tests/fixtures/backend.py`): connect by cookie, refresh, subscribe,
//! publish and RPC; a backend that is slow, answers garbage, fails, is
//! overloaded or killed; the circuit opening and closing again; TLS.

use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use switchyard_client::{Client, ClientError, Encoding, Options};
use switchyard_core::config::{Config, NamespaceConfig};
use switchyard_testkit::http::sample;
use switchyard_testkit::raw::{self, RawSocket, Seen};
use switchyard_testkit::sse::SseStream;
use switchyard_testkit::{TestNode, test_config, within};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The backend script as a child process, killed when dropped.
struct Backend {
    child: Child,
    port: u16,
    scheme: &'static str,
}

impl Backend {
    async fn start(args: &[&str]) -> Backend {
        let python = std::env::var_os("SWITCHYARD_TEST_PYTHON").map_or_else(|| PathBuf::from("python3"), PathBuf::from);
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/backend.py");
        let mut child = Command::new(python)
            .arg(script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the backend (python3)");
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let line = within("the backend's port", lines.next_line()).await.unwrap().expect("the backend started");
        let port = line.strip_prefix("PORT ").and_then(|p| p.parse().ok()).expect("PORT <n>");
        let scheme = if args.contains(&"--tls") { "https" } else { "http" };
        Backend { child, port, scheme }
    }

    fn url(&self, path: &str) -> String {
        format!("{}://127.0.0.1:{}{path}", self.scheme, self.port)
    }

    async fn post(&self, path: &str, body: Value) -> String {
        let request = hyper::Request::post(path)
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body.to_string())))
            .unwrap();
        let addr = ([127, 0, 0, 1], self.port).into();
        switchyard_testkit::http::request(addr, request).await.expect("the backend answers").1
    }

    async fn set_mode(&self, mode: &str) {
        self.post("/mode", json!({"mode": mode})).await;
    }

    /// The proxy requests the backend received, oldest first.
    async fn seen(&self, path: &str) -> Vec<Value> {
        let addr = ([127, 0, 0, 1], self.port).into();
        let (_, text) = switchyard_testkit::http::get(addr, "/seen").await.expect("GET /seen");
        let all: Vec<Value> = serde_json::from_str(&text).unwrap();
        all.into_iter().filter(|r| r["path"] == path).collect()
    }

    fn kill(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A node whose namespace `rooms` asks the backend about subscribes and
/// publishes, with the RPC proxy, and the connect and refresh proxies
/// where `connect`.
fn config(backend: &Backend, connect: bool) -> Config {
    let mut config = test_config();
    if connect {
        config.proxy.connect.url = Some(backend.url("/connect"));
        config.proxy.refresh.url = Some(backend.url("/refresh"));
    }
    config.proxy.subscribe.url = Some(backend.url("/subscribe"));
    config.proxy.publish.url = Some(backend.url("/publish"));
    config.proxy.rpc.url = Some(backend.url("/rpc"));
    let rooms = NamespaceConfig { proxy_subscribe: true, proxy_publish: true, ..Default::default() };
    config.namespaces.insert("rooms".into(), rooms);
    config.namespaces.insert("news".into(), NamespaceConfig::default());
    config
}

/// The next JSON message on a raw socket, skipping pings.
async fn next_json(ws: &mut RawSocket) -> Value {
    within("a message", async {
        loop {
            match raw::next(ws).await {
                Seen::Message(m) => return serde_json::from_slice(&m).unwrap(),
                Seen::Ping => continue,
                other => panic!("expected a message, got {other:?}"),
            }
        }
    })
    .await
}

async fn browser(node: &TestNode, cookie: &str) -> RawSocket {
    let headers = [("cookie", cookie), ("x-forwarded-for", "203.0.113.7"), ("user-agent", "test-browser")];
    raw::connect_with(node.addr, &headers).await.unwrap()
}

fn server_error(result: Result<impl std::fmt::Debug, ClientError>) -> (u32, String) {
    match result {
        Err(ClientError::Server(e)) => (e.code, e.message),
        other => panic!("expected an error reply, got {other:?}"),
    }
}

#[tokio::test]
async fn a_cookie_names_the_user_through_the_connect_proxy() {
    let backend = Backend::start(&[]).await;
    let node = TestNode::start(config(&backend, true)).await;

    let mut ws = browser(&node, "theme=dark; session=alice-cookie").await;
    raw::send_text(&mut ws, r#"{"id": 1, "connect": {"data": {"device": "test"}}}"#).await.unwrap();
    let reply = next_json(&mut ws).await;
    let client = reply["connect"]["client"].as_str().expect("a connect reply").to_owned();
    // The backend's `subs`: a `sub` push after the reply.
    assert_eq!(next_json(&mut ws).await["sub"]["channel"], "news:alice");
    // It is alice, with the backend's info.
    raw::send_text(&mut ws, r#"{"id": 2, "publish": {"channel": "news:alice", "data": {"n": 1}}}"#).await.unwrap();
    let publication = within("its publication", async {
        loop {
            let frame = next_json(&mut ws).await;
            if frame.get("pub").is_some() {
                return frame["pub"].clone();
            }
        }
    })
    .await;
    assert_eq!(publication["info"], json!({"client": client, "user": "alice", "info": {"name": "Alice"}}));

    // The backend saw the cookie and the chosen headers, the data, and who asks.
    let request = backend.seen("/connect").await.remove(0);
    assert_eq!(request["headers"]["cookie"], "theme=dark; session=alice-cookie");
    assert_eq!(request["headers"]["x-forwarded-for"], "203.0.113.7");
    assert_eq!(request["headers"]["user-agent"], "test-browser");
    assert!(request["headers"].get("sec-websocket-key").is_none(), "only the chosen headers go");
    let body = &request["body"];
    assert_eq!(body["data"], json!({"device": "test"}));
    assert_eq!((body["client"].as_str(), body["user"].as_str()), (Some(client.as_str()), Some("")));
    assert_eq!((body["transport"].as_str(), body["encoding"].as_str()), (Some("websocket"), Some("json")));
    assert_eq!(body["node"].as_str(), Some(node.node.name.as_str()));
    assert_eq!(body["request_id"], request["headers"]["x-request-id"]);

    // A wrong cookie: the backend's error, then 4003.
    let mut ws = browser(&node, "session=stolen").await;
    raw::send_text(&mut ws, r#"{"id": 1, "connect": {}}"#).await.unwrap();
    let (code, messages) = within("the close", raw::until_close(&mut ws)).await;
    assert_eq!(code, Some(4003));
    assert!(messages[0].contains(r#""code":101"#) && messages[0].contains("unknown session"), "{messages:?}");
    // A backend's disconnect: its code, with its reason.
    let mut ws = browser(&node, "session=banned-cookie").await;
    raw::send_text(&mut ws, r#"{"id": 1, "connect": {}}"#).await.unwrap();
    let (code, messages) = within("the close", raw::until_close(&mut ws)).await;
    assert_eq!(code, Some(4003));
    assert!(messages.iter().any(|m| m.contains("banned")), "{messages:?}");

    // An SSE stream with the cookie is the same user.
    let mut stream = SseStream::open_with(node.addr, "", &[("cookie", "session=alice-cookie")]).await.unwrap();
    let connect = within("the stream's connect reply", stream.next_frame()).await.unwrap();
    assert!(connect["connect"]["client"].is_string(), "{connect}");
    let sub = within("the stream's sub push", stream.next_frame()).await.unwrap();
    assert_eq!(sub["sub"]["channel"], "news:alice");
    assert_eq!(backend.seen("/connect").await.last().unwrap()["body"]["transport"], "sse");

    let metrics = node.metrics().await;
    assert!(sample(&metrics, "switchyard_proxy_requests_total", r#"proxy="connect""#) >= 4.0);
    assert!(sample(&metrics, "switchyard_proxy_duration_seconds_count", r#"proxy="connect""#) >= 4.0);
}

#[tokio::test]
async fn the_backend_decides_subscribes_rewrites_publishes_and_answers_rpc() {
    let backend = Backend::start(&[]).await;
    let node = TestNode::start(config(&backend, false)).await;
    let mut client = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();

    client.subscribe("rooms:open-1").await.unwrap();
    let (code, message) = server_error(client.subscribe("rooms:secret").await);
    assert_eq!((code, message.as_str()), (103, "not a member of rooms:secret"));

    client.publish("rooms:open-1", r#"{"text": "hi"}"#).await.unwrap();
    let publication = within("the rewritten publication", client.next_publication()).await.unwrap();
    let data: Value = serde_json::from_slice(&publication.data).unwrap();
    assert_eq!(data, json!({"text": "hi", "checked": true}));
    let (code, message) = server_error(client.publish("rooms:open-1", r#"{"text": "forbidden"}"#).await);
    assert_eq!((code, message.as_str()), (1403, "forbidden words"));

    let answer = client.rpc("echo", r#"{"a": [1, 2]}"#).await.unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&answer).unwrap(), json!({"a": [1, 2]}));
    let whoami: Value = serde_json::from_slice(&client.rpc("whoami", "null").await.unwrap()).unwrap();
    assert_eq!(whoami["user"], "");
    assert!(whoami["client"].as_str().is_some_and(|c| c.starts_with(&node.node.name)), "{whoami}");
    assert_eq!(server_error(client.rpc("fail", "{}").await), (1404, "no such profile".to_owned()));

    // The protobuf encoding reaches the same backend.
    let proto = Client::connect(&node.ws_url(), Options::new(Encoding::Protobuf)).await.unwrap();
    let answer = proto.rpc("echo", r#"{"b": 2}"#).await.unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&answer).unwrap(), json!({"b": 2}));
    assert_eq!(backend.seen("/rpc").await.last().unwrap()["body"]["encoding"], "protobuf");
}

#[tokio::test]
async fn a_failing_backend_gives_108_and_its_circuit_opens_and_closes() {
    let mut backend = Backend::start(&[]).await;
    let mut config = config(&backend, false);
    config.proxy.rpc.timeout = Duration::from_millis(300);
    config.proxy.rpc.circuit_failures = 3;
    config.proxy.rpc.circuit_open_for = Duration::from_millis(500);
    let node = TestNode::start(config).await;
    let client = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    let mut bystander = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    bystander.subscribe("news").await.unwrap();

    // Slow (past the timeout), garbage, HTTP 500: each a 108 that says why.
    for (mode, why) in [("slow", "in time"), ("garbage", "unusable"), ("status", "HTTP 500")] {
        backend.set_mode(mode).await;
        let (code, message) = server_error(within("a reply", client.rpc("echo", "1")).await);
        assert_eq!(code, 108, "{mode}: {message}");
        assert!(message.contains(why), "{mode}: {message}");
    }
    // Three in a row: the circuit is open, and requests fail at once
    // without reaching the backend (a failed probe opens it again).
    let metrics = node.metrics().await;
    assert_eq!(sample(&metrics, "switchyard_proxy_circuit_open", r#"proxy="rpc""#), 1.0);
    assert_eq!(sample(&metrics, "switchyard_proxy_circuit_opened_total", r#"proxy="rpc""#), 1.0);
    let before = backend.seen("/rpc").await.len();
    within("a fast refusal", async {
        loop {
            let (code, message) = server_error(client.rpc("echo", "1").await);
            assert_eq!(code, 108);
            if message.contains("circuit open") {
                return;
            }
        }
    })
    .await;
    assert!(backend.seen("/rpc").await.len() < before + 10);

    // Everyone else goes on publishing and receiving meanwhile.
    bystander.publish("news", r#"{"still": "here"}"#).await.unwrap();
    within("the bystander's publication", bystander.next_publication()).await.unwrap();

    // The backend recovers: a probe closes the circuit.
    backend.set_mode("ok").await;
    within("the circuit to close", async { while client.rpc("echo", "2").await.is_err() {} }).await;
    assert_eq!(sample(&node.metrics().await, "switchyard_proxy_circuit_open", r#"proxy="rpc""#), 0.0);

    // Killed: unreachable.
    backend.kill();
    let (code, message) = server_error(within("a reply", client.rpc("echo", "3")).await);
    assert_eq!(code, 108, "{message}");
    let metrics = node.metrics().await;
    for kind in ["timeout", "malformed", "status", "circuit_open", "unavailable"] {
        let labels = format!(r#"proxy="rpc",kind="{kind}""#);
        assert!(sample(&metrics, "switchyard_proxy_errors_total", &labels) >= 1.0, "{kind}");
    }
}

#[tokio::test]
async fn requests_over_the_in_flight_bound_are_refused_at_once() {
    let backend = Backend::start(&[]).await;
    let mut config = config(&backend, false);
    config.proxy.rpc.timeout = Duration::from_secs(10);
    config.proxy.rpc.max_in_flight = 2;
    let node = TestNode::start(config).await;
    backend.set_mode("slow").await;
    let mut waiting = Vec::new();
    for _ in 0..2 {
        let client = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
        waiting.push(tokio::spawn(async move { client.rpc("echo", "1").await.map(|_| ()) }));
    }
    within("two requests at the backend", async {
        while backend.seen("/rpc").await.len() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await; // polling interval
        }
    })
    .await;
    let third = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    let (code, message) = server_error(third.rpc("echo", "1").await);
    assert_eq!((code, message.as_str()), (108, "too many requests to the backend in flight"));
    for task in waiting {
        within("the slow answers", task).await.unwrap().expect("answered once the backend woke");
    }
}

#[tokio::test]
async fn the_refresh_proxy_extends_a_connection_until_it_says_expired() {
    let backend = Backend::start(&[]).await;
    let node = TestNode::start(config(&backend, true)).await;
    let mut ws = browser(&node, "session=short-cookie").await;
    raw::send_text(&mut ws, r#"{"id": 1, "connect": {}}"#).await.unwrap();
    let reply = next_json(&mut ws).await;
    assert!(reply["connect"]["client"].is_string(), "{reply}");
    let (code, messages) = within("the connection to expire", raw::until_close(&mut ws)).await;
    assert_eq!(code, Some(4003));
    assert!(messages.iter().any(|m| m.contains("the connection expired")), "{messages:?}");
    let refreshes = backend.seen("/refresh").await;
    assert_eq!(refreshes.len(), 3, "extended twice, then expired");
    assert!(refreshes.iter().all(|r| r["body"]["user"] == "bob"));
}

#[tokio::test]
async fn a_backend_is_reached_over_tls() {
    let scratch = switchyard_testkit::scratch::ScratchDir::new("proxy-tls");
    let dir = scratch.path();
    switchyard_testkit::redis::make_certificates(dir);
    let (cert, key) = (dir.join("redis.crt"), dir.join("redis.key"));
    let backend = Backend::start(&["--tls", cert.to_str().unwrap(), key.to_str().unwrap()]).await;
    let mut config = test_config();
    config.proxy.rpc.url = Some(backend.url("/rpc"));
    config.proxy.tls_ca_file = Some(dir.join("ca.crt"));
    let node = TestNode::start(config.clone()).await;
    let client = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    assert_eq!(&client.rpc("echo", "[1]").await.unwrap()[..], b"[1]");
    // Without the CA the certificate is not trusted: 108, not a hang.
    config.proxy.tls_ca_file = None;
    let untrusting = TestNode::start(config).await;
    let client = Client::connect(&untrusting.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    assert_eq!(server_error(client.rpc("echo", "[1]").await).0, 108);
}
