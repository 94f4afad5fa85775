//! The generator's WebSockets: subscribers that time every delivery, and
//! the publisher.

use crate::Target;
use crate::stamp;
use crate::wire::Wire;
use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload, Role as WsRole, WebSocketRead, WebSocketWrite};
use hdrhistogram::Histogram;
use http_body_util::Empty;
use hyper::Request;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

type Io = Wire<TokioIo<Upgraded>>;
pub type Reader = WebSocketRead<ReadHalf<Io>>;
pub type Writer = WebSocketWrite<WriteHalf<Io>>;

/// What a subscriber asks of the server beyond its channels.
#[derive(Debug, Clone, Default)]
pub struct Asks {
    /// Offer permessage-deflate.
    pub deflate: bool,
    /// switchyard: ask for Fossil deltas.
    pub delta: bool,
    /// switchyard: this filter (JSON) on every subscription.
    pub filter: Option<String>,
    /// Count the bytes this connection reads in [`WIRE_BYTES`].
    pub counted: bool,
}

/// Bytes read by the connections opened with [`Asks::counted`].
pub static WIRE_BYTES: std::sync::LazyLock<Arc<AtomicU64>> = std::sync::LazyLock::new(Arc::default);

/// Opens a WebSocket and subscribes to `channels` (switchyard: one
/// `subscribe` each; Socket.IO: joins them as rooms; plain peers have no
/// channels and ignore them), waiting until every subscription is in place.
pub async fn connect(url: &str, target: Target, channels: &[String]) -> anyhow::Result<(Reader, Writer)> {
    connect_asking(url, target, channels, &Asks::default()).await
}

/// [`connect`], asking for compression, deltas or a filter.
pub async fn connect_asking(
    url: &str,
    target: Target,
    channels: &[String],
    asks: &Asks,
) -> anyhow::Result<(Reader, Writer)> {
    let rest = url.strip_prefix("ws://").ok_or_else(|| anyhow::anyhow!("{url}: only ws:// URLs"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let stream = TcpStream::connect(authority).await?;
    stream.set_nodelay(true)?;
    let mut request = Request::get(if path.is_empty() { "/" } else { path })
        .header("host", authority)
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header("sec-websocket-key", fastwebsockets::handshake::generate_key())
        .header("sec-websocket-version", "13");
    match target {
        Target::SwitchyardJson | Target::SwitchyardSse => {
            request = request.header("sec-websocket-protocol", "switchyard.v1.json")
        }
        Target::SwitchyardProto => request = request.header("sec-websocket-protocol", "switchyard.v1.proto"),
        Target::Plain | Target::SocketIo | Target::Pusher => {}
    }
    if asks.deflate {
        request = request.header("sec-websocket-extensions", "permessage-deflate; client_max_window_bits");
    }
    let (ws, _) = fastwebsockets::handshake::client(
        &hyper_util::rt::TokioExecutor::new(),
        request.body(Empty::<Bytes>::new())?,
        stream,
    )
    .await?;
    let counter = if asks.counted { WIRE_BYTES.clone() } else { Arc::default() };
    let (read, write) = tokio::io::split(Wire::new(ws.into_inner(), counter));
    let (mut reader, mut writer) = fastwebsockets::after_handshake_split(read, write, WsRole::Client);
    reader.set_auto_close(false);
    reader.set_auto_pong(false);
    let mut ignore = |_: Frame<'_>| async { Ok::<(), std::io::Error>(()) };
    match target {
        Target::Plain => {
            // A switchyard client has sent its connect and subscribe by
            // now; a plain peer's has said nothing. A TCP socket that has
            // sent data soon after receiving is in Linux's interactive ACK
            // mode: it holds its ACKs until more than a segment is
            // unacknowledged, and over loopback such an ACK is sent inside
            // the server's own `sendto`. One ping puts every client in the
            // same mode, so that no server is spared that kernel work.
            writer.write_frame(Frame::new(true, OpCode::Ping, None, Payload::Borrowed(b"hello"))).await?;
        }
        Target::Pusher => pusher_subscribe(&mut reader, &mut writer, channels).await?,
        Target::SocketIo => {
            socketio_join(&mut reader, &mut writer).await?;
            if !channels.is_empty() {
                // An event with an ack id (`421[...]`); the ack is `431[...]`.
                let rooms = serde_json::to_string(channels)?;
                let join = format!(r#"421["join",{rooms}]"#);
                writer.write_frame(Frame::text(Payload::Owned(join.into_bytes()))).await?;
                loop {
                    let frame = reader.read_frame(&mut ignore).await?;
                    if frame.opcode == OpCode::Text && frame.payload.starts_with(b"431") {
                        break;
                    }
                }
            }
        }
        Target::SwitchyardJson | Target::SwitchyardProto | Target::SwitchyardSse => {
            for (i, channel) in channels.iter().enumerate() {
                let id = i as u8 + 1;
                let mut extra = String::new();
                if asks.delta {
                    extra.push_str(r#","delta":"fossil""#);
                }
                if let Some(filter) = &asks.filter {
                    extra.push_str(&format!(r#","filter":{filter}"#));
                }
                let frame = match target {
                    Target::SwitchyardJson | Target::SwitchyardSse => Frame::text(Payload::Owned(
                        format!(r#"{{"id":{id},"subscribe":{{"channel":"{channel}"{extra}}}}}"#).into_bytes(),
                    )),
                    _ => Frame::binary(Payload::Owned(subscribe_protobuf(id, channel))),
                };
                writer.write_frame(frame).await?;
            }
            // Every reply is a data frame; nothing else arrives before them.
            let mut replies = 0;
            while replies < channels.len() {
                let frame = reader.read_frame(&mut ignore).await?;
                if matches!(frame.opcode, OpCode::Text | OpCode::Binary) {
                    replies += 1;
                }
            }
        }
    }
    Ok((reader, writer))
}

/// Engine.IO v4 over a WebSocket: the server opens with `0{...}`; the
/// client joins the default namespace with `40` and waits for the `40{...}`
/// that admits it. Broadcasts then arrive as `42["m",<payload>]`.
async fn socketio_join(reader: &mut Reader, writer: &mut Writer) -> anyhow::Result<()> {
    let mut ignore = |_: Frame<'_>| async { Ok::<(), std::io::Error>(()) };
    let mut joined = false;
    loop {
        let frame = reader.read_frame(&mut ignore).await?;
        match (frame.opcode, frame.payload.first()) {
            (OpCode::Text, Some(b'0')) if !joined => {
                writer.write_frame(Frame::text(Payload::Borrowed(b"40"))).await?;
                joined = true;
            }
            (OpCode::Text, Some(b'4')) if frame.payload.starts_with(b"40") => return Ok(()),
            (OpCode::Text, Some(b'4')) => {
                anyhow::bail!("Socket.IO refused: {}", String::from_utf8_lossy(&frame.payload))
            }
            (OpCode::Close, _) => anyhow::bail!("closed during the Socket.IO handshake"),
            _ => {}
        }
    }
}

/// The Pusher protocol: the server opens with
/// `pusher:connection_established`; each `pusher:subscribe` to a public
/// channel is answered by `pusher_internal:subscription_succeeded`.
async fn pusher_subscribe(reader: &mut Reader, writer: &mut Writer, channels: &[String]) -> anyhow::Result<()> {
    let mut ignore = |_: Frame<'_>| async { Ok::<(), std::io::Error>(()) };
    loop {
        let frame = reader.read_frame(&mut ignore).await?;
        anyhow::ensure!(frame.opcode != OpCode::Close, "closed before pusher:connection_established");
        if frame.opcode == OpCode::Text && contains(&frame.payload, b"pusher:connection_established") {
            break;
        }
    }
    for channel in channels {
        let subscribe = format!(r#"{{"event":"pusher:subscribe","data":{{"channel":"{channel}"}}}}"#);
        writer.write_frame(Frame::text(Payload::Owned(subscribe.into_bytes()))).await?;
    }
    let mut succeeded = 0;
    while succeeded < channels.len() {
        let frame = reader.read_frame(&mut ignore).await?;
        anyhow::ensure!(frame.opcode != OpCode::Close, "closed while subscribing");
        if frame.opcode == OpCode::Text && contains(&frame.payload, b"subscription_succeeded") {
            succeeded += 1;
        }
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `ClientFrame { id, subscribe: { channel } }` in protobuf, by hand:
/// the generator stays free of the gateway's crates.
fn subscribe_protobuf(id: u8, channel: &str) -> Vec<u8> {
    let mut inner = vec![0x0a, channel.len() as u8];
    inner.extend_from_slice(channel.as_bytes());
    let mut frame = vec![0x08, id, 0x1a, inner.len() as u8];
    frame.extend_from_slice(&inner);
    frame
}

/// Reads deliveries until the server's close frame, timing each one.
pub fn receive(mut reader: Reader, delivered: Arc<AtomicU64>) -> JoinHandle<Histogram<u64>> {
    tokio::spawn(async move {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
        let mut ignore = |_: Frame<'_>| async { Ok::<(), std::io::Error>(()) };
        while let Ok(frame) = reader.read_frame(&mut ignore).await {
            match frame.opcode {
                OpCode::Text | OpCode::Binary => {
                    if let Some(sent) = stamp::read(&frame.payload) {
                        let _ = histogram.record(stamp::now_us().saturating_sub(sent).max(1));
                        delivered.fetch_add(1, Ordering::Relaxed);
                    } else if is_delta(&frame.payload) {
                        // Its stamp is in the base it applies to: counted, not timed.
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                OpCode::Close => break,
                _ => {}
            }
        }
        histogram
    })
}

/// A switchyard JSON `pub` that carries a Fossil delta.
fn is_delta(payload: &[u8]) -> bool {
    payload.ends_with(br#","delta":true}}"#)
}

/// Sends publications: switchyard `publish` commands, or bare payloads.
pub struct Publisher {
    writer: Writer,
    target: Target,
    next_id: u64,
    /// switchyard: publication j is tagged `k` = `v<j % tag_cycle>` (0: untagged).
    pub tag_cycle: usize,
    /// Socket.IO: publish to rooms (one per channel) rather than to all.
    pub rooms: bool,
    refused: Arc<AtomicU64>,
}

/// `{"id":N,"error":{...}}`: a JSON reply that carries an error.
fn is_error_reply(payload: &[u8]) -> bool {
    payload.starts_with(b"{\"id\":") && payload.windows(8).any(|w| w == b"\"error\":")
}

impl Publisher {
    /// Takes the publisher's socket; its incoming frames (replies, and the
    /// broadcasts plain servers echo back) are read and dropped.
    pub fn new(reader: Reader, writer: Writer, target: Target) -> (Publisher, JoinHandle<()>) {
        let refused = Arc::new(AtomicU64::new(0));
        let counted = refused.clone();
        let drain = tokio::spawn(async move {
            let mut reader = reader;
            let mut ignore = |_: Frame<'_>| async { Ok::<(), std::io::Error>(()) };
            while let Ok(frame) = reader.read_frame(&mut ignore).await {
                // A switchyard reply with an error: that publication was
                // not published (e.g. 108 while Redis is down).
                if target.is_switchyard() && frame.opcode == OpCode::Text && is_error_reply(&frame.payload) {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        (Publisher { writer, target, next_id: 1, tag_cycle: 0, rooms: false, refused }, drain)
    }

    /// Publications the server answered with an error.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Publishes `payload` to `channel`. Plain peers have one audience;
    /// Socket.IO gets `publish` (to everyone else) or, with `rooms`,
    /// `publish_to` the channel's room.
    pub async fn publish(&mut self, channel: &str, payload: &str) -> anyhow::Result<()> {
        let text = match self.target {
            Target::Plain => payload.to_owned(),
            Target::SocketIo if self.rooms => format!(r#"42["publish_to","{channel}",{payload}]"#),
            Target::SocketIo => format!(r#"42["publish",{payload}]"#),
            Target::Pusher => anyhow::bail!("Pusher publications come through the HTTP API (--publish-via pusher-api)"),
            Target::SwitchyardJson | Target::SwitchyardProto | Target::SwitchyardSse => {
                let tags = match self.tag_cycle {
                    0 => String::new(),
                    cycle => format!(r#","tags":{{"k":"v{}"}}"#, (self.next_id - 1) as usize % cycle),
                };
                self.next_id += 1;
                format!(r#"{{"id":{},"publish":{{"channel":"{channel}","data":{payload}{tags}}}}}"#, self.next_id)
            }
        };
        self.writer.write_frame(Frame::text(Payload::Owned(text.into_bytes()))).await?;
        Ok(())
    }
}

/// A subscriber over Server-Sent Events: `GET /sse?channel=<channel>` on
/// the host of `url` (a `ws://` URL), once its `sub` event came; then reads
/// and times every `pub` event until `stop` turns true.
pub async fn subscribe_sse(
    url: &str,
    channel: &str,
    delivered: Arc<AtomicU64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<Histogram<u64>>> {
    use http_body_util::BodyExt as _;
    let rest = url.strip_prefix("ws://").ok_or_else(|| anyhow::anyhow!("{url}: only ws:// URLs"))?;
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let stream = TcpStream::connect(authority).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = Request::get(format!("/sse?channel={channel}"))
        .header("host", authority)
        .header("accept", "text/event-stream")
        .body(Empty::<Bytes>::new())?;
    let mut body = sender.send_request(request).await?.into_body();
    let mut buffer: Vec<u8> = Vec::new();
    // Until the subscription is in place.
    loop {
        let frame = body.frame().await.ok_or_else(|| anyhow::anyhow!("the stream ended"))??;
        if let Ok(data) = frame.into_data() {
            buffer.extend_from_slice(&data);
        }
        if buffer.windows(6).any(|w| w == b"\"sub\":") {
            break;
        }
    }
    buffer.clear();
    Ok(tokio::spawn(async move {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
        loop {
            let frame = tokio::select! {
                frame = body.frame() => frame,
                _ = stop.wait_for(|stop| *stop) => break,
            };
            let Some(Ok(frame)) = frame else { break };
            let Ok(data) = frame.into_data() else { continue };
            buffer.extend_from_slice(&data);
            // Whole events only: what follows the last blank line waits.
            let Some(end) = buffer.windows(2).rposition(|w| w == b"\n\n") else { continue };
            for event in buffer[..end].split(|&b| b == b'\n').filter(|line| line.starts_with(b"data: {\"pub\"")) {
                if let Some(sent) = stamp::read(event) {
                    let _ = histogram.record(stamp::now_us().saturating_sub(sent).max(1));
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
            buffer.drain(..end + 2);
        }
        histogram
    }))
}

/// Asks the server to close (it answers with its own close frame, which
/// ends the subscriber's reader).
pub async fn close(writer: &mut Writer) {
    let _ = writer.write_frame(Frame::close(1000, b"")).await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_replies_are_told_from_results() {
        assert!(super::is_error_reply(br#"{"id":7,"error":{"code":108,"message":"broker unavailable"}}"#));
        assert!(!super::is_error_reply(br#"{"id":7,"publish":{}}"#));
        assert!(!super::is_error_reply(br#"{"pub":{"channel":"x","data":{"error":1}}}"#));
    }

    #[test]
    fn the_protobuf_subscribe_is_a_client_frame() {
        // id = 1 (field 1, varint); subscribe (field 3) { channel (field 1) = "bench" }
        assert_eq!(
            super::subscribe_protobuf(1, "bench"),
            vec![0x08, 1, 0x1a, 7, 0x0a, 5, b'b', b'e', b'n', b'c', b'h']
        );
    }
}
