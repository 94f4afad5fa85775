use switchyard_proto::v1::Error as ErrorReply;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid URL: {0}")]
    Url(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The server answered the upgrade with this HTTP status.
    #[error("the server refused the upgrade with HTTP {0}")]
    Refused(u16),
    /// The server answered the command with an error reply.
    #[error("error {}: {}", .0.code, .0.message)]
    Server(ErrorReply),
    #[error("cannot encode the command: {0}")]
    Encode(String),
    /// The connection is closed (see [`crate::Event::Closed`] for how).
    #[error("connection closed")]
    Closed,
    #[error("unexpected reply")]
    UnexpectedReply,
    /// No answer within the session's timeout.
    #[error("timed out")]
    Timeout,
}

impl ClientError {
    /// The error code of a server error reply.
    pub fn code(&self) -> Option<u32> {
        match self {
            ClientError::Server(e) => Some(e.code),
            _ => None,
        }
    }
}
