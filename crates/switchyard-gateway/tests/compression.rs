//! permessage-deflate on `/ws`, seen from a raw client that offers it and
//! inflates what it gets (flate2, not the server's code): publications
//! arrive compressed (the same compressed frame for every compressing
//! subscriber), short messages plain; a compressed message from the client
//! is inflated; a decompression bomb gets 1009 and malformed deflate 1007,
//! while other clients keep being served.

use bytes::BytesMut;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use switchyard_client::{Client, Encoding, Options};
use switchyard_core::config::Config;
use switchyard_testkit::http::sample;
use switchyard_testkit::{TestNode, test_config, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config() -> Config {
    let mut config = test_config();
    config.client.compression = true;
    config.client.compression_min_size = 128;
    // Room for a 100 MiB bomb's compressed frame (about 100 KiB).
    config.client.max_message_size = 256 * 1024;
    config
}

/// A WebSocket client written out by hand: the handshake's response head,
/// and frames with their RSV1 bit.
struct Raw {
    stream: TcpStream,
    buffer: BytesMut,
    response: String,
}

/// A frame as the server sent it.
#[derive(Debug)]
struct Seen {
    opcode: u8,
    compressed: bool,
    payload: Vec<u8>,
}

impl Raw {
    async fn connect(node: &TestNode, extensions: Option<&str>) -> Raw {
        let mut stream = TcpStream::connect(node.addr).await.unwrap();
        let mut head = format!(
            "GET /ws HTTP/1.1\r\nhost: {}\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
             sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n",
            node.addr
        );
        if let Some(extensions) = extensions {
            head.push_str(&format!("sec-websocket-extensions: {extensions}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut buffer = BytesMut::new();
        let end = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            assert!(stream.read_buf(&mut buffer).await.unwrap() > 0, "closed during the handshake");
        };
        let response = String::from_utf8_lossy(&buffer.split_to(end + 4)).to_lowercase();
        assert!(response.starts_with("http/1.1 101"), "{response}");
        Raw { stream, buffer, response }
    }

    /// Sends one final, masked frame; `rsv1` marks it compressed.
    async fn send(&mut self, opcode: u8, rsv1: bool, payload: &[u8]) {
        let mut frame = vec![0x80 | opcode | if rsv1 { 0x40 } else { 0 }];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [1u8, 2, 3, 4];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).await.unwrap();
    }

    async fn next(&mut self) -> Option<Seen> {
        loop {
            if self.buffer.len() >= 2 {
                let (b0, b1) = (self.buffer[0], self.buffer[1]);
                let (header, len) = match b1 & 0x7f {
                    126 if self.buffer.len() >= 4 => (4, u16::from_be_bytes([self.buffer[2], self.buffer[3]]) as usize),
                    127 if self.buffer.len() >= 10 => {
                        (10, u64::from_be_bytes(self.buffer[2..10].try_into().unwrap()) as usize)
                    }
                    126 | 127 => (usize::MAX, 0),
                    n => (2, n as usize),
                };
                if header != usize::MAX && self.buffer.len() >= header + len {
                    let frame = self.buffer.split_to(header + len);
                    return Some(Seen {
                        opcode: b0 & 0x0f,
                        compressed: b0 & 0x40 != 0,
                        payload: frame[header..].to_vec(),
                    });
                }
            }
            if self.stream.read_buf(&mut self.buffer).await.ok()? == 0 {
                return None;
            }
        }
    }

    /// The next text message, inflated if it came compressed.
    async fn next_text(&mut self) -> (bool, String) {
        loop {
            let seen = within("a frame", self.next()).await.expect("a frame");
            if seen.opcode == 1 {
                let payload = if seen.compressed { inflate(&seen.payload) } else { seen.payload };
                return (seen.compressed, String::from_utf8(payload).unwrap());
            }
        }
    }

    async fn close_code(&mut self) -> Option<u16> {
        loop {
            let seen = within("the close", self.next()).await?;
            if seen.opcode == 8 {
                return Some(u16::from_be_bytes([seen.payload[0], seen.payload[1]]));
            }
        }
    }
}

fn deflate(payload: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(payload.len() + 64);
    compress.compress_vec(payload, &mut out, FlushCompress::Sync).unwrap();
    while out.len() == out.capacity() {
        out.reserve(out.capacity());
        compress.compress_vec(&[], &mut out, FlushCompress::Sync).unwrap();
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut decompress = Decompress::new(false);
    let mut out = Vec::with_capacity(payload.len() * 20 + 1024);
    decompress.decompress_vec(&input, &mut out, FlushDecompress::Sync).unwrap();
    out
}

#[tokio::test]
async fn publications_arrive_compressed_once_for_every_compressing_subscriber() {
    let node = TestNode::start(config()).await;
    // The answer to the offer, whatever windows the client proposed.
    let mut first = Raw::connect(&node, Some("permessage-deflate; client_max_window_bits")).await;
    assert!(
        first.response.contains(
            "sec-websocket-extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        ),
        "{}",
        first.response
    );
    let mut second = Raw::connect(&node, Some("permessage-deflate")).await;
    let mut plain = Raw::connect(&node, None).await;
    assert!(!plain.response.contains("sec-websocket-extensions"), "{}", plain.response);
    // A compressed command is inflated: the subscribe of the first.
    first.send(1, true, &deflate(br#"{"id": 1, "subscribe": {"channel": "news"}}"#)).await;
    assert_eq!(first.next_text().await, (false, r#"{"id":1,"subscribe":{}}"#.to_owned()), "a short reply goes plain");
    second.send(1, false, br#"{"id": 1, "subscribe": {"channel": "news"}}"#).await;
    second.next_text().await;
    plain.send(1, false, br#"{"id": 1, "subscribe": {"channel": "news"}}"#).await;
    plain.next_text().await;
    let publisher = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    let document = serde_json::json!({"prices": (0..100).map(|i| serde_json::json!({"symbol": format!("S{i}"), "bid": 100 + i})).collect::<Vec<_>>()});
    publisher.publish("news", document.to_string()).await.unwrap();
    for raw in [&mut first, &mut second] {
        let (compressed, text) = raw.next_text().await;
        assert!(compressed, "a long publication arrives compressed");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["pub"]["data"], document);
    }
    let (compressed, text) = plain.next_text().await;
    assert!(!compressed);
    assert!(text.contains("S99"));
    // A short one goes plain to everyone.
    publisher.publish("news", "1").await.unwrap();
    assert!(!first.next_text().await.0, "a short publication goes plain");
    // Compressed once for both compressing subscribers.
    let metrics = node.metrics().await;
    assert_eq!(sample(&metrics, "switchyard_deflated_frames_total", "encoding=\"json\""), 1.0);
}

#[tokio::test]
async fn a_decompression_bomb_costs_a_1009_and_garbage_a_1007() {
    let node = TestNode::start(config()).await;
    let bystander = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    bystander.subscribe("calm").await.unwrap();
    let mut bystander = bystander;
    // 100 MiB in about 100 KiB: refused as soon as it passes 256 KiB.
    let mut bomb = Raw::connect(&node, Some("permessage-deflate")).await;
    let compressed = deflate(&vec![b' '; 100 << 20]);
    assert!(compressed.len() < 256 * 1024, "{}", compressed.len());
    bomb.send(1, true, &compressed).await;
    assert_eq!(bomb.close_code().await, Some(1009));
    let mut garbage = Raw::connect(&node, Some("permessage-deflate")).await;
    garbage.send(1, true, &[0xff, 0xfe, 0xfd, 0x00, 0x13]).await;
    assert_eq!(garbage.close_code().await, Some(1007));
    // RSV1 without the extension negotiated is a protocol error.
    let mut unasked = Raw::connect(&node, None).await;
    unasked.send(1, true, &deflate(b"{}")).await;
    assert_eq!(unasked.close_code().await, Some(1002));
    let publisher = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    publisher.publish("calm", "\"still here\"").await.unwrap();
    let p = within("the bystander's publication", bystander.next_publication()).await.unwrap();
    assert_eq!(&p.data[..], b"\"still here\"");
    let metrics = node.metrics().await;
    assert_eq!(sample(&metrics, "switchyard_inflate_refusals_total", "reason=\"too_big\""), 1.0);
    assert_eq!(sample(&metrics, "switchyard_inflate_refusals_total", "reason=\"malformed\""), 1.0);
}

#[tokio::test]
async fn compression_is_on_by_default_and_off_when_turned_off() {
    let on = TestNode::start(test_config()).await;
    let offered = Raw::connect(&on, Some("permessage-deflate; client_max_window_bits")).await;
    assert!(offered.response.contains("sec-websocket-extensions: permessage-deflate"), "{}", offered.response);
    let mut config = test_config();
    config.client.compression = false;
    let off = TestNode::start(config).await;
    let offered = Raw::connect(&off, Some("permessage-deflate; client_max_window_bits")).await;
    assert!(!offered.response.contains("sec-websocket-extensions"), "{}", offered.response);
}
