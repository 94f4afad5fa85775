//! Server-Sent Events streams for tests: `GET /sse` read event by event,
//! and `POST /sse/command`.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use tokio::net::TcpStream;

/// An open stream: its events' JSON, one at a time.
pub struct SseStream {
    pub status: u16,
    body: Incoming,
    buffer: Vec<u8>,
}

impl SseStream {
    /// `GET /sse?<query>` on `addr`.
    pub async fn open(addr: SocketAddr, query: &str) -> std::io::Result<SseStream> {
        Self::open_with(addr, query, &[]).await
    }

    /// `GET /sse?<query>` with extra request headers (`cookie`, ...).
    pub async fn open_with(addr: SocketAddr, query: &str, headers: &[(&str, &str)]) -> std::io::Result<SseStream> {
        let stream = TcpStream::connect(addr).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(std::io::Error::other)?;
        tokio::spawn(connection);
        let request = Request::get(format!("/sse?{query}"))
            .header("host", addr.to_string())
            .header("accept", "text/event-stream");
        let request = headers
            .iter()
            .fold(request, |request, (name, value)| request.header(*name, *value))
            .body(Empty::<Bytes>::new())
            .expect("request");
        let response = sender.send_request(request).await.map_err(std::io::Error::other)?;
        let status = response.status().as_u16();
        Ok(SseStream { status, body: response.into_body(), buffer: Vec::new() })
    }

    /// The next event's `data` (a JSON server frame); `None` when the stream ended.
    pub async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&event);
                let data: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
                if !data.is_empty() {
                    return Some(data.join("\n"));
                }
                continue; // a comment or an empty event
            }
            let frame = self.body.frame().await?.ok()?;
            if let Ok(data) = frame.into_data() {
                self.buffer.extend_from_slice(&data);
            }
        }
    }

    /// The next event that is not a `ping`.
    pub async fn next_frame(&mut self) -> Option<serde_json::Value> {
        loop {
            let text = self.next().await?;
            let value: serde_json::Value = serde_json::from_str(&text).expect("an event is one JSON frame");
            if value.get("ping").is_none() {
                return Some(value);
            }
        }
    }
}

/// `POST /sse/command` with `session` and `commands` (raw JSON frames):
/// the status and the answer.
pub async fn command(addr: SocketAddr, session: &str, commands: &[&str]) -> (u16, serde_json::Value) {
    let body = format!("{{\"session\":{},\"commands\":[{}]}}", serde_json::json!(session), commands.join(","));
    post(addr, body.into_bytes()).await
}

/// `POST /sse/command` with any body.
pub async fn post(addr: SocketAddr, body: Vec<u8>) -> (u16, serde_json::Value) {
    let request = Request::post("/sse/command")
        .header("host", addr.to_string())
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let (status, text) = crate::http::request(addr, request).await.expect("an answer");
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}
