//! Error codes of replies and close codes of connections (fixed by the wire
//! contract). Each is mapped to its number, text and metric label here and
//! nowhere else.

/// The `code` of an `error` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    Internal,
    Unauthorized,
    UnknownChannel,
    PermissionDenied,
    UnknownCommand,
    AlreadySubscribed,
    LimitExceeded,
    BadRequest,
    NotAvailable,
    TooManyRequests,
    Unrecoverable,
    /// A code of the application's own (1000 to 1999), from its backend
    /// (the proxy): passed to the client as it came.
    Application(u16),
}

impl ErrorCode {
    pub const fn code(self) -> u32 {
        match self {
            ErrorCode::Internal => 100,
            ErrorCode::Unauthorized => 101,
            ErrorCode::UnknownChannel => 102,
            ErrorCode::PermissionDenied => 103,
            ErrorCode::UnknownCommand => 104,
            ErrorCode::AlreadySubscribed => 105,
            ErrorCode::LimitExceeded => 106,
            ErrorCode::BadRequest => 107,
            ErrorCode::NotAvailable => 108,
            ErrorCode::TooManyRequests => 109,
            ErrorCode::Unrecoverable => 112,
            ErrorCode::Application(code) => code as u32,
        }
    }

    /// The default message; replies may say more.
    pub const fn message(self) -> &'static str {
        match self {
            ErrorCode::Internal => "internal error",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::UnknownChannel => "unknown channel",
            ErrorCode::PermissionDenied => "permission denied",
            ErrorCode::UnknownCommand => "unknown command",
            ErrorCode::AlreadySubscribed => "already subscribed",
            ErrorCode::LimitExceeded => "limit exceeded",
            ErrorCode::BadRequest => "bad request",
            ErrorCode::NotAvailable => "not available",
            ErrorCode::TooManyRequests => "too many requests",
            ErrorCode::Unrecoverable => "unrecoverable position",
            ErrorCode::Application(_) => "application error",
        }
    }

    /// A bounded metric label.
    pub const fn label(self) -> &'static str {
        match self {
            ErrorCode::Internal => "100",
            ErrorCode::Unauthorized => "101",
            ErrorCode::UnknownChannel => "102",
            ErrorCode::PermissionDenied => "103",
            ErrorCode::UnknownCommand => "104",
            ErrorCode::AlreadySubscribed => "105",
            ErrorCode::LimitExceeded => "106",
            ErrorCode::BadRequest => "107",
            ErrorCode::NotAvailable => "108",
            ErrorCode::TooManyRequests => "109",
            ErrorCode::Unrecoverable => "112",
            ErrorCode::Application(_) => "application",
        }
    }

    /// The code a backend answered: one of the protocol's, or an
    /// application code from 1000 to 1999; None for anything else.
    pub fn from_backend(code: u32) -> Option<ErrorCode> {
        const TABLE: [ErrorCode; 11] = [
            ErrorCode::Internal,
            ErrorCode::Unauthorized,
            ErrorCode::UnknownChannel,
            ErrorCode::PermissionDenied,
            ErrorCode::UnknownCommand,
            ErrorCode::AlreadySubscribed,
            ErrorCode::LimitExceeded,
            ErrorCode::BadRequest,
            ErrorCode::NotAvailable,
            ErrorCode::TooManyRequests,
            ErrorCode::Unrecoverable,
        ];
        match code {
            1000..=1999 => Some(ErrorCode::Application(code as u16)),
            _ => TABLE.into_iter().find(|c| c.code() == code),
        }
    }
}

/// The status code of a close frame (and of the `disconnect` push before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseCode {
    Normal,
    GoingAway,
    ProtocolError,
    InvalidPayload,
    MessageTooBig,
    InternalError,
    Malformed,
    Unauthorized,
    SlowConsumer,
    ConnectionLimit,
    HeartbeatTimeout,
    RateLimited,
    Rebalance,
}

impl CloseCode {
    pub const ALL: [CloseCode; 13] = [
        CloseCode::Normal,
        CloseCode::GoingAway,
        CloseCode::ProtocolError,
        CloseCode::InvalidPayload,
        CloseCode::MessageTooBig,
        CloseCode::InternalError,
        CloseCode::Malformed,
        CloseCode::Unauthorized,
        CloseCode::SlowConsumer,
        CloseCode::ConnectionLimit,
        CloseCode::HeartbeatTimeout,
        CloseCode::RateLimited,
        CloseCode::Rebalance,
    ];

    pub const fn code(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::ProtocolError => 1002,
            CloseCode::InvalidPayload => 1007,
            CloseCode::MessageTooBig => 1009,
            CloseCode::InternalError => 1011,
            CloseCode::Malformed => 4001,
            CloseCode::Unauthorized => 4003,
            CloseCode::SlowConsumer => 4008,
            CloseCode::ConnectionLimit => 4009,
            CloseCode::HeartbeatTimeout => 4011,
            CloseCode::RateLimited => 4029,
            CloseCode::Rebalance => 4012,
        }
    }

    pub fn from_code(code: u16) -> Option<CloseCode> {
        CloseCode::ALL.into_iter().find(|c| c.code() == code)
    }

    /// The reason sent in the close frame and the `disconnect` push.
    pub const fn reason(self) -> &'static str {
        match self {
            CloseCode::Normal => "normal closure",
            CloseCode::GoingAway => "going away",
            CloseCode::ProtocolError => "protocol error",
            CloseCode::InvalidPayload => "invalid payload",
            CloseCode::MessageTooBig => "message too big",
            CloseCode::InternalError => "internal error",
            CloseCode::Malformed => "malformed message",
            CloseCode::Unauthorized => "unauthorized",
            CloseCode::SlowConsumer => "slow consumer",
            CloseCode::ConnectionLimit => "connection limit reached",
            CloseCode::HeartbeatTimeout => "heartbeat timeout",
            CloseCode::RateLimited => "rate limited",
            CloseCode::Rebalance => "rebalance: reconnect to another node",
        }
    }

    /// Whether the client should reconnect after this close.
    pub const fn reconnect(self) -> bool {
        matches!(
            self,
            CloseCode::GoingAway
                | CloseCode::InternalError
                | CloseCode::SlowConsumer
                | CloseCode::ConnectionLimit
                | CloseCode::HeartbeatTimeout
                | CloseCode::RateLimited
                | CloseCode::Rebalance
        )
    }

    /// A bounded metric label.
    pub const fn label(self) -> &'static str {
        match self {
            CloseCode::Normal => "1000",
            CloseCode::GoingAway => "1001",
            CloseCode::ProtocolError => "1002",
            CloseCode::InvalidPayload => "1007",
            CloseCode::MessageTooBig => "1009",
            CloseCode::InternalError => "1011",
            CloseCode::Malformed => "4001",
            CloseCode::Unauthorized => "4003",
            CloseCode::SlowConsumer => "4008",
            CloseCode::ConnectionLimit => "4009",
            CloseCode::HeartbeatTimeout => "4011",
            CloseCode::RateLimited => "4029",
            CloseCode::Rebalance => "4012",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_codes() {
        for c in CloseCode::ALL {
            assert_eq!(c.label(), c.code().to_string());
            assert_eq!(CloseCode::from_code(c.code()), Some(c));
        }
        assert_eq!(ErrorCode::Unrecoverable.label(), "112");
        assert_eq!(ErrorCode::BadRequest.code(), 107);
        assert_eq!(ErrorCode::from_backend(103), Some(ErrorCode::PermissionDenied));
        assert_eq!(ErrorCode::from_backend(1404).map(ErrorCode::code), Some(1404));
        assert_eq!(ErrorCode::from_backend(110), None);
        assert_eq!(ErrorCode::from_backend(2000), None);
    }
}
