//! permessage-deflate (RFC 7692) as the handshake negotiates it.
//!
//! The server answers `server_no_context_takeover; client_no_context_takeover`:
//! every message is compressed and inflated on its own, so a publication is
//! compressed once for all its subscribers and an idle connection keeps no
//! window (RFC 7692 lets the server ask `client_no_context_takeover` even
//! when the client did not offer it).

use hyper::header::HeaderValue;

/// permessage-deflate as agreed with one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deflate {
    /// The window the client allows the server (`server_max_window_bits`).
    server_window: u8,
}

impl Deflate {
    /// The first offer among `Sec-WebSocket-Extensions` values this server
    /// takes: permessage-deflate with valid parameters (RFC 7692 §7.1).
    pub fn negotiate<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Deflate> {
        values.into_iter().flat_map(|value| value.split(',')).find_map(offer)
    }

    /// Whether the server may send compressed messages. Publications are
    /// compressed once with the whole window, so a client that limits the
    /// server's window gets every message plain (RSV1 is per message; RFC
    /// 7692 lets a server compress none), and still sends compressed.
    pub fn compresses(&self) -> bool {
        self.server_window == 15
    }

    /// The `Sec-WebSocket-Extensions` answer.
    pub fn response(&self) -> HeaderValue {
        const BASE: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
        match self.server_window {
            15 => HeaderValue::from_static(BASE),
            // Accepting the limit means answering it (§7.1.2.1).
            bits => HeaderValue::from_str(&format!("{BASE}; server_max_window_bits={bits}"))
                .expect("a header value of ASCII"),
        }
    }
}

/// One offer: `permessage-deflate` and its parameters, each at most once.
fn offer(offer: &str) -> Option<Deflate> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case("permessage-deflate") {
        return None;
    }
    let mut deflate = Deflate { server_window: 15 };
    let mut seen: Vec<&str> = Vec::new();
    for param in parts {
        let (key, value) = match param.split_once('=') {
            Some((key, value)) => (key.trim(), Some(value.trim().trim_matches('"'))),
            None => (param, None),
        };
        if seen.contains(&key) {
            return None;
        }
        seen.push(key);
        let bits = |value: Option<&str>| value.and_then(|v| v.parse::<u8>().ok()).filter(|b| (8..=15).contains(b));
        match (key, value) {
            ("server_no_context_takeover" | "client_no_context_takeover", None) => {}
            // Without a value: the client can take any window the server asks.
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", value) => {
                bits(value)?;
            }
            ("server_max_window_bits", value) => deflate.server_window = bits(value)?,
            _ => return None,
        }
    }
    Some(deflate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negotiate(value: &str) -> Option<Deflate> {
        Deflate::negotiate([value])
    }

    #[test]
    fn takes_the_offers_it_can_answer() {
        for value in [
            "permessage-deflate",
            "permessage-deflate; client_max_window_bits",
            "x-webkit-deflate-frame, permessage-deflate; client_max_window_bits=10",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_max_window_bits=15",
        ] {
            assert!(negotiate(value).is_some_and(|d| d.compresses()), "{value}");
        }
        let limited = negotiate("permessage-deflate; server_max_window_bits=9").unwrap();
        assert!(!limited.compresses());
        assert_eq!(
            limited.response().to_str().unwrap(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9"
        );
        for value in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; unknown_param",
            "x-webkit-deflate-frame",
            "",
        ] {
            assert_eq!(negotiate(value), None, "{value}");
        }
        // The first acceptable offer wins.
        let second = negotiate("permessage-deflate; bad, permessage-deflate; server_max_window_bits=10").unwrap();
        assert!(!second.compresses());
    }
}
