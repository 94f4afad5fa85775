//! Publishing the way a backend does: `FCALL switchyard_publish` on Redis,
//! or `POST /api/publish` on a node; or through a queue the cluster
//! consumes: `XADD` to a Redis stream, a row in a PostgreSQL outbox, a
//! JetStream message; or through the Pusher HTTP API. Requests are pipelined on one
//! connection without waiting for replies (open loop, like the client
//! publisher); a task reads the replies and counts the ones that failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::task::JoinHandle;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// A `publish` command on the publisher's WebSocket.
    Client,
    /// `FCALL switchyard_publish 1 <channel> <payload>` on Redis.
    Fcall,
    /// `POST /api/publish` on the node's HTTP API.
    Http,
    /// `XADD switchyard:publish * channel <channel> data <payload>` on
    /// Redis, for a `redis_stream` consumer.
    Xadd,
    /// A row in `switchyard_outbox` (`--publish-to` a PostgreSQL URL), for
    /// a `postgres_outbox` consumer.
    Outbox,
    /// A message on `events.<channel>` (`--publish-to` a NATS URL), for a
    /// `nats_jetstream` consumer of a stream on `events.>`.
    Jetstream,
    /// `POST /apps/<id>/batch_events` of the Pusher HTTP API, signed as
    /// the server libraries sign it (app `1001`, key `app-key`, secret
    /// `app-secret`): the same path for switchyard and any Pusher server.
    PusherApi,
}

/// The app the Pusher scenarios use, on every server.
pub const PUSHER_APP: (&str, &str, &str) = ("1001", "app-key", "app-secret");

pub struct BackendPublisher {
    via: Via,
    authority: String,
    api_key: String,
    out: BufWriter<OwnedWriteHalf>,
    /// Replies that reported an error (RESP `-ERR`, HTTP status not 200).
    pub failed: Arc<AtomicU64>,
    replies: JoinHandle<()>,
}

impl BackendPublisher {
    /// `authority`: host:port of Redis (`Fcall`) or of the node (`Http`).
    pub async fn connect(via: Via, authority: &str, api_key: &str) -> anyhow::Result<BackendPublisher> {
        anyhow::ensure!(via != Via::Client, "a backend publisher publishes by FCALL or HTTP");
        let stream = TcpStream::connect(authority).await?;
        stream.set_nodelay(true)?;
        let (mut read, write) = stream.into_split();
        let failed = Arc::new(AtomicU64::new(0));
        let counted = failed.clone();
        let replies = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let resp = matches!(via, Via::Fcall | Via::Xadd);
            let marker: &[u8] = if resp { b"\r\n-" } else { b"HTTP/1.1 " };
            while let Ok(n) = read.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let errors = match resp {
                    // An error reply starts a line with '-'.
                    true => count(&buf[..n], marker) + usize::from(buf[0] == b'-'),
                    false => count(&buf[..n], marker) - count(&buf[..n], b"HTTP/1.1 200"),
                };
                counted.fetch_add(errors as u64, Ordering::Relaxed);
            }
        });
        Ok(BackendPublisher {
            via,
            authority: authority.to_owned(),
            api_key: api_key.to_owned(),
            out: BufWriter::with_capacity(64 * 1024, write),
            failed,
            replies,
        })
    }

    /// Queues one publication; [`BackendPublisher::flush`] sends what is queued.
    pub async fn publish(&mut self, channel: &str, payload: &str) -> anyhow::Result<()> {
        let request = match self.via {
            Via::Fcall => resp(&["FCALL", "switchyard_publish", "1", channel, payload]),
            Via::Xadd => resp(&["XADD", "switchyard:publish", "*", "channel", channel, "data", payload]),
            Via::Http => {
                let body = format!(r#"{{"channel":"{channel}","data":{payload}}}"#);
                format!(
                    "POST /api/publish HTTP/1.1\r\nHost: {}\r\nAuthorization: apikey {}\r\n\
                     Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    self.authority,
                    self.api_key,
                    body.len()
                )
            }
            Via::Client | Via::Outbox | Via::Jetstream | Via::PusherApi => unreachable!("not a pipelined publisher"),
        };
        self.out.write_all(request.as_bytes()).await?;
        Ok(())
    }

    pub async fn flush(&mut self) -> anyhow::Result<()> {
        self.out.flush().await?;
        Ok(())
    }
}

impl Drop for BackendPublisher {
    fn drop(&mut self) {
        self.replies.abort();
    }
}

/// Publishes through the Pusher HTTP API as an application's backend does
/// at volume: each tick's events in `POST /apps/<id>/batch_events`
/// requests of up to ten, each request on a connection of its own (Pusher
/// servers may close after every answer; sockudo does), sent without
/// waiting; a failed request counts its events.
pub struct PusherApiPublisher {
    authority: String,
    pending: Vec<(String, String)>,
    pub failed: Arc<AtomicU64>,
    in_flight: Arc<tokio::sync::Semaphore>,
}

/// Requests in flight at most: past it the tick waits (the open loop then
/// runs late, which the stamps show).
const PUSHER_IN_FLIGHT: usize = 256;
/// Pusher's limit of events in one batch.
const PUSHER_BATCH: usize = 10;

impl PusherApiPublisher {
    pub fn new(authority: &str) -> PusherApiPublisher {
        PusherApiPublisher {
            authority: authority.to_owned(),
            pending: Vec::new(),
            failed: Arc::default(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(PUSHER_IN_FLIGHT)),
        }
    }

    pub fn publish(&mut self, channel: &str, payload: &str) {
        self.pending.push((channel.to_owned(), payload.to_owned()));
    }

    /// Sends what this tick queued.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        let pending = std::mem::take(&mut self.pending);
        for batch in pending.chunks(PUSHER_BATCH) {
            let permit = self.in_flight.clone().acquire_owned().await?;
            let request = batch_request(&self.authority, batch);
            let (authority, failed, events) = (self.authority.clone(), self.failed.clone(), batch.len() as u64);
            tokio::spawn(async move {
                let _permit = permit;
                let ok = async {
                    let mut stream = TcpStream::connect(&authority).await?;
                    stream.set_nodelay(true)?;
                    stream.write_all(request.as_bytes()).await?;
                    let mut head = [0u8; 12];
                    stream.read_exact(&mut head).await?;
                    Ok::<bool, std::io::Error>(&head == b"HTTP/1.1 200")
                }
                .await;
                if !matches!(ok, Ok(true)) {
                    failed.fetch_add(events, Ordering::Relaxed);
                }
            });
        }
        Ok(())
    }
}

/// One signed `POST /apps/<id>/batch_events` of `events` (channel, data
/// string), closing the connection after the answer.
fn batch_request(authority: &str, events: &[(String, String)]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    use md5::{Digest, Md5};
    let (id, key, secret) = PUSHER_APP;
    let batch: Vec<serde_json::Value> = events
        .iter()
        .map(|(channel, data)| serde_json::json!({ "name": "bench", "channel": channel, "data": data }))
        .collect();
    let body = serde_json::json!({ "batch": batch }).to_string();
    let md5: String = Md5::digest(body.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let timestamp = crate::stamp::now_us() / 1_000_000;
    let path = format!("/apps/{id}/batch_events");
    let query = format!("auth_key={key}&auth_timestamp={timestamp}&auth_version=1.0&body_md5={md5}");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key size");
    mac.update(format!("POST\n{path}\n{query}").as_bytes());
    let signature: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "POST {path}?{query}&auth_signature={signature} HTTP/1.1\r\nHost: {authority}\r\n\
         Connection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A RESP array of bulk strings.
fn resp(parts: &[&str]) -> String {
    let mut out = format!("*{}\r\n", parts.len());
    for part in parts {
        out.push_str(&format!("${}\r\n{part}\r\n", part.len()));
    }
    out
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).filter(|w| *w == needle).count()
}

#[cfg(test)]
mod tests {
    #[test]
    fn fcall_is_a_resp_array_of_bulk_strings() {
        assert_eq!(
            super::resp(&["FCALL", "switchyard_publish", "1", "bench", "{}"]),
            "*5\r\n$5\r\nFCALL\r\n$18\r\nswitchyard_publish\r\n$1\r\n1\r\n$5\r\nbench\r\n$2\r\n{}\r\n"
        );
        assert_eq!(super::count(b"HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 503 x", b"HTTP/1.1 "), 2);
    }
}
