//! What the HTTP request that opened a client's connection (a WebSocket
//! upgrade, or an SSE stream) leaves to the session: a connect token it
//! carried, and the headers the backend proxies forward.

use hyper::HeaderMap;
use hyper::header::{HeaderName, HeaderValue};

#[derive(Debug, Clone, Default)]
pub struct Handshake {
    /// A connect token from the query string or a cookie, used when
    /// `connect` carries none.
    pub token: Option<String>,
    /// The request's headers that some proxy forwards (only those: the
    /// rest are not kept).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `websocket` or `sse`.
    pub transport: &'static str,
}

impl Handshake {
    /// Keeps of `headers` those named in `forwarded`.
    pub fn new(
        transport: &'static str,
        token: Option<String>,
        headers: &HeaderMap,
        forwarded: &[HeaderName],
    ) -> Handshake {
        let headers = forwarded
            .iter()
            .flat_map(|name| headers.get_all(name).iter().map(move |value| (name.clone(), value.clone())))
            .collect();
        Handshake { token, headers, transport }
    }
}
