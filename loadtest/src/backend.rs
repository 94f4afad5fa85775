//! Publishing the way a backend does: `FCALL switchyard_publish` on Redis,
//! or `POST /api/publish` on a node; or through a queue the cluster
//! consumes: `XADD` to a Redis stream, a row in a PostgreSQL outbox, a
//! JetStream message. Requests are pipelined on one
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
    /// `POST /apps/<id>/events` of the Pusher HTTP API, signed as the
    /// server libraries sign it (app `1001`, key `app-key`, secret
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
            Via::PusherApi => pusher_request(&self.authority, channel, payload),
            Via::Client | Via::Outbox | Via::Jetstream => unreachable!("not a raw TCP publisher"),
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

/// One signed `POST /apps/<id>/events` of `payload` (as the event's data
/// string) to `channel`.
fn pusher_request(authority: &str, channel: &str, payload: &str) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    use md5::{Digest, Md5};
    let (id, key, secret) = PUSHER_APP;
    let data = serde_json::to_string(payload).expect("a string serializes");
    let body = format!(r#"{{"name":"bench","channels":["{channel}"],"data":{data}}}"#);
    let md5: String = Md5::digest(body.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let timestamp = crate::stamp::now_us() / 1_000_000;
    let path = format!("/apps/{id}/events");
    let query = format!("auth_key={key}&auth_timestamp={timestamp}&auth_version=1.0&body_md5={md5}");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key size");
    mac.update(format!("POST\n{path}\n{query}").as_bytes());
    let signature: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "POST {path}?{query}&auth_signature={signature} HTTP/1.1\r\nHost: {authority}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
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
