//! Plain HTTP for tests: one GET per connection, and Prometheus text.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use tokio::net::TcpStream;

/// `GET path` on `addr`: the status and the body.
pub async fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    request(addr, Request::get(path).header("host", addr.to_string()).body(Empty::<Bytes>::new()).expect("request"))
        .await
}

/// Sends one request on a fresh connection.
pub async fn request<B>(addr: SocketAddr, request: Request<B>) -> std::io::Result<(u16, String)>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(std::io::Error::other)?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.map_err(std::io::Error::other)?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// `POST path` of the HTTP API on `addr` with `Authorization: apikey <key>`
/// and a JSON body: the status and the parsed answer.
pub async fn api(addr: SocketAddr, key: &str, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let request = Request::post(path)
        .header("host", addr.to_string())
        .header("authorization", format!("apikey {key}"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let (status, text) = self::request(addr, request).await.expect("the API answers");
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} answered {text}: {e}")))
}

/// The value of the sample `name{labels}` in Prometheus text, where `labels`
/// is the exact label set as rendered (`code="4008"`), or empty for none.
/// Absent samples read as 0, as counters that never moved are not rendered.
pub fn sample(metrics: &str, name: &str, labels: &str) -> f64 {
    let series = if labels.is_empty() { name.to_owned() } else { format!("{name}{{{labels}}}") };
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == series).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_samples() {
        let text = "# HELP x y\nswitchyard_connections 3\nswitchyard_connections_closed_total{code=\"4008\"} 2\n";
        assert_eq!(super::sample(text, "switchyard_connections", ""), 3.0);
        assert_eq!(super::sample(text, "switchyard_connections_closed_total", "code=\"4008\""), 2.0);
        assert_eq!(super::sample(text, "switchyard_connections_closed_total", "code=\"1000\""), 0.0);
    }
}
