use crate::error::ClientError;
use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocketError};
use http_body_util::Empty;
use hyper::Request;
use hyper::header::{CONNECTION, HOST, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use prost::Message as _;
use rustls::pki_types::ServerName;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use switchyard_proto::json;
use switchyard_proto::v1::client_frame::Command;
use switchyard_proto::v1::server_frame::Message;
use switchyard_proto::v1::{
    AckRequest, ClientFrame, ConnectRequest, ConnectResult, Disconnect, HistoryRequest, HistoryResult, MemberEvent,
    Pong, Publication, PublishRequest, PublishResult, RpcRequest, ServerFrame, ServerSubscribe, ServerUnsubscribe,
    StreamPosition, SubscribeRequest, SubscribeResult, UnsubscribeRequest,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsConnector;

/// The encoding to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `switchyard.v1.json`, text frames.
    Json,
    /// `switchyard.v1.proto`, binary frames.
    Protobuf,
}

impl Encoding {
    fn subprotocol(self) -> &'static str {
        match self {
            Encoding::Json => "switchyard.v1.json",
            Encoding::Protobuf => "switchyard.v1.proto",
        }
    }
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct Options {
    pub encoding: Encoding,
    /// Answer the server's `ping` messages with `pong`. Default: true.
    pub answer_pings: bool,
    /// Answer WebSocket ping frames with pong frames. Default: true.
    pub answer_ws_pings: bool,
    /// Events buffered before the client stops reading the socket (and so
    /// lets the server see a slow reader). Default: 4096.
    pub event_buffer: usize,
    /// TLS for `wss://` URLs. Default: rustls with the system's trusted
    /// roots.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Options {
    pub fn new(encoding: Encoding) -> Self {
        Options { encoding, answer_pings: true, answer_ws_pings: true, event_buffer: 4096, tls: None }
    }
}

/// rustls with the system's trusted roots, built once.
fn system_tls() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            // rustls needs a process-wide crypto provider; the first install wins.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            tracing::debug!(added, ignored, errors = found.errors.len(), "system roots for wss://");
            Arc::new(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
        })
        .clone()
}

type Upgrade = fastwebsockets::WebSocket<TokioIo<Upgraded>>;

/// The WebSocket handshake over an open stream (TCP, or TLS over TCP).
async fn handshake<S>(stream: S, request: Request<Empty<Bytes>>) -> Result<Upgrade, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ws, _response) = fastwebsockets::handshake::client(&hyper_util::rt::TokioExecutor::new(), request, stream)
        .await
        .map_err(|e| match e {
            WebSocketError::InvalidStatusCode(status) => ClientError::Refused(status),
            other => ClientError::Handshake(other.to_string()),
        })?;
    Ok(ws)
}

/// What the server pushes.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Publication(Publication),
    /// A `ping` message (already answered if [`Options::answer_pings`]).
    Ping,
    /// The `disconnect` push that comes before a server's close frame.
    Disconnect(Disconnect),
    /// Someone subscribed to a channel of a `join_leave` namespace.
    Join(MemberEvent),
    /// Someone left a channel of a `join_leave` namespace.
    Leave(MemberEvent),
    /// The server subscribed this connection to a channel.
    Subscribed(ServerSubscribe),
    /// The server unsubscribed this connection from a channel.
    Unsubscribed(ServerUnsubscribe),
    /// The connection is closed: the close frame's code and reason, or
    /// `None` when the socket ended without one.
    Closed(Option<(u16, String)>),
}

type Pending = Arc<Mutex<HashMap<u32, oneshot::Sender<Result<Message, ClientError>>>>>;

/// A connection to a switchyard node.
pub struct Client {
    encoding: Encoding,
    outgoing: mpsc::Sender<Frame<'static>>,
    pending: Pending,
    next_id: AtomicU32,
    events: mpsc::Receiver<Event>,
}

impl Client {
    /// Opens a WebSocket to `url` (`ws://host:port/ws`, or `wss://` over
    /// TLS with [`Options::tls`]).
    pub async fn connect(url: &str, options: Options) -> Result<Client, ClientError> {
        let (secure, rest) = match (url.strip_prefix("wss://"), url.strip_prefix("ws://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            (None, None) => return Err(ClientError::Url(format!("{url}: ws:// or wss:// URLs only"))),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let stream = TcpStream::connect(authority).await?;
        stream.set_nodelay(true)?;
        let request = Request::builder()
            .method("GET")
            .uri(path)
            .header(HOST, authority)
            .header(UPGRADE, "websocket")
            .header(CONNECTION, "upgrade")
            .header(SEC_WEBSOCKET_KEY, fastwebsockets::handshake::generate_key())
            .header(SEC_WEBSOCKET_VERSION, "13")
            .header(SEC_WEBSOCKET_PROTOCOL, options.encoding.subprotocol())
            .body(Empty::<Bytes>::new())
            .map_err(|e| ClientError::Url(e.to_string()))?;
        let ws = if secure {
            let config = options.tls.clone().unwrap_or_else(system_tls);
            let host = authority.rsplit_once(':').map_or(authority, |(host, _)| host);
            let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
                .map_err(|e| ClientError::Url(format!("{host}: {e}")))?;
            let stream = TlsConnector::from(config).connect(name, stream).await?;
            handshake(stream, request).await?
        } else {
            handshake(stream, request).await?
        };
        let encoding = options.encoding;
        let (read, write) = tokio::io::split(ws.into_inner());
        let (mut reader, mut writer) = fastwebsockets::after_handshake_split(read, write, Role::Client);
        reader.set_auto_close(false);
        reader.set_auto_pong(false);

        let (outgoing, mut outgoing_rx) = mpsc::channel::<Frame<'static>>(1024);
        tokio::spawn(async move {
            while let Some(frame) = outgoing_rx.recv().await {
                let closing = frame.opcode == OpCode::Close;
                if writer.write_frame(frame).await.is_err() || closing {
                    break;
                }
            }
        });

        let pending: Pending = Arc::default();
        let (events_tx, events) = mpsc::channel(options.event_buffer);
        let reader_pending = pending.clone();
        let reader_outgoing = outgoing.clone();
        tokio::spawn(async move {
            let mut noop = |_: Frame<'_>| async { Ok::<(), std::io::Error>(()) };
            let closed = loop {
                let frame = match reader.read_frame(&mut noop).await {
                    Ok(frame) => frame,
                    Err(_) => break None,
                };
                match frame.opcode {
                    OpCode::Text | OpCode::Binary => {
                        let decoded = match options.encoding {
                            Encoding::Json => {
                                std::str::from_utf8(&frame.payload).ok().and_then(|t| json::decode_server_frame(t).ok())
                            }
                            Encoding::Protobuf => ServerFrame::decode(&frame.payload[..]).ok(),
                        };
                        let Some(decoded) = decoded else { continue };
                        if !dispatch(decoded, &options, &reader_pending, &events_tx, &reader_outgoing).await {
                            break None;
                        }
                    }
                    OpCode::Ping if options.answer_ws_pings => {
                        let pong = Frame::pong(Payload::Owned(frame.payload.to_vec()));
                        let _ = reader_outgoing.send(pong).await;
                    }
                    OpCode::Close => {
                        let payload: &[u8] = &frame.payload;
                        let close = (payload.len() >= 2).then(|| {
                            let code = u16::from_be_bytes([payload[0], payload[1]]);
                            (code, String::from_utf8_lossy(&payload[2..]).into_owned())
                        });
                        let echo = Frame::close_raw(Payload::Owned(payload[..payload.len().min(2)].to_vec()));
                        let _ = reader_outgoing.send(echo).await;
                        break close;
                    }
                    _ => {}
                }
            };
            for (_, waiter) in reader_pending.lock().unwrap_or_else(|e| e.into_inner()).drain() {
                let _ = waiter.send(Err(ClientError::Closed));
            }
            let _ = events_tx.send(Event::Closed(closed)).await;
        });

        Ok(Client { encoding, outgoing, pending, next_id: AtomicU32::new(1), events })
    }

    /// The next push from the server; `None` after [`Event::Closed`].
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Waits for the end of the connection, skipping whatever comes before:
    /// the close frame's code and reason, or `None` if the socket just ended.
    pub async fn closed(&mut self) -> Option<(u16, String)> {
        while let Some(event) = self.next_event().await {
            if let Event::Closed(close) = event {
                return close;
            }
        }
        None
    }

    /// The next publication, skipping every other push.
    pub async fn next_publication(&mut self) -> Result<Publication, ClientError> {
        loop {
            match self.next_event().await {
                Some(Event::Publication(p)) => return Ok(p),
                Some(Event::Closed(_)) | None => return Err(ClientError::Closed),
                Some(_) => continue,
            }
        }
    }

    pub async fn connect_command(&self, token: &str) -> Result<ConnectResult, ClientError> {
        self.connect_with(ConnectRequest { token: token.to_owned(), ..Default::default() }).await
    }

    /// `connect`, with a token and/or an earlier session's resume token.
    pub async fn connect_with(&self, request: ConnectRequest) -> Result<ConnectResult, ClientError> {
        match self.command(Command::Connect(request)).await? {
            Message::Connect(result) => Ok(result),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// Publications of `channel` after `since` (the newest without it).
    pub async fn history(
        &self,
        channel: &str,
        since: Option<StreamPosition>,
        limit: u32,
    ) -> Result<HistoryResult, ClientError> {
        let request = HistoryRequest { channel: channel.to_owned(), since, limit };
        match self.command(Command::History(request)).await? {
            Message::History(result) => Ok(result),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    pub async fn subscribe(&self, channel: &str) -> Result<SubscribeResult, ClientError> {
        self.subscribe_with(SubscribeRequest { channel: channel.to_owned(), ..Default::default() }).await
    }

    pub async fn subscribe_with(&self, request: SubscribeRequest) -> Result<SubscribeResult, ClientError> {
        match self.command(Command::Subscribe(request)).await? {
            Message::Subscribe(result) => Ok(result),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    pub async fn unsubscribe(&self, channel: &str) -> Result<(), ClientError> {
        match self.command(Command::Unsubscribe(UnsubscribeRequest { channel: channel.to_owned() })).await? {
            Message::Unsubscribe(_) => Ok(()),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// Publishes `data`: with the JSON encoding it must be a JSON value.
    pub async fn publish(&self, channel: &str, data: impl Into<Bytes>) -> Result<PublishResult, ClientError> {
        self.publish_with(PublishRequest { channel: channel.to_owned(), data: data.into(), ..Default::default() }).await
    }

    /// Publishes with every option of the command (tags, a receipt, an
    /// idempotency key).
    pub async fn publish_with(&self, request: PublishRequest) -> Result<PublishResult, ClientError> {
        match self.command(Command::Publish(request)).await? {
            Message::Publish(result) => Ok(result),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// Calls `method` of the application's backend (the RPC proxy); the
    /// answer's data. With the JSON encoding `data` must be a JSON value.
    pub async fn rpc(&self, method: &str, data: impl Into<Bytes>) -> Result<Bytes, ClientError> {
        let request = RpcRequest { method: method.to_owned(), data: data.into() };
        match self.command(Command::Rpc(request)).await? {
            Message::Rpc(result) => Ok(result.data),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// Acknowledges every publication on `channel` up to `offset`.
    pub async fn ack(&self, channel: &str, offset: u64) -> Result<(), ClientError> {
        self.push(Command::Ack(AckRequest { channel: channel.to_owned(), offset })).await
    }

    /// Sends any command and waits for its reply.
    pub async fn command(&self, command: Command) -> Result<Message, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(id, tx);
        let frame = encode(self.encoding, &ClientFrame { id, command: Some(command) })?;
        if self.outgoing.send(frame).await.is_err() {
            self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            return Err(ClientError::Closed);
        }
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// Sends a frame without an id (no reply expected).
    async fn push(&self, command: Command) -> Result<(), ClientError> {
        let frame = encode(self.encoding, &ClientFrame { id: 0, command: Some(command) })?;
        self.outgoing.send(frame).await.map_err(|_| ClientError::Closed)
    }

    /// Sends a raw WebSocket frame: for tests of what servers do with bad input.
    pub async fn send_raw(&self, frame: Frame<'static>) -> Result<(), ClientError> {
        self.outgoing.send(frame).await.map_err(|_| ClientError::Closed)
    }

    /// Closes with 1000 and waits for the server's close frame.
    pub async fn close(mut self) -> Option<(u16, String)> {
        let _ = self.outgoing.send(Frame::close(1000, b"")).await;
        self.closed().await
    }
}

/// Routes a decoded server frame; returns false when the client is gone.
async fn dispatch(
    frame: ServerFrame,
    options: &Options,
    pending: &Pending,
    events: &mpsc::Sender<Event>,
    outgoing: &mpsc::Sender<Frame<'static>>,
) -> bool {
    let Some(message) = frame.message else {
        return true;
    };
    if frame.id != 0 {
        let waiter = pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&frame.id);
        if let Some(waiter) = waiter {
            let result = match message {
                Message::Error(e) => Err(ClientError::Server(e)),
                other => Ok(other),
            };
            let _ = waiter.send(result);
        }
        return true;
    }
    let event = match message {
        Message::Pub(p) => Event::Publication(p),
        Message::Ping(_) => {
            if options.answer_pings
                && let Ok(pong) =
                    encode(options.encoding, &ClientFrame { id: 0, command: Some(Command::Pong(Pong {})) })
            {
                let _ = outgoing.send(pong).await;
            }
            Event::Ping
        }
        Message::Disconnect(d) => Event::Disconnect(d),
        Message::Join(j) => Event::Join(j),
        Message::Leave(l) => Event::Leave(l),
        Message::Sub(s) => Event::Subscribed(s),
        Message::Unsub(u) => Event::Unsubscribed(u),
        // An error without an id answers a frame the server could not read.
        Message::Error(e) => {
            tracing::debug!(code = e.code, message = %e.message, "error push");
            return true;
        }
        _ => return true,
    };
    events.send(event).await.is_ok()
}

fn encode(encoding: Encoding, frame: &ClientFrame) -> Result<Frame<'static>, ClientError> {
    Ok(match encoding {
        Encoding::Json => {
            let text = json::encode_client_frame(frame).map_err(|e| ClientError::Encode(e.to_string()))?;
            Frame::text(Payload::Owned(text))
        }
        Encoding::Protobuf => Frame::binary(Payload::Owned(frame.encode_to_vec())),
    })
}
