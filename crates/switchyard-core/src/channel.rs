//! Channel names (fixed by the wire contract).
//!
//! 1 to 255 bytes of `[A-Za-z0-9_\-:.@/=,#]`. The part before the first `:`
//! names the namespace; a name with no `:` is in the default namespace. A `#`
//! marks a user channel: `notify#42` belongs to user 42.

use std::fmt;

/// The longest channel name, in bytes.
pub const MAX_CHANNEL_LEN: usize = 255;

/// The namespace of channels whose name has no `:`.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Why a channel name is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("channel name is empty")]
    Empty,
    #[error("channel name is longer than {MAX_CHANNEL_LEN} bytes")]
    TooLong,
    #[error("channel name holds {0:?}, outside [A-Za-z0-9_-:.@/=,#]")]
    BadChar(char),
}

/// A validated channel name, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Channel<'a>(&'a str);

impl<'a> Channel<'a> {
    /// Validates `name`.
    pub fn parse(name: &'a str) -> Result<Self, ChannelError> {
        if name.is_empty() {
            return Err(ChannelError::Empty);
        }
        if name.len() > MAX_CHANNEL_LEN {
            return Err(ChannelError::TooLong);
        }
        if let Some(bad) = name.chars().find(|c| !is_channel_char(*c)) {
            return Err(ChannelError::BadChar(bad));
        }
        Ok(Channel(name))
    }

    pub fn as_str(&self) -> &'a str {
        self.0
    }

    /// The namespace this channel is in.
    pub fn namespace(&self) -> &'a str {
        match self.0.split_once(':') {
            Some((namespace, _)) => namespace,
            None => DEFAULT_NAMESPACE,
        }
    }

    /// The user a user channel (`name#user`) belongs to.
    pub fn user(&self) -> Option<&'a str> {
        self.0.split_once('#').map(|(_, user)| user)
    }
}

impl fmt::Display for Channel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

fn is_channel_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '.' | '@' | '/' | '=' | ',' | '#')
}

/// Whether `name` can name a namespace: channel characters other than `:` and `#`.
pub fn is_namespace_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CHANNEL_LEN
        && name.chars().all(|c| is_channel_char(c) && c != ':' && c != '#')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_and_users() {
        let c = Channel::parse("chat:room1").unwrap();
        assert_eq!(c.namespace(), "chat");
        assert_eq!(c.user(), None);
        assert_eq!(Channel::parse("news").unwrap().namespace(), DEFAULT_NAMESPACE);
        assert_eq!(Channel::parse("notify#42").unwrap().user(), Some("42"));
        assert_eq!(Channel::parse("a:b:c").unwrap().namespace(), "a");
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(Channel::parse(""), Err(ChannelError::Empty));
        assert_eq!(Channel::parse(&"x".repeat(256)), Err(ChannelError::TooLong));
        assert!(Channel::parse(&"x".repeat(255)).is_ok());
        assert_eq!(Channel::parse("a b"), Err(ChannelError::BadChar(' ')));
        assert_eq!(Channel::parse("é"), Err(ChannelError::BadChar('é')));
        assert!(Channel::parse("A-z_0.9@x/y=z,w").is_ok());
    }
}
