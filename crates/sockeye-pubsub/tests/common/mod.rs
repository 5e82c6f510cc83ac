//! Test harness: a hub served by hyper on 127.0.0.1, and a line-oriented
//! WebSocket client of its protocol.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

pub mod nats;
pub mod redis;
pub mod server;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::Value;
use sockeye_hyper::client::{ClientBuilder, WebSocket};
use sockeye_proto::{CloseCode, Message};
use sockeye_pubsub::{Hub, SessionHandle};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub const WAIT: Duration = Duration::from_secs(10);

/// A hub on a port; dropping it (or [`Server::cut`]) ends every connection.
pub struct Server {
    pub addr: SocketAddr,
    tasks: Arc<Mutex<JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
    pub sessions: Arc<Mutex<Vec<SessionHandle>>>,
}

impl Server {
    /// Serves `hub` through its upgrade service (hyper, as in production).
    pub async fn start(hub: &Hub) -> Self {
        Self::start_on(hub, "127.0.0.1:0", false).await
    }

    /// Serves `hub` with `Hub::session`, keeping every session's handle.
    pub async fn with_handles(hub: &Hub) -> Self {
        Self::start_on(hub, "127.0.0.1:0", true).await
    }

    pub async fn start_on(hub: &Hub, addr: &str, handles: bool) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tasks = Arc::new(Mutex::new(JoinSet::new()));
        let sessions = Arc::new(Mutex::new(Vec::new()));
        let (hub, t, s) = (hub.clone(), Arc::clone(&tasks), Arc::clone(&sessions));
        let accept = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let _ = tcp.set_nodelay(true);
                let hub = hub.clone();
                let sessions = Arc::clone(&s);
                t.lock().unwrap().spawn(async move {
                    if handles {
                        let Ok(ws) = sockeye_proto::accept(tcp).await else {
                            return;
                        };
                        let (handle, run) = hub.session(ws, None);
                        sessions.lock().unwrap().push(handle);
                        run.await;
                    } else {
                        let svc = TowerToHyperService::new(hub.upgrade_service());
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tcp), svc)
                            .with_upgrades()
                            .await;
                    }
                });
            }
        });
        Self {
            addr,
            tasks,
            accept,
            sessions,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.accept.abort();
        self.tasks.lock().unwrap().abort_all();
    }
}

/// A TCP relay in front of a server: [`Relay::cut`] drops every
/// connection through it at once, as a network failure would.
pub struct Relay {
    pub addr: SocketAddr,
    tasks: Arc<Mutex<JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    pub async fn start(listen: &str, target: SocketAddr) -> Self {
        let listener = TcpListener::bind(listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tasks = Arc::new(Mutex::new(JoinSet::new()));
        let t = Arc::clone(&tasks);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                t.lock().unwrap().spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
            }
        });
        Self {
            addr,
            tasks,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Stops listening and drops every relayed connection; returns the
    /// address to listen on again.
    pub async fn cut(mut self) -> SocketAddr {
        self.accept.abort();
        let _ = (&mut self.accept).await;
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap());
        tasks.shutdown().await;
        self.addr
    }
}

/// A client speaking the protocol line by line.
pub struct Client {
    pub ws: WebSocket,
    next_id: u64,
}

impl Client {
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = ClientBuilder::new(url).connect().await.unwrap();
        Self { ws, next_id: 1 }
    }

    pub async fn connect_with(builder: ClientBuilder) -> Self {
        let (ws, _) = builder.connect().await.unwrap();
        Self { ws, next_id: 1 }
    }

    pub async fn send(&mut self, line: &str) {
        self.ws.send(Message::text(line.to_owned())).await.unwrap();
    }

    /// Sends a command with the next id (inserted as the first field).
    pub async fn command(&mut self, body: &str) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let line = format!("{{\"id\":{id},{}", &body[1..]);
        self.send(&line).await;
        id
    }

    /// The next JSON line from the server.
    pub async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.recv())
                .await
                .expect("no message in time")
                .expect("socket ended")
                .expect("socket failed");
            if let Message::Text(t) = msg {
                return serde_json::from_str(t.as_str()).unwrap();
            }
        }
    }

    /// The reply to `id`, skipping pushes and events (returned too).
    pub async fn reply(&mut self, id: u64) -> (Value, Vec<Value>) {
        let mut other = Vec::new();
        loop {
            let v = self.recv().await;
            if v["id"] == id {
                return (v, other);
            }
            other.push(v);
        }
    }

    /// Sends a command and waits for its `ok` (panics on an error reply).
    pub async fn ok(&mut self, body: &str) -> Value {
        let id = self.command(body).await;
        let (reply, _) = self.reply(id).await;
        assert!(reply.get("ok").is_some(), "{body} -> {reply}");
        reply["ok"].clone()
    }

    /// Sends a command and returns its error code.
    pub async fn error(&mut self, body: &str) -> String {
        let id = self.command(body).await;
        let (reply, _) = self.reply(id).await;
        reply["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("{body} -> {reply}"))
            .to_owned()
    }

    pub async fn subscribe(&mut self, topic: &str) -> Value {
        self.ok(&format!(r#"{{"op":"subscribe","topic":"{topic}"}}"#))
            .await
    }

    pub async fn publish(&mut self, topic: &str, data: &str) -> Value {
        self.ok(&format!(
            r#"{{"op":"publish","topic":"{topic}","data":{data}}}"#
        ))
        .await
    }

    /// Reads until the socket closes; returns the close code.
    pub async fn closed(&mut self) -> Option<CloseCode> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.recv())
                .await
                .expect("not closed in time")
            {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return self.ws.connection().close_code(),
            }
        }
    }
}

/// Opens an event stream (the SSE fallback at `/ws`) on raw TCP, with
/// `recv_buffer` bytes of kernel receive buffer if given, and reads up to
/// its session token.
pub async fn sse_stream(
    addr: SocketAddr,
    recv_buffer: Option<u32>,
) -> (tokio::net::TcpStream, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(bytes) = recv_buffer {
        socket.set_recv_buffer_size(bytes).unwrap();
    }
    let mut tcp = socket.connect(addr).await.unwrap();
    tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "stream closed before its token");
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        if let Some((_, rest)) = text.split_once("\"session\":\"")
            && let Some((token, _)) = rest.split_once('"')
        {
            return (tcp, token.to_owned());
        }
    }
}
