//! Query strings of HTTP requests: one reader for every route.

/// The value of the first `name=value` pair of `query`, as written (JWTs,
/// channel names and numbers need no percent-decoding).
pub fn param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_pair() {
        assert_eq!(param(Some("a=1&b=2&a=3"), "a"), Some("1"));
        assert_eq!(param(Some("a=1&b"), "b"), None);
        assert_eq!(param(None, "a"), None);
    }
}
