//! A one-shot HTTP GET: container images need a health check, and this
//! saves them a curl.

use bytes::Bytes;
use http_body_util::Empty;
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(5);

/// The status `url` (`http://host:port/path`) answers a GET with.
pub async fn get(url: &str) -> anyhow::Result<u16> {
    let rest = url.strip_prefix("http://").ok_or_else(|| anyhow::anyhow!("{url}: only http:// URLs"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let status = tokio::time::timeout(TIMEOUT, async {
        let stream = TcpStream::connect(authority).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let request = Request::get(path).header("host", authority).body(Empty::<Bytes>::new())?;
        anyhow::Ok(sender.send_request(request).await?.status().as_u16())
    })
    .await
    .map_err(|_| anyhow::anyhow!("{url}: no answer within {TIMEOUT:?}"))??;
    Ok(status)
}
