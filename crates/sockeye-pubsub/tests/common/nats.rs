//! Real nats-server processes the tests own: started on a free loopback
//! port, killed, restarted, paused with SIGSTOP and resumed. Without
//! nats-server the tests fail and say how to get it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The nats-server binary: `SOCKEYE_NATS_SERVER`, else Debian's, else from
/// PATH.
fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SOCKEYE_NATS_SERVER") {
        return PathBuf::from(p);
    }
    let debian = PathBuf::from("/usr/sbin/nats-server");
    if debian.is_file() {
        return debian;
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let p = dir.join("nats-server");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "nats-server not found: these tests need a real NATS server. Run `cargo xtask test` \
         (installs Debian's nats-server as root), install nats-server, or set \
         SOCKEYE_NATS_SERVER to its path"
    );
}

/// A nats-server this test owns; killed on drop.
pub struct NatsServer {
    pub port: u16,
    child: Option<Child>,
}

impl NatsServer {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Self { port, child: None };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the process at once (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same port.
    pub async fn restart(&mut self) {
        self.kill();
        let child = Command::new(binary())
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start nats-server: {e}"));
        self.child = Some(child);
        wait_ready(self.port).await;
    }

    /// Sends a signal to the process (`STOP`, `CONT`).
    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("nats-server is running").id();
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} {pid}");
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal("CONT");
        }
        self.kill();
    }
}

/// Waits until the server greets a connection with its INFO line.
async fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await {
            let mut buf = [0u8; 8];
            if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await
                && buf[..n].starts_with(b"INFO")
            {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "nats-server on port {port} did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
