//! Which browser origins may open a WebSocket (`limits.allowed_origins`).

/// Whether `origin` (an `Origin` header value) matches one of `allowed`:
/// `*`, an exact origin, or `scheme://*.domain[:port]` for any subdomain.
/// Comparison ignores ASCII case, as hosts do.
pub fn is_allowed(allowed: &[String], origin: &str) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let origin = origin.to_ascii_lowercase();
    allowed.iter().any(|pattern| {
        let pattern = pattern.to_ascii_lowercase();
        if pattern == "*" || pattern == origin {
            return true;
        }
        let Some((scheme, rest)) = pattern.split_once("://*.") else { return false };
        let Some(host_port) = origin.strip_prefix(scheme).and_then(|o| o.strip_prefix("://")) else { return false };
        // `rest` is `domain[:port]`: the origin must end with `.domain[:port]`
        // and have at least one label before it.
        host_port.len() > rest.len() + 1
            && host_port.ends_with(rest)
            && host_port.as_bytes()[host_port.len() - rest.len() - 1] == b'.'
    })
}

/// Whether `origin` (`scheme://host[:port]`) names the host the request
/// went to (its `Host` header), ignoring ASCII case.
pub fn is_same_origin(origin: &str, host: &str) -> bool {
    let authority = origin.split_once("://").map_or("", |(_, rest)| rest);
    !host.is_empty() && authority.eq_ignore_ascii_case(host)
}

#[cfg(test)]
mod tests {
    use super::{is_allowed, is_same_origin};

    fn allowed(patterns: &[&str], origin: &str) -> bool {
        is_allowed(&patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>(), origin)
    }

    #[test]
    fn exact_wildcard_and_everything() {
        assert!(allowed(&[], "https://evil.example"));
        assert!(allowed(&["*"], "https://evil.example"));
        assert!(allowed(&["https://app.example.com"], "https://APP.example.com"));
        assert!(!allowed(&["https://app.example.com"], "http://app.example.com"));
        assert!(!allowed(&["https://app.example.com"], "https://app.example.com.evil.io"));
        assert!(allowed(&["https://*.example.com"], "https://a.b.example.com"));
        assert!(!allowed(&["https://*.example.com"], "https://example.com"));
        assert!(!allowed(&["https://*.example.com"], "https://evilexample.com"));
        assert!(!allowed(&["https://*.example.com"], "https://a.example.com:8443"));
        assert!(allowed(&["https://*.example.com:8443"], "https://a.example.com:8443"));
    }

    #[test]
    fn same_origin_is_the_host_the_request_went_to() {
        assert!(is_same_origin("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(is_same_origin("https://App.example.com", "app.example.com"));
        assert!(!is_same_origin("https://evil.example", "app.example.com"));
        assert!(!is_same_origin("http://127.0.0.1:8081", "127.0.0.1:8080"));
        assert!(!is_same_origin("null", "127.0.0.1:8080"));
        assert!(!is_same_origin("http://a", ""));
    }
}
