//! What a socket reports about itself: how it ended (a `tracing` event,
//! always), and counters through the `metrics` facade (feature `metrics`;
//! the list is in the [crate docs](crate#metrics)).
//!
//! A connection registers its traffic counters once, when it is made, and
//! keeps the handles: a message costs an increment, not a lookup.

#[cfg(feature = "metrics")]
use metrics::Counter;

#[cfg(all(feature = "tokio", feature = "metrics"))]
use crate::close::CloseCode;
use crate::conn::Role;
#[cfg(feature = "metrics")]
use crate::frame::OpCode;
#[cfg(feature = "metrics")]
use crate::message::Message;

#[cfg(feature = "metrics")]
const MESSAGES: &str = "sockeye_messages_total";
#[cfg(feature = "metrics")]
const BYTES: &str = "sockeye_payload_bytes_total";
#[cfg(all(feature = "tokio", feature = "metrics"))]
const CLOSES: &str = "sockeye_socket_closes_total";

pub(crate) fn role_label(role: Role) -> &'static str {
    match role {
        Role::Client => "client",
        Role::Server => "server",
    }
}

/// One connection's message and payload-byte counters.
#[cfg(feature = "metrics")]
#[derive(Debug)]
pub(crate) struct Traffic {
    text_in: Counter,
    binary_in: Counter,
    bytes_in: Counter,
    text_out: Counter,
    binary_out: Counter,
    bytes_out: Counter,
}

#[cfg(feature = "metrics")]
impl Traffic {
    pub(crate) fn new(role: Role) -> Self {
        let role = role_label(role);
        let messages = |direction: &'static str, kind: &'static str| metrics::counter!(MESSAGES, "role" => role, "direction" => direction, "kind" => kind);
        let bytes = |direction: &'static str| metrics::counter!(BYTES, "role" => role, "direction" => direction);
        Self {
            text_in: messages("in", "text"),
            binary_in: messages("in", "binary"),
            bytes_in: bytes("in"),
            text_out: messages("out", "text"),
            binary_out: messages("out", "binary"),
            bytes_out: bytes("out"),
        }
    }

    /// A message handed to the application (control messages are not
    /// counted).
    pub(crate) fn received(&self, message: &Message) {
        let (counter, len) = match message {
            Message::Text(text) => (&self.text_in, text.len()),
            Message::Binary(data) => (&self.binary_in, data.len()),
            _ => return,
        };
        counter.increment(1);
        self.bytes_in.increment(len as u64);
    }

    /// A data message of `len` payload bytes queued by the application.
    pub(crate) fn sent(&self, opcode: OpCode, len: usize) {
        let counter = match opcode {
            OpCode::Text => &self.text_out,
            OpCode::Binary => &self.binary_out,
            _ => return,
        };
        counter.increment(1);
        self.bytes_out.increment(len as u64);
    }
}

/// Who sent the first close frame of a socket.
#[cfg(feature = "tokio")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Initiator {
    /// This end.
    Local,
    /// The peer.
    Remote,
    /// No close frame either way: the transport ended first (EOF, reset,
    /// an I/O error, the socket dropped).
    None,
}

#[cfg(feature = "tokio")]
impl Initiator {
    /// The label and field value: `local`, `remote` or `none`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Initiator::Local => "local",
            Initiator::Remote => "remote",
            Initiator::None => "none",
        }
    }
}

/// A socket is over: `code` is the first close frame's (1005 for a peer's
/// close without a code), `None` when there was none (counted as 1006).
#[cfg(all(feature = "tokio", feature = "metrics"))]
pub(crate) fn closed(role: Role, code: Option<CloseCode>, initiator: Initiator) {
    metrics::counter!(
        CLOSES,
        "role" => role_label(role),
        "code" => code_label(code.unwrap_or(CloseCode::ABNORMAL)),
        "initiator" => initiator.as_str()
    )
    .increment(1);
}

/// The `code` label: 1000–1015 as their number, the registered and
/// private ranges (3000–4999) as `application`, anything else as `other`,
/// so the label takes at most 18 values.
#[cfg(all(feature = "tokio", feature = "metrics"))]
pub(crate) fn code_label(code: CloseCode) -> &'static str {
    const RFC: [&str; 16] = [
        "1000", "1001", "1002", "1003", "1004", "1005", "1006", "1007", "1008", "1009", "1010",
        "1011", "1012", "1013", "1014", "1015",
    ];
    match code.as_u16() {
        c @ 1000..=1015 => RFC[usize::from(c - 1000)],
        3000..=4999 => "application",
        _ => "other",
    }
}

#[cfg(all(test, feature = "tokio", feature = "metrics"))]
mod tests {
    use super::*;

    #[test]
    fn close_code_labels_are_bounded() {
        let label = |c| code_label(CloseCode::from_u16_unchecked(c));
        assert_eq!(label(1000), "1000");
        assert_eq!(label(1009), "1009");
        assert_eq!(label(1015), "1015");
        assert_eq!(label(3000), "application");
        assert_eq!(label(4999), "application");
        for other in [0, 999, 1016, 2999, 5000, u16::MAX] {
            assert_eq!(label(other), "other");
        }
        let distinct: std::collections::HashSet<_> = (0..=u16::MAX).map(label).collect();
        assert_eq!(distinct.len(), 18);
    }
}
