//! Closing a socket from outside the task that owns it (server drain,
//! shutdown hooks).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Context;

use futures_util::task::AtomicWaker;

use crate::close::{CloseCode, CloseFrame};

/// Asks a [`WebSocket`](super::WebSocket) to close, from any task.
///
/// The socket sends the close frame the next time it is polled (a task
/// reading it is woken), then completes the close handshake as usual. Cheap
/// to clone; the first request wins.
///
/// ```no_run
/// # async fn run(mut ws: sockeye_proto::WebSocket<tokio::net::TcpStream>) {
/// use sockeye_proto::CloseCode;
/// let handle = ws.close_handle();
/// tokio::spawn(async move {
///     tokio::time::sleep(std::time::Duration::from_secs(60)).await;
///     handle.close(CloseCode::GOING_AWAY, "server shutting down");
/// });
/// while let Some(msg) = ws.recv().await { /* ... */ }
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct CloseHandle {
    shared: Arc<CloseRequest>,
}

#[derive(Debug, Default)]
pub(crate) struct CloseRequest {
    /// A close was asked for (stays set).
    requested: AtomicBool,
    /// A close frame is waiting for the socket to take it.
    pending: AtomicBool,
    frame: Mutex<Option<CloseFrame>>,
    waker: AtomicWaker,
}

impl CloseHandle {
    pub(crate) fn new(shared: Arc<CloseRequest>) -> Self {
        Self { shared }
    }

    /// Requests a close with `code` and `reason`. Codes that may not be sent
    /// are replaced by 1000.
    pub fn close(&self, code: CloseCode, reason: &str) {
        let code = if code.is_sendable() {
            code
        } else {
            CloseCode::NORMAL
        };
        {
            let mut frame = self.shared.frame.lock().unwrap_or_else(|e| e.into_inner());
            frame.get_or_insert_with(|| CloseFrame::new(code, reason));
        }
        self.shared.requested.store(true, Ordering::Release);
        self.shared.pending.store(true, Ordering::Release);
        self.shared.waker.wake();
    }

    /// Whether a close was requested.
    pub fn is_requested(&self) -> bool {
        self.shared.requested.load(Ordering::Acquire)
    }
}

impl CloseRequest {
    /// Whether a close was asked for and not taken yet: one atomic load,
    /// inlined, as the socket asks on every poll.
    #[inline]
    pub(crate) fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Takes the close frame once [`is_pending`](Self::is_pending) said so.
    pub(crate) fn take(&self) -> Option<CloseFrame> {
        if !self.pending.swap(false, Ordering::AcqRel) {
            return None;
        }
        self.frame.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Registers the task about to wait, so that [`CloseHandle::close`]
    /// wakes it; returns whether a close arrived before the registration
    /// (the caller must then take it instead of waiting).
    pub(crate) fn register(&self, cx: &Context<'_>) -> bool {
        self.waker.register(cx.waker());
        self.pending.load(Ordering::Acquire)
    }
}
