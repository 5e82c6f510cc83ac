//! The close handshake (RFC 6455 §5.5.1, §7): who sent and received a close
//! frame, and when the transport may be closed.

use super::{Role, State};
use crate::close::CloseCode;

/// The close-handshake flags of a connection.
#[derive(Debug, Default)]
pub(super) struct CloseState {
    /// Our close frame is queued (or written).
    pub(super) sent: bool,
    /// The peer's close frame arrived.
    pub(super) received: bool,
    /// The connection was failed (protocol error, limit, keepalive).
    pub(super) failed: bool,
    /// The peer closed the transport.
    pub(super) eof: bool,
    /// The close timeout passed.
    pub(super) timed_out: bool,
    /// The code of the first close frame, sent or received (1005 for a
    /// received close without a code).
    pub(super) first_code: Option<CloseCode>,
    /// The first close frame was the peer's (for the end report).
    pub(super) peer_first: bool,
}

impl CloseState {
    pub(super) fn state(&self) -> State {
        if self.is_terminated() {
            State::Closed
        } else if self.sent || self.received {
            State::Closing
        } else {
            State::Open
        }
    }

    /// Records the first close frame of the handshake.
    pub(super) fn note_code(&mut self, code: Option<CloseCode>) {
        if self.first_code.is_none() {
            self.first_code = Some(code.unwrap_or(CloseCode::NO_STATUS_RECEIVED));
        }
    }

    /// The handshake completed (both close frames) without a failure.
    pub(super) fn completed(&self) -> bool {
        self.sent && self.received && !self.failed
    }

    /// No more messages will be produced.
    pub(super) fn is_terminated(&self) -> bool {
        self.failed || self.eof || self.timed_out || (self.sent && self.received)
    }

    /// The server closes TCP first (RFC 6455 §7.1.1): as soon as both close
    /// frames are exchanged. A client waits for the server's FIN, bounded by
    /// the close timeout. A failed connection closes once its close frame is
    /// written; a timed-out one at once.
    pub(super) fn should_shutdown(&self, role: Role, output_written: bool) -> bool {
        if self.timed_out {
            return true;
        }
        output_written
            && (self.failed || self.eof || (self.sent && self.received && role == Role::Server))
    }
}
