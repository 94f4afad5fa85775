//! `trivial-backend`: the cheapest backend a connect proxy can have, for
//! measuring what the proxy itself costs. Every POST is answered at once
//! with a user (`{"result": {"user": "u<n>"}}`), over keep-alive HTTP/1.1.
//!
//!     trivial-backend 127.0.0.1:9300

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::net::TcpListener;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9300".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    let users = Arc::new(AtomicU64::new(0));
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let users = users.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let n = users.fetch_add(1, Ordering::Relaxed);
                async move {
                    // Read the request whole, as a real backend would.
                    let _ = request.into_body().collect().await;
                    let body = format!(r#"{{"result":{{"user":"u{n}"}}}}"#);
                    Ok::<_, std::convert::Infallible>(
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body)))
                            .expect("a valid response"),
                    )
                }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
