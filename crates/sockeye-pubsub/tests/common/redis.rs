//! Real redis-server processes for the tests: the one `cargo xtask test`
//! starts (`SOCKEYE_TEST_REDIS_URL`), or private ones a test starts, kills
//! and restarts. Without redis-server the tests fail and say how to get it.

use std::net::TcpListener as StdListener;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::server::{Probe, ServerProcess, find_binary, free_port};

/// The redis-server binary: `SOCKEYE_REDIS_SERVER`, else from PATH.
fn binary() -> PathBuf {
    find_binary(
        "SOCKEYE_REDIS_SERVER",
        "redis-server",
        &[],
        "redis-server not found: these tests need a real Redis. Run `cargo xtask test` \
         (installs Debian's redis-server as root and starts one), install redis-server, \
         or set SOCKEYE_REDIS_SERVER to its path",
    )
}

/// Ready once it answers `PING`.
const READY: Probe = Probe {
    send: b"PING\r\n",
    expect: b"+PONG",
};

/// A pseudo-random number below 10 000 (no rand crate needed).
fn rand_port() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    (RandomState::new().hash_one(std::time::SystemTime::now()) % 10_000) as u16
}

/// A redis-server this test owns, in its own directory; killed on drop.
/// `kill`, `restart`, `signal` and `port` are its [`ServerProcess`]'s.
pub struct RedisServer {
    process: ServerProcess,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts one with no persistence.
    pub async fn start() -> Self {
        Self::start_with(&["--save", "", "--appendonly", "no"]).await
    }

    /// Starts one with extra arguments (e.g. AOF on).
    pub async fn start_with(extra: &[&str]) -> Self {
        Self::start_on(free_port(), extra).await
    }

    /// Starts an empty cluster node (its bus port is port + 10000).
    pub async fn start_cluster_node() -> Self {
        let port = loop {
            let port = 20_000 + rand_port();
            if StdListener::bind(("127.0.0.1", port)).is_ok()
                && StdListener::bind(("127.0.0.1", port + 10_000)).is_ok()
            {
                break port;
            }
        };
        let conf = format!("nodes-{port}.conf");
        Self::start_on(
            port,
            &[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &conf,
                "--save",
                "",
                "--appendonly",
                "no",
            ],
        )
        .await
    }

    async fn start_on(port: u16, extra: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!("sockeye-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut args = vec![
            "--port".to_owned(),
            port.to_string(),
            "--bind".to_owned(),
            "127.0.0.1".to_owned(),
            "--dir".to_owned(),
            dir.display().to_string(),
            "--daemonize".to_owned(),
            "no".to_owned(),
            "--logfile".to_owned(),
            String::new(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let process = ServerProcess::start("redis-server", binary(), port, args, READY).await;
        Self { process, dir }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs one command (inline protocol) and returns the raw reply.
    pub async fn command(&self, line: &str) -> String {
        command(self.port, line).await
    }
}

impl Deref for RedisServer {
    type Target = ServerProcess;

    fn deref(&self) -> &ServerProcess {
        &self.process
    }
}

impl DerefMut for RedisServer {
    fn deref_mut(&mut self) -> &mut ServerProcess {
        &mut self.process
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // The process first, then its directory.
        self.process.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends an inline command and reads one reply (enough for the simple
/// replies the tests check).
pub async fn command(port: u16, line: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 64 << 10];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The shared server of `cargo xtask test`, or a private one.
pub enum Shared {
    External(String),
    Own(RedisServer),
}

impl Shared {
    pub async fn get() -> Self {
        match std::env::var("SOCKEYE_TEST_REDIS_URL") {
            Ok(url) if !url.is_empty() => Self::External(url),
            _ => Self::Own(RedisServer::start().await),
        }
    }

    pub fn url(&self) -> String {
        match self {
            Self::External(url) => url.clone(),
            Self::Own(s) => s.url(),
        }
    }

    pub fn port(&self) -> u16 {
        match self {
            Self::External(url) => url
                .rsplit(':')
                .next()
                .and_then(|p| p.trim_end_matches('/').parse().ok())
                .unwrap(),
            Self::Own(s) => s.port,
        }
    }
}
