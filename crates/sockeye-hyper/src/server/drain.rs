//! Graceful drain: on shutdown, stop new upgrades, send every open socket a
//! close frame (1001 Going away, or 1012 Service restart), wait a bounded
//! time for the close handshakes, then drop what is left.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sockeye_proto::{CloseCode, CloseHandle};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// Tracks the sockets of one or more [`UpgradeService`](super::UpgradeService)s
/// and closes them on shutdown. Cheap to clone.
///
/// HTTP connections are hyper's business (hyper-util's `GracefulShutdown`
/// stops them); an upgraded socket has left hyper, so it is drained here.
///
/// ```no_run
/// use sockeye_hyper::server::{Drain, Handshake, UpgradeService, WebSocket};
/// # async fn run() {
/// let drain = Drain::new();
/// let service = UpgradeService::new(|ws: WebSocket, _: Handshake| async move { drop(ws) })
///     .drain(&drain);
/// // ... serve `service` ...
/// tokio::signal::ctrl_c().await.unwrap();
/// let report = drain.shutdown().await; // 1001 to every socket, 10 s at most
/// println!("{} closed, {} dropped", report.closed, report.forced);
/// # drop(service); }
/// ```
#[derive(Clone, Default)]
pub struct Drain {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    draining: AtomicBool,
    state: Mutex<State>,
    changed: Notify,
    timeout: Mutex<Option<Duration>>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    sockets: HashMap<u64, Slot>,
    /// The close frame sent to sockets that register while draining.
    closing_with: Option<(CloseCode, &'static str)>,
}

#[derive(Default)]
struct Slot {
    close: Option<CloseHandle>,
    abort: Option<AbortHandle>,
    /// `abort` is the socket's own task, not the upgrade's before it.
    socket_task: bool,
}

/// What a drain achieved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Sockets that finished within the timeout.
    pub closed: usize,
    /// Sockets still open at the timeout, whose tasks were aborted.
    pub forced: usize,
}

impl DrainReport {
    /// The report, counted (feature `metrics`) as
    /// `sockeye_drain_sockets_total{outcome="closed"|"forced"}`.
    fn counted(closed: usize, forced: usize) -> Self {
        #[cfg(feature = "metrics")]
        {
            const DRAINED: &str = "sockeye_drain_sockets_total";
            metrics::counter!(DRAINED, "outcome" => "closed").increment(closed as u64);
            metrics::counter!(DRAINED, "outcome" => "forced").increment(forced as u64);
        }
        Self { closed, forced }
    }
}

/// The default bound on waiting for close handshakes.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

impl Drain {
    /// A drain with the default timeout (10 s).
    pub fn new() -> Self {
        Self::default()
    }

    /// How long [`shutdown`](Self::shutdown) and [`restart`](Self::restart)
    /// wait before dropping the remaining sockets.
    #[must_use]
    pub fn with_timeout(self, timeout: Duration) -> Self {
        *lock(&self.inner.timeout) = Some(timeout);
        self
    }

    /// Whether a drain has started (new upgrades get 503).
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// Sockets currently registered.
    pub fn open_sockets(&self) -> usize {
        lock(&self.inner.state).sockets.len()
    }

    /// Closes every socket with 1001 (Going away).
    pub async fn shutdown(&self) -> DrainReport {
        self.drain(CloseCode::GOING_AWAY, "server shutting down")
            .await
    }

    /// Closes every socket with 1012 (Service restart): clients may come back.
    pub async fn restart(&self) -> DrainReport {
        self.drain(CloseCode::SERVICE_RESTART, "service restart")
            .await
    }

    /// Stops new upgrades, sends `code` to every socket, waits for them to
    /// end (at most the timeout), then aborts the tasks of the rest. With
    /// feature `metrics` the report's counts are added to
    /// `sockeye_drain_sockets_total{outcome="closed"|"forced"}`.
    pub async fn drain(&self, code: CloseCode, reason: &'static str) -> DrainReport {
        self.inner.draining.store(true, Ordering::Release);
        let timeout = lock(&self.inner.timeout).unwrap_or(DEFAULT_DRAIN_TIMEOUT);
        let started = {
            let mut state = lock(&self.inner.state);
            state.closing_with = Some((code, reason));
            for slot in state.sockets.values() {
                if let Some(handle) = &slot.close {
                    handle.close(code, reason);
                }
            }
            state.sockets.len()
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if lock(&self.inner.state).sockets.is_empty() {
                return DrainReport::counted(started, 0);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        let mut state = lock(&self.inner.state);
        let forced = state.sockets.len();
        for (_, slot) in state.sockets.drain() {
            if let Some(abort) = slot.abort {
                abort.abort();
            }
        }
        tracing::info!(
            closed = started.saturating_sub(forced),
            forced,
            "websocket drain done"
        );
        DrainReport::counted(started.saturating_sub(forced), forced)
    }

    /// Reserves a slot for a socket being upgraded.
    pub(crate) fn reserve(&self) -> Registration {
        let mut state = lock(&self.inner.state);
        let id = state.next_id;
        state.next_id += 1;
        state.sockets.insert(id, Slot::default());
        Registration {
            drain: self.clone(),
            id,
        }
    }

    /// Records the task serving reservation `id` (gone already if the task
    /// finished first): the upgrade's, then the socket's own (`socket`),
    /// which the upgrade's never replaces, whichever is recorded first.
    pub(crate) fn set_abort(&self, id: u64, abort: AbortHandle, socket: bool) {
        if let Some(slot) = lock(&self.inner.state).sockets.get_mut(&id)
            && (socket || !slot.socket_task)
        {
            slot.abort = Some(abort);
            slot.socket_task |= socket;
        }
    }
}

impl fmt::Debug for Drain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drain")
            .field("draining", &self.is_draining())
            .field("open_sockets", &self.open_sockets())
            .finish()
    }
}

/// A socket's place in the drain; dropping it (when the task ends) removes
/// the socket.
pub(crate) struct Registration {
    drain: Drain,
    id: u64,
}

impl Registration {
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The socket is up: the drain can close it now. A socket that comes up
    /// while draining is closed at once.
    pub(crate) fn set_close_handle(&self, handle: CloseHandle) {
        let mut state = lock(&self.drain.inner.state);
        if let Some((code, reason)) = state.closing_with {
            handle.close(code, reason);
        }
        if let Some(slot) = state.sockets.get_mut(&self.id) {
            slot.close = Some(handle);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.drain.inner.state).sockets.remove(&self.id);
        self.drain.inner.changed.notify_waiters();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
