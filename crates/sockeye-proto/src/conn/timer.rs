//! Timers inside the sans-IO core: keepalive ping, pong timeout, idle
//! timeout and close timeout. The core reads no clock: activity only sets
//! flags, and [`Connection::handle_timeout`] turns them into deadlines with
//! the time it is given.

use std::time::Instant;

use bytes::Bytes;

use super::Connection;
use crate::close::{CloseCode, CloseFrame};
use crate::config::Config;
use crate::error::{Error, TimeoutKind};
use crate::frame::{OpCode, Rsv};

#[derive(Debug)]
pub(super) struct Timers {
    /// Whether keepalive and the idle timeout are configured (their
    /// durations are read from the connection's [`Config`] when armed).
    keepalive: bool,
    idle: bool,
    /// Input from the peer since the last tick (tracked only with keepalive).
    peer_active: bool,
    /// A data message either way since the last tick (only with an idle timeout).
    data_active: bool,
    /// A close frame was queued; its timer is not armed yet.
    close_requested: bool,
    ping_at: Option<Instant>,
    pong_deadline: Option<Instant>,
    idle_at: Option<Instant>,
    close_at: Option<Instant>,
}

impl Timers {
    pub(super) fn new(config: &Config) -> Self {
        let keepalive = config.keepalive_interval().is_some();
        let idle = config.idle_timeout().is_some();
        Self {
            keepalive,
            idle,
            // The first tick arms the timers that are configured.
            peer_active: keepalive,
            data_active: idle,
            close_requested: false,
            ping_at: None,
            pong_deadline: None,
            idle_at: None,
            close_at: None,
        }
    }

    pub(super) fn on_peer_input(&mut self) {
        if self.keepalive {
            self.peer_active = true;
        }
    }

    pub(super) fn on_data_sent(&mut self) {
        if self.idle {
            self.data_active = true;
        }
    }

    pub(super) fn on_data_received(&mut self) {
        self.on_data_sent();
    }

    pub(super) fn request_close_timer(&mut self) {
        self.close_requested = true;
    }

    pub(super) fn needs_tick(&self) -> bool {
        self.peer_active || self.data_active || self.close_requested
    }

    pub(super) fn next_deadline(&self, closing: bool) -> Option<Instant> {
        if closing {
            return self.close_at;
        }
        [
            self.ping_at,
            self.pong_deadline,
            self.idle_at,
            self.close_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

impl Connection {
    pub(super) fn on_timeout(&mut self, now: Instant) -> Result<(), Error> {
        let config = &self.config;
        let t = &mut self.timers;
        if std::mem::take(&mut t.close_requested) {
            t.close_at = Some(now + config.close_timeout());
        }
        if std::mem::take(&mut t.peer_active) {
            t.pong_deadline = None;
            t.ping_at = config.keepalive_interval().map(|interval| now + interval);
        }
        if std::mem::take(&mut t.data_active) {
            t.idle_at = config.idle_timeout().map(|idle| now + idle);
        }

        if t.close_at.is_some_and(|at| at <= now) {
            t.close_at = None;
            self.close.timed_out = true;
            let answered = self.close.received || self.close.failed;
            return if answered {
                Ok(())
            } else {
                Err(Error::Timeout(TimeoutKind::Close))
            };
        }
        if self.close.sent || self.close.received || self.close.is_terminated() {
            // Keepalive and idle stop once the close handshake has begun.
            return Ok(());
        }
        if t.pong_deadline.is_some_and(|at| at <= now) {
            t.pong_deadline = None;
            return Err(self.fail(Error::Timeout(TimeoutKind::Keepalive)));
        }
        if t.ping_at.is_some_and(|at| at <= now) {
            t.ping_at = None;
            t.pong_deadline = Some(now + self.config.pong_timeout());
            self.write_frame(true, Rsv::NONE, OpCode::Ping, &Bytes::new());
        }
        if self.timers.idle_at.is_some_and(|at| at <= now) {
            self.timers.idle_at = None;
            self.write_close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "idle timeout")));
        }
        Ok(())
    }
}
