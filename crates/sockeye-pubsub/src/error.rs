//! The crate's error type and the error codes of the wire protocol.

use std::fmt;

/// A wire-protocol error code, sent to clients as `{"error":{"code":...}}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The authorizer refused.
    Forbidden,
    /// Malformed command, or an operation the namespace does not allow.
    BadRequest,
    /// No namespace is configured for the topic, or the name is invalid.
    UnknownTopic,
    /// A limit was reached (subscribers, subscriptions, message size).
    LimitExceeded,
    /// Too many commands too fast.
    RateLimited,
    /// The broker failed (retry later).
    Unavailable,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forbidden => "forbidden",
            Self::BadRequest => "bad_request",
            Self::UnknownTopic => "unknown_topic",
            Self::LimitExceeded => "limit_exceeded",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
        }
    }

    /// Whether retrying later may succeed.
    pub fn is_temporary(self) -> bool {
        matches!(self, Self::RateLimited | Self::Unavailable)
    }
}

/// Everything that can go wrong in sockeye-pubsub.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A request was refused, with the code sent to clients.
    Refused {
        /// The wire code.
        code: ErrorCode,
        /// A short explanation.
        message: String,
    },
    /// The broker failed.
    Broker(String),
    /// The hub's configuration cannot be served (see
    /// [`HubBuilder::try_build`](crate::HubBuilder::try_build)).
    Config(String),
    /// Data could not be encoded as JSON.
    Json(serde_json::Error),
    /// The WebSocket failed.
    WebSocket(sockeye_proto::Error),
    /// The client is closed.
    Closed,
}

impl Error {
    pub(crate) fn refused(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Refused {
            code,
            message: message.into(),
        }
    }

    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Refused { code, .. } => *code,
            Self::Json(_) => ErrorCode::BadRequest,
            Self::Broker(_) | Self::Config(_) | Self::WebSocket(_) | Self::Closed => {
                ErrorCode::Unavailable
            }
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused { code, message } => write!(f, "{}: {message}", code.as_str()),
            Self::Broker(e) => write!(f, "broker: {e}"),
            Self::Config(e) => write!(f, "configuration: {e}"),
            Self::Json(e) => write!(f, "JSON: {e}"),
            Self::WebSocket(e) => write!(f, "WebSocket: {e}"),
            Self::Closed => f.write_str("closed"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Json(e) => Some(e),
            Self::WebSocket(e) => Some(e),
            _ => None,
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self::Json(e)
    }
}

impl From<sockeye_proto::Error> for Error {
    fn from(e: sockeye_proto::Error) -> Self {
        Self::WebSocket(e)
    }
}
