//! An in-memory client/server pair with a simulated clock, for testing the
//! state machine deterministically (quinn's `Pair` idea).

use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::{Connection, Role};
use crate::config::Config;
use crate::error::Error;
use crate::message::Message;

pub(crate) struct Pair {
    pub(crate) client: Connection,
    pub(crate) server: Connection,
    pub(crate) now: Instant,
    to_server: BytesMut,
    to_client: BytesMut,
    pub(crate) client_errors: Vec<Error>,
    pub(crate) server_errors: Vec<Error>,
    client_seen: Vec<Message>,
    server_seen: Vec<Message>,
}

impl Pair {
    pub(crate) fn new(client: Config, server: Config) -> Self {
        let mut pair = Self {
            client: Connection::new(Role::Client, client),
            server: Connection::new(Role::Server, server),
            now: Instant::now(),
            to_server: BytesMut::new(),
            to_client: BytesMut::new(),
            client_errors: Vec::new(),
            server_errors: Vec::new(),
            client_seen: Vec::new(),
            server_seen: Vec::new(),
        };
        pair.tick();
        pair
    }

    pub(crate) fn default_pair() -> Self {
        Self::new(Config::default(), Config::default())
    }

    fn tick(&mut self) {
        let now = self.now;
        if let Err(e) = self.client.handle_timeout(now) {
            self.client_errors.push(e);
        }
        if let Err(e) = self.server.handle_timeout(now) {
            self.server_errors.push(e);
        }
    }

    /// Moves bytes both ways until nothing changes.
    pub(crate) fn drive(&mut self) {
        loop {
            let a = self.client.poll_transmit(&mut self.to_server);
            let b = self.server.poll_transmit(&mut self.to_client);
            if a + b == 0 && self.to_server.is_empty() && self.to_client.is_empty() {
                break;
            }
            read_all(
                &mut self.server,
                &mut self.to_server,
                &mut self.server_seen,
                &mut self.server_errors,
            );
            read_all(
                &mut self.client,
                &mut self.to_client,
                &mut self.client_seen,
                &mut self.client_errors,
            );
            self.tick();
        }
    }

    /// Advances the simulated clock and delivers what the timers produce.
    pub(crate) fn advance(&mut self, by: Duration) {
        self.now += by;
        self.tick();
        self.drive();
    }

    pub(crate) fn server_events(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.server_seen)
    }

    pub(crate) fn client_events(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.client_seen)
    }
}

/// Feeds `buf` to `conn` until it is consumed or stuck, collecting events.
pub(crate) fn read_all(
    conn: &mut Connection,
    buf: &mut BytesMut,
    events: &mut Vec<Message>,
    errors: &mut Vec<Error>,
) {
    loop {
        let before = buf.len();
        if let Err(e) = conn.handle_read(buf) {
            errors.push(e);
        }
        let mut progressed = buf.len() != before;
        while let Some(m) = conn.poll_event() {
            events.push(m);
            progressed = true;
        }
        if !progressed || buf.is_empty() {
            break;
        }
    }
}
