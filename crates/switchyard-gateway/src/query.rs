//! What HTTP requests carry besides their body: query string parameters
//! and cookies, one reader each for every route.

use std::borrow::Cow;

/// The value of the first `name=value` pair of `query`, percent-decoded
/// (every standard client escapes `:` in a channel name): every route
/// reads its parameters through this one reader.
pub fn param<'q>(query: Option<&'q str>, name: &str) -> Option<Cow<'q, str>> {
    let raw = query?.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v)?;
    Some(if raw.contains('%') { Cow::Owned(decode(raw)) } else { Cow::Borrowed(raw) })
}

/// The value of the cookie `name` among the request's `Cookie` headers.
pub fn cookie<'r>(headers: &'r hyper::HeaderMap, name: &str) -> Option<&'r str> {
    headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `value` with its `%XX` escapes decoded (browsers escape `:` and `/`
/// in query strings); a malformed escape is kept as it is.
pub fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_pair() {
        assert_eq!(param(Some("a=1&b=2&a=3"), "a").as_deref(), Some("1"));
        assert_eq!(param(Some("a=1&b"), "b"), None);
        assert_eq!(param(None, "a"), None);
        assert_eq!(param(Some("channel=chat%3Ax"), "channel").as_deref(), Some("chat:x"));
    }

    #[test]
    fn decodes_escapes() {
        assert_eq!(decode("chat%3Aroom%2F1"), "chat:room/1");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
    }
}
