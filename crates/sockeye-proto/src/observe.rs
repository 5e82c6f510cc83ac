//! What a socket reports about itself: how it ended (a `tracing` event,
//! always), and counters through the `metrics` facade (feature `metrics`;
//! the list is in the [crate docs](crate#metrics)).
//!
//! A connection registers its traffic counters once, when it is made, and
//! keeps the handles: a message costs no lookup. It counts messages and
//! bytes in plain integers and adds them to the counters in batches (see
//! [`Traffic`]).

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

/// Counts a connection holds back at most before it publishes them (a
/// socket that never waits still shows its traffic every this many
/// messages).
#[cfg(feature = "metrics")]
const PUBLISH_EVERY: u32 = 64;

/// One connection's message and payload-byte counters, and the counts not
/// yet added to them.
///
/// A message adds to plain integers here; the counters (atomics that every
/// connection of the process shares, one per label set) are incremented
/// once per batch: when the driver waits for input or finishes a flush
/// ([`publish`](Self::publish)), every [`PUBLISH_EVERY`] messages, and
/// when the connection is dropped. So a burst of messages costs a handful
/// of atomic increments, not two per message, and a socket that waits
/// shows every message it had.
#[cfg(feature = "metrics")]
#[derive(Debug)]
pub(crate) struct Traffic {
    /// Messages in, by kind (text, binary), then out.
    messages: [Counter; 4],
    /// Payload bytes in, then out.
    bytes: [Counter; 2],
    pending_messages: [u32; 4],
    pending_bytes: [u64; 2],
    /// Messages counted in `pending_*` (the batch's size).
    unpublished: u32,
}

/// Slots of [`Traffic`]'s message counters.
#[cfg(feature = "metrics")]
const TEXT_IN: usize = 0;
#[cfg(feature = "metrics")]
const BINARY_IN: usize = 1;
#[cfg(feature = "metrics")]
const TEXT_OUT: usize = 2;
#[cfg(feature = "metrics")]
const BINARY_OUT: usize = 3;

#[cfg(feature = "metrics")]
impl Traffic {
    pub(crate) fn new(role: Role) -> Self {
        let role = role_label(role);
        let messages = |direction: &'static str, kind: &'static str| metrics::counter!(MESSAGES, "role" => role, "direction" => direction, "kind" => kind);
        let bytes = |direction: &'static str| metrics::counter!(BYTES, "role" => role, "direction" => direction);
        Self {
            messages: [
                messages("in", "text"),
                messages("in", "binary"),
                messages("out", "text"),
                messages("out", "binary"),
            ],
            bytes: [bytes("in"), bytes("out")],
            pending_messages: [0; 4],
            pending_bytes: [0; 2],
            unpublished: 0,
        }
    }

    /// A message handed to the application (control messages are not
    /// counted).
    pub(crate) fn received(&mut self, message: &Message) {
        match message {
            Message::Text(text) => self.add(TEXT_IN, text.len()),
            Message::Binary(data) => self.add(BINARY_IN, data.len()),
            _ => {}
        }
    }

    /// A data message of `len` payload bytes queued by the application.
    pub(crate) fn sent(&mut self, opcode: OpCode, len: usize) {
        match opcode {
            OpCode::Text => self.add(TEXT_OUT, len),
            OpCode::Binary => self.add(BINARY_OUT, len),
            _ => {}
        }
    }

    #[inline]
    fn add(&mut self, slot: usize, len: usize) {
        self.pending_messages[slot] += 1;
        // Slots 0 and 1 are in, 2 and 3 out.
        self.pending_bytes[slot / 2] += len as u64;
        self.unpublished += 1;
        if self.unpublished >= PUBLISH_EVERY {
            self.publish_batch();
        }
    }

    /// Adds the counts held back to the counters. Inlined to the check
    /// for none: the driver calls it each time it waits.
    #[inline]
    pub(crate) fn publish(&mut self) {
        if self.unpublished > 0 {
            self.publish_batch();
        }
    }

    #[inline(never)]
    fn publish_batch(&mut self) {
        self.unpublished = 0;
        for (counter, n) in self.messages.iter().zip(&mut self.pending_messages) {
            if *n > 0 {
                counter.increment(u64::from(std::mem::take(n)));
            }
        }
        for (counter, n) in self.bytes.iter().zip(&mut self.pending_bytes) {
            if *n > 0 {
                counter.increment(std::mem::take(n));
            }
        }
    }
}

/// A connection's last counts are published when it goes.
#[cfg(feature = "metrics")]
impl Drop for Traffic {
    fn drop(&mut self) {
        self.publish();
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
