//! A fault case's broker: a redis-server or nats-server of our own (on a
//! free loopback port, in a temporary directory, pinned to CPU 0), which a
//! case kills and restarts on its port, or one given by URL, which a case
//! can only pause (its process found by its port); and SIGSTOP / SIGCONT.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Case, Fault, Kind};
use crate::crossnode::{pid_listening_on, url_port};
use crate::{BoxError, Running};

/// Where a case's broker comes from.
pub(super) enum Source {
    Binary(PathBuf),
    Url { url: String, pid: Option<u32> },
}

/// `default` if it is there, else the binary of that name on PATH.
fn binary(default: &str) -> Option<PathBuf> {
    let path = Path::new(default);
    if path.is_file() {
        return Some(path.to_owned());
    }
    let name = path.file_name()?;
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The broker of `case`, or why the case cannot run.
pub(super) fn source(
    case: &Case,
    redis: Option<&str>,
    nats: Option<&str>,
) -> Result<Source, String> {
    let (bin, url, flag, port) = match case.kind {
        Kind::Redis { .. } => ("/usr/bin/redis-server", redis, "--redis-url", 6379),
        Kind::Nats => ("/usr/sbin/nats-server", nats, "--nats-url", 4222),
    };
    if let Some(path) = binary(bin) {
        return Ok(Source::Binary(path));
    }
    let Some(url) = url else {
        return Err(format!("no {bin} and no {flag}"));
    };
    let pid = url_port(url, port).and_then(pid_listening_on);
    match case.fault {
        Fault::KillBroker => Err(format!("no {bin} to restart the broker with")),
        Fault::StopBroker if pid.is_none() => Err(format!("no process found listening for {url}")),
        _ => Ok(Source::Url {
            url: url.to_owned(),
            pid,
        }),
    }
}

/// Sends `kill -SIG pid`.
fn signal(pid: u32, sig: &str) -> Result<(), BoxError> {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()?
        .success();
    if ok {
        Ok(())
    } else {
        Err(format!("kill -{sig} {pid} failed").into())
    }
}

/// A process stopped with SIGSTOP, continued on drop.
pub(super) struct Stopped(u32);

impl Stopped {
    pub(super) fn new(pid: u32) -> Result<Self, BoxError> {
        signal(pid, "STOP")?;
        Ok(Self(pid))
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = signal(self.0, "CONT");
    }
}

/// A case's broker: one of ours (restartable), or one given by URL.
pub(super) struct Broker {
    kind: Kind,
    pub(super) url: String,
    /// Ours: the program and its arguments, its port, its directory.
    own: Option<(PathBuf, Vec<String>, u16, PathBuf)>,
    pub(super) running: Option<Running>,
    /// The process of a broker given by URL.
    pub(super) pid: Option<u32>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        drop(self.running.take());
        if let Some((.., dir)) = &self.own {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Broker {
    pub(super) async fn start(kind: Kind, source: Source) -> Result<Self, BoxError> {
        let program = match source {
            Source::Url { url, pid } => {
                return Ok(Self {
                    kind,
                    url,
                    own: None,
                    running: None,
                    pid,
                });
            }
            Source::Binary(program) => program,
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir =
            std::env::temp_dir().join(format!("sockeye-faults-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let p = port.to_string();
        let d = dir.to_str().ok_or("non-UTF-8 temporary directory")?;
        let args: Vec<&str> = match kind {
            Kind::Redis { persist } => {
                let mut a = vec![
                    "--port",
                    &p,
                    "--bind",
                    "127.0.0.1",
                    "--logfile",
                    "",
                    "--dir",
                    d,
                ];
                if persist {
                    a.extend([
                        "--appendonly",
                        "yes",
                        "--appendfsync",
                        "always",
                        "--save",
                        "",
                    ]);
                } else {
                    a.extend(["--save", "", "--appendonly", "no"]);
                }
                a
            }
            Kind::Nats => vec!["-a", "127.0.0.1", "-p", &p],
        };
        let scheme = if kind == Kind::Nats { "nats" } else { "redis" };
        let args = args.iter().map(|s| (*s).to_owned()).collect();
        let mut broker = Self {
            kind,
            url: format!("{scheme}://127.0.0.1:{port}"),
            own: Some((program, args, port, dir)),
            running: None,
            pid: None,
        };
        broker.restart().await?;
        Ok(broker)
    }

    /// Starts our broker (again), on its port; returns once it answers.
    pub(super) async fn restart(&mut self) -> Result<(), BoxError> {
        let (program, args, port, _) = self.own.as_ref().ok_or("not our broker")?;
        let child = Command::new("taskset")
            .args(["-c", "0"])
            .arg(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let port = *port;
        self.pid = Some(child.id());
        let running = self.running.insert(Running {
            child,
            addr: format!("127.0.0.1:{port}"),
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while !ready(self.kind, port).await {
            if running.child.try_wait()?.is_some() || Instant::now() > deadline {
                return Err(format!("{} did not start on port {port}", program.display()).into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

/// Redis answers PING; NATS greets with INFO.
async fn ready(kind: Kind, port: u16) -> bool {
    let probe = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let mut buf = [0u8; 5];
        if kind != Kind::Nats {
            s.write_all(b"PING\r\n").await.ok()?;
        }
        s.read_exact(&mut buf).await.ok()?;
        Some(&buf == b"+PONG" || &buf == b"INFO ")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), probe).await,
        Ok(Some(true))
    )
}
