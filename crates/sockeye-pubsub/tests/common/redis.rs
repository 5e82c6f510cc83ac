//! Real redis-server processes for the tests: the one `cargo xtask test`
//! starts (`SOCKEYE_TEST_REDIS_URL`), or private ones a test starts, kills
//! and restarts. Without redis-server the tests fail and say how to get it.

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The redis-server binary: `SOCKEYE_REDIS_SERVER`, else from PATH.
fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SOCKEYE_REDIS_SERVER") {
        return PathBuf::from(p);
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let p = dir.join("redis-server");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "redis-server not found: these tests need a real Redis. Run `cargo xtask test` \
         (installs Debian's redis-server as root and starts one), install redis-server, \
         or set SOCKEYE_REDIS_SERVER to its path"
    );
}

/// A pseudo-random number below 10 000 (no rand crate needed).
fn rand_port() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    (RandomState::new().hash_one(std::time::SystemTime::now()) % 10_000) as u16
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A redis-server this test owns; killed on drop.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
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
        let mut server = Self {
            port,
            dir,
            args,
            child: None,
        };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the process at once (SIGKILL: no shutdown save).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same port and directory.
    pub async fn restart(&mut self) {
        self.kill();
        let child = Command::new(binary())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server: {e}"));
        self.child = Some(child);
        wait_ready(self.port).await;
    }

    /// Sends a signal to the process (`STOP`, `CONT`).
    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("redis-server is running").id();
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} {pid}");
    }

    /// Runs one command (inline protocol) and returns the raw reply.
    pub async fn command(&self, line: &str) -> String {
        command(self.port, line).await
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
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

async fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await {
            let _ = s.write_all(b"PING\r\n").await;
            let mut buf = [0u8; 64];
            if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await
                && buf[..n].starts_with(b"+PONG")
            {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "redis-server on port {port} did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
