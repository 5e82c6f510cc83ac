//! Real nats-server processes the tests own: started on a free loopback
//! port, killed, restarted, paused with SIGSTOP and resumed. Without
//! nats-server the tests fail and say how to get it.

use std::ops::{Deref, DerefMut};
use std::path::PathBuf;

use super::server::{Probe, ServerProcess, find_binary, free_port};

/// The nats-server binary: `SOCKEYE_NATS_SERVER`, else Debian's, else from
/// PATH.
fn binary() -> PathBuf {
    find_binary(
        "SOCKEYE_NATS_SERVER",
        "nats-server",
        &["/usr/sbin/nats-server"],
        "nats-server not found: these tests need a real NATS server. Run `cargo xtask test` \
         (installs Debian's nats-server as root), install nats-server, or set \
         SOCKEYE_NATS_SERVER to its path",
    )
}

/// Ready once it greets a connection with its INFO line.
const READY: Probe = Probe {
    send: b"",
    expect: b"INFO",
};

/// A nats-server this test owns; killed on drop. `kill`, `restart`,
/// `signal` and `port` are its [`ServerProcess`]'s.
pub struct NatsServer {
    process: ServerProcess,
}

impl NatsServer {
    pub async fn start() -> Self {
        let port = free_port();
        let args = ["-a", "127.0.0.1", "-p", &port.to_string()].map(str::to_owned);
        let process = ServerProcess::start("nats-server", binary(), port, args.into(), READY).await;
        Self { process }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Deref for NatsServer {
    type Target = ServerProcess;

    fn deref(&self) -> &ServerProcess {
        &self.process
    }
}

impl DerefMut for NatsServer {
    fn deref_mut(&mut self) -> &mut ServerProcess {
        &mut self.process
    }
}
