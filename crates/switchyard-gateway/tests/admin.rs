//! The admin page's guard: off without a password, on the internal
//! listener only (unless `admin.public`), a session cookie for every JSON
//! request, and wrong passwords rate limited. The page itself is tested in
//! Chromium (clients/js/test/browser/admin.test.ts).

use bytes::Bytes;
use http_body_util::Full;
use switchyard_testkit::http::{get, request};
use switchyard_testkit::{TestNode, test_config};

async fn login(addr: std::net::SocketAddr, password: &str) -> (u16, Option<String>) {
    let body = serde_json::json!({"password": password}).to_string();
    let req = hyper::Request::post("/admin/login")
        .header("host", addr.to_string())
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let response = sender.send_request(req).await.unwrap();
    let cookie = response.headers().get("set-cookie").map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), cookie)
}

#[tokio::test]
async fn the_admin_page_is_guarded() {
    // Off without a password.
    let node = TestNode::start(test_config()).await;
    assert_eq!(get(node.addr, "/admin").await.unwrap().0, 404);

    let mut config = test_config();
    config.admin.password = Some("pw".into());
    config.internal_listen = Some("127.0.0.1:0".parse().unwrap());
    let node = TestNode::start(config).await;
    let internal = node.internal_addr.unwrap();
    assert_eq!(get(node.addr, "/admin").await.unwrap().0, 404, "not on the public listener");
    let (status, page) = get(internal, "/admin").await.unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("<title>switchyard admin</title>"));
    assert_eq!(get(internal, "/admin/state").await.unwrap().0, 401);

    let (status, cookie) = login(internal, "pw").await;
    assert_eq!(status, 200);
    let cookie = cookie.expect("a session cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_owned();
    let req = hyper::Request::get("/admin/state")
        .header("host", internal.to_string())
        .header("cookie", session)
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let (status, state) = request(internal, req).await.unwrap();
    assert_eq!(status, 200, "{state}");
    assert!(state.contains(&node.node.name));

    // Wrong passwords: the fifth within a minute locks this address's
    // login, right or wrong.
    for _ in 0..5 {
        assert_eq!(login(internal, "guess").await.0, 401);
    }
    assert_eq!(login(internal, "pw").await.0, 429);
}
