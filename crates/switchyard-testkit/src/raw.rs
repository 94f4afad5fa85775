//! Raw WebSocket connections: they send exactly what a test tells them to,
//! including what no well-behaved client would.

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, WebSocket, WebSocketError};
use http_body_util::Empty;
use hyper::Request;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use tokio::net::TcpStream;

pub type RawSocket = WebSocket<TokioIo<Upgraded>>;

/// Opens a WebSocket to `/ws`, offering `subprotocol` if given. Nothing is
/// automatic: pings are not answered and closes are not echoed.
pub async fn connect(addr: SocketAddr, subprotocol: Option<&str>) -> Result<RawSocket, WebSocketError> {
    match subprotocol {
        Some(p) => connect_with(addr, &[("sec-websocket-protocol", p)]).await,
        None => connect_with(addr, &[]).await,
    }
}

/// Opens a WebSocket to `/ws` with extra request headers (`origin`, ...).
pub async fn connect_with(addr: SocketAddr, headers: &[(&str, &str)]) -> Result<RawSocket, WebSocketError> {
    let stream = TcpStream::connect(addr).await?;
    let mut request = Request::get("/ws")
        .header("host", addr.to_string())
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header("sec-websocket-key", fastwebsockets::handshake::generate_key())
        .header("sec-websocket-version", "13");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Empty::<Bytes>::new()).expect("request");
    let (mut ws, _) = fastwebsockets::handshake::client(&hyper_util::rt::TokioExecutor::new(), request, stream).await?;
    ws.set_auto_close(false);
    ws.set_auto_pong(false);
    Ok(ws)
}

/// What the server did, seen from a raw socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A data frame's payload (text or binary).
    Message(Vec<u8>),
    Ping,
    /// A close frame's code (None: empty close frame) and reason.
    Close(Option<u16>, String),
    /// The socket ended without a close frame.
    Dropped,
}

/// Reads the next thing the server sends.
pub async fn next(ws: &mut RawSocket) -> Seen {
    match ws.read_frame().await {
        Ok(frame) => match frame.opcode {
            OpCode::Close => {
                let p: &[u8] = &frame.payload;
                if p.len() >= 2 {
                    Seen::Close(Some(u16::from_be_bytes([p[0], p[1]])), String::from_utf8_lossy(&p[2..]).into_owned())
                } else {
                    Seen::Close(None, String::new())
                }
            }
            OpCode::Ping => Seen::Ping,
            _ => Seen::Message(frame.payload.to_vec()),
        },
        Err(_) => Seen::Dropped,
    }
}

/// Reads until the close frame and returns its code, collecting the text
/// messages seen on the way.
pub async fn until_close(ws: &mut RawSocket) -> (Option<u16>, Vec<String>) {
    let mut messages = Vec::new();
    loop {
        match next(ws).await {
            Seen::Message(m) => messages.push(String::from_utf8_lossy(&m).into_owned()),
            Seen::Ping => {}
            Seen::Close(code, _) => return (code, messages),
            Seen::Dropped => return (None, messages),
        }
    }
}

/// Writes `opcode` (with any RSV bits) + `payload` as one masked frame straight onto the
/// socket, bypassing the WebSocket library's own state (it refuses to read
/// anything but a close after it has sent one).
pub async fn write_unchecked(ws: RawSocket, fin: bool, opcode: u8, payload: &[u8]) -> std::io::Result<RawSocket> {
    use tokio::io::AsyncWriteExt as _;
    let mut io = ws.into_inner();
    let mut frame = vec![(u8::from(fin) << 7) | opcode];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= usize::from(u16::MAX) => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    // An all-zero masking key: masked as RFC 6455 asks, payload unchanged.
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(payload);
    io.write_all(&frame).await?;
    let mut ws = WebSocket::after_handshake(io, fastwebsockets::Role::Client);
    ws.set_auto_close(false);
    ws.set_auto_pong(false);
    Ok(ws)
}

/// Sends a text frame.
pub async fn send_text(ws: &mut RawSocket, text: &str) -> Result<(), WebSocketError> {
    ws.write_frame(Frame::text(fastwebsockets::Payload::Owned(text.as_bytes().to_vec()))).await
}
