//! A server process a test owns (redis-server, nats-server): found on the
//! machine, started on a loopback port with its own arguments, killed,
//! restarted, paused with SIGSTOP and resumed. `redis` and `nats` say how to
//! launch theirs and how to tell it is ready.

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The binary `name`: the path in the environment variable `env`, else the
/// first of `known` that exists, else from PATH; panics with `missing`
/// (how to get it) if there is none.
pub fn find_binary(env: &str, name: &str, known: &[&str], missing: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    if let Some(p) = known.iter().map(PathBuf::from).find(|p| p.is_file()) {
        return p;
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let p = dir.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("{missing}");
}

/// A free loopback port.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How to tell a server is up: after connecting, send `send` (may be empty)
/// and expect the reply to start with `expect`.
#[derive(Clone, Copy)]
pub struct Probe {
    pub send: &'static [u8],
    pub expect: &'static [u8],
}

/// A server process this test owns; killed on drop (resumed first, if it
/// was paused).
pub struct ServerProcess {
    pub port: u16,
    /// For messages: `redis-server`, `nats-server`.
    name: &'static str,
    binary: PathBuf,
    args: Vec<String>,
    probe: Probe,
    child: Option<Child>,
}

impl ServerProcess {
    /// Starts `binary` with `args` and waits until it answers on `port`.
    pub async fn start(
        name: &'static str,
        binary: PathBuf,
        port: u16,
        args: Vec<String>,
        probe: Probe,
    ) -> Self {
        let mut server = Self {
            port,
            name,
            binary,
            args,
            probe,
            child: None,
        };
        server.restart().await;
        server
    }

    /// Kills the process at once (SIGKILL: no shutdown save).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again with the same arguments (same port, same
    /// directory).
    pub async fn restart(&mut self) {
        self.kill();
        let child = Command::new(&self.binary)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.name));
        self.child = Some(child);
        self.wait_ready().await;
    }

    /// Sends a signal to the process (`STOP`, `CONT`).
    pub fn signal(&self, name: &str) {
        let pid = self
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("{} is running", self.name))
            .id();
        assert!(send_signal(pid, name), "kill -{name} {pid}");
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)).await {
                if !self.probe.send.is_empty() {
                    let _ = s.write_all(self.probe.send).await;
                }
                let mut buf = [0u8; 64];
                if let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await
                    && buf[..n].starts_with(self.probe.expect)
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} on port {} did not start",
                self.name,
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // A paused process is resumed first; best effort, as this may run
        // while a failed test unwinds.
        if let Some(child) = &self.child {
            send_signal(child.id(), "CONT");
        }
        self.kill();
    }
}

/// `kill -<name> <pid>`; whether it worked.
fn send_signal(pid: u32, name: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .is_ok_and(|s| s.success())
}
