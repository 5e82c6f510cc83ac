//! The fallback transport for clients that cannot open a WebSocket (a proxy
//! that strips `Upgrade`, WebSockets disabled on the server): Server-Sent
//! Events carry the server's lines, HTTP POST carries the client's commands.
//! Same protocol, same hub, same queues and limits.
//!
//! - `GET` with `Accept: text/event-stream` opens a session. The first
//!   event is `event: session` with `{"session":"<token>"}`; then every
//!   server line is one `data:` event; a comment every 15 s keeps proxies
//!   from timing out; a closed session ends with `event: close` and
//!   `{"code":1008,"reason":"..."}`.
//! - `POST ?session=<token>` with command lines as the body answers
//!   `202 Accepted` once they are handled (their replies go to the stream),
//!   `404` for an unknown session or one the server ended, `413` past the
//!   body limit, `408` for a body slower than the body timeout.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{ACCEPT, ALLOW, CACHE_CONTROL, CONNECTION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use sockeye_auth::Identity;
use sockeye_hyper::{Body, BoxError, ConnectionHandle};
use sockeye_proto::CloseCode;
use tokio::sync::mpsc;
use tower_service::Service;

use crate::hub::Hub;
use crate::protocol;
use crate::session::{Batch, Limits, Session};

impl Hub {
    /// The Server-Sent Events + POST fallback alone (see [`SseService`]).
    pub fn sse_service(&self) -> SseService {
        SseService::new(self.clone())
    }
}

/// One SSE session: its command budget, shared by its POSTs.
#[derive(Clone)]
struct SseEntry {
    session: Arc<Session>,
    limits: Arc<tokio::sync::Mutex<Limits>>,
}

/// A hub's SSE sessions by token. One per hub, kept in the hub's extension
/// slot: every [`SseService`] of a hub sees the same sessions.
#[derive(Default)]
struct SseSessions(Mutex<HashMap<String, SseEntry>>);

impl SseSessions {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, SseEntry>> {
        crate::sync::lock(&self.0)
    }

    fn insert(&self, token: String, entry: SseEntry) {
        self.lock().insert(token, entry);
    }

    fn remove(&self, token: &str) {
        self.lock().remove(token);
    }

    /// The live SSE session of `token`: one the server ended is gone at
    /// once (404 to its POSTs), before its stream has finished.
    fn get(&self, token: &str) -> Option<SseEntry> {
        let mut sessions = self.lock();
        let entry = sessions.get(token)?;
        if entry.session.is_closed() {
            sessions.remove(token);
            return None;
        }
        Some(entry.clone())
    }
}

/// The SSE + POST fallback as a tower service (see the module docs); mount
/// it as the fallback of the hub's upgrade service, as [`Hub::service`]
/// does, so one URL serves both transports.
#[derive(Clone)]
pub struct SseService {
    hub: Hub,
    sessions: Arc<SseSessions>,
    max_body: usize,
    keepalive: Duration,
    close_timeout: Duration,
    body_timeout: Duration,
}

impl std::fmt::Debug for SseService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseService")
            .field("hub", &self.hub)
            .field("max_body", &self.max_body)
            .field("keepalive", &self.keepalive)
            .field("close_timeout", &self.close_timeout)
            .field("body_timeout", &self.body_timeout)
            .finish()
    }
}

impl SseService {
    fn new(hub: Hub) -> Self {
        Self {
            sessions: hub.extension::<SseSessions>(),
            hub,
            max_body: 1 << 20,
            keepalive: Duration::from_secs(15),
            close_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(10),
        }
    }
    /// How long a POST body may take to arrive (default 10 s); a slower
    /// one (an endless, trickled body) gets 408.
    #[must_use]
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// The largest POST body (default 1 MiB); past it, 413.
    #[must_use]
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// How long a closing stream has to reach its client (default 5 s, the
    /// WebSocket close timeout): served by [`sockeye_hyper::serve()`], a
    /// connection whose client does not read its stream by then is aborted.
    #[must_use]
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// How often an idle stream gets a keep-alive comment (default 15 s).
    #[must_use]
    pub fn keepalive(mut self, every: Duration) -> Self {
        self.keepalive = every.max(Duration::from_millis(10));
        self
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|e| match e {})
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn wants_event_stream<B>(req: &Request<B>) -> bool {
    req.headers()
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}

fn session_param(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("session="))
        .filter(|t| !t.is_empty())
}

impl<B> Service<Request<B>> for SseService
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            Ok(match *req.method() {
                Method::GET if wants_event_stream(&req) => this.open(&req),
                Method::GET => {
                    // Neither a WebSocket nor an event stream.
                    let mut resp = plain(
                        StatusCode::UPGRADE_REQUIRED,
                        "use a WebSocket, or Accept: text/event-stream\n",
                    );
                    resp.headers_mut()
                        .insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
                    resp
                }
                Method::POST => this.post(req).await,
                _ => {
                    let mut resp = plain(StatusCode::METHOD_NOT_ALLOWED, "GET or POST\n");
                    resp.headers_mut()
                        .insert(ALLOW, HeaderValue::from_static("GET, POST"));
                    resp
                }
            })
        })
    }
}

impl SseService {
    fn open<B>(&self, req: &Request<B>) -> Response<Body> {
        let hub = self.hub.clone();
        let sessions = Arc::clone(&self.sessions);
        let identity = req.extensions().get::<Identity>().cloned();
        let session = hub.new_session(identity);
        let token = format!("{:032x}", rand::random::<u128>());
        sessions.insert(
            token.clone(),
            SseEntry {
                session: Arc::clone(&session),
                limits: Arc::new(tokio::sync::Mutex::new(hub.limits())),
            },
        );
        let (tx, rx) = mpsc::channel::<Bytes>(8);
        let first = format!("event: session\ndata: {{\"session\":\"{token}\"}}\n\n");
        let _ = tx.try_send(Bytes::from(first));
        let (gone_tx, body_gone) = tokio::sync::oneshot::channel::<()>();
        let http1 = req.version() <= http::Version::HTTP_11;
        let stream = SseStream {
            keepalive: self.keepalive,
            close_timeout: self.close_timeout,
            connection: req.extensions().get::<ConnectionHandle>().cloned(),
            http1,
            body_gone,
        };
        tokio::spawn(async move {
            sse_loop(Arc::clone(&session), tx, stream).await;
            sessions.remove(&token);
            hub.end_session(&session).await;
        });
        // The sender is dropped with the body: the loop learns it is gone.
        let stream = futures_util::stream::unfold((rx, gone_tx), |(mut rx, gone)| async move {
            let chunk = rx.recv().await?;
            Some((Ok::<_, BoxError>(http_body::Frame::data(chunk)), (rx, gone)))
        });
        let mut resp = Response::new(StreamBody::new(stream).boxed_unsync());
        let headers = resp.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // nginx: do not buffer the stream.
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        if http1 {
            // The connection ends with the stream, so its end is seen.
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }

    async fn post<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let Some(entry) = session_param(req.uri().query()).and_then(|t| self.sessions.get(t))
        else {
            return plain(StatusCode::NOT_FOUND, "unknown or ended session\n");
        };
        let collect = Limited::new(req.into_body(), self.max_body).collect();
        let Ok(collected) = tokio::time::timeout(self.body_timeout, collect).await else {
            return plain(StatusCode::REQUEST_TIMEOUT, "body too slow\n");
        };
        let body = match collected {
            Ok(collected) => collected.to_bytes(),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return plain(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n");
            }
            Err(_) => return plain(StatusCode::BAD_REQUEST, "unreadable body\n"),
        };
        let Ok(text) = std::str::from_utf8(&body) else {
            return plain(StatusCode::BAD_REQUEST, "commands are UTF-8 text\n");
        };
        let mut limits = entry.limits.lock().await;
        self.hub.text(&entry.session, text, &mut limits).await;
        plain(StatusCode::ACCEPTED, "")
    }
}

/// Writes a session's queue out as Server-Sent Events (`data: <line>`) into
/// `tx`, with a comment every `keepalive` while idle, until the session
/// closes (a final `close` event) or the client goes away.
///
/// Once the session is closing, the stream has `stream.close_timeout` to
/// reach the client; a client that does not read it by then has its
/// connection aborted (when served by `sockeye_hyper::serve`).
async fn sse_loop(session: Arc<Session>, tx: mpsc::Sender<Bytes>, stream: SseStream) {
    loop {
        let Batch {
            messages,
            closing,
            finished,
        } = session.take_batch();
        let chunk = if messages.is_empty() {
            if let Some((code, reason)) = closing {
                stream.finish(tx, code, reason).await;
                return;
            }
            if finished {
                return;
            }
            tokio::select! {
                () = session.notified() => continue,
                () = tx.closed() => {
                    session.close(CloseCode::GOING_AWAY, "event stream closed");
                    return;
                }
                () = tokio::time::sleep(stream.keepalive) => Bytes::from_static(b": keepalive\n\n"),
            }
        } else {
            let mut chunk = BytesMut::new();
            for item in messages {
                chunk.put_slice(b"data: ");
                chunk.put_slice(&item.message.payload());
                chunk.put_slice(b"\n\n");
            }
            chunk.freeze()
        };
        if !send_unless_closing(&session, &tx, chunk).await {
            session.close(CloseCode::GOING_AWAY, "event stream closed");
            return;
        }
    }
}

/// Sends a chunk, or gives up on it once the session is closing (the client
/// may never read it): false if the client went away.
async fn send_unless_closing(session: &Session, tx: &mpsc::Sender<Bytes>, chunk: Bytes) -> bool {
    let send = tx.send(chunk);
    tokio::pin!(send);
    loop {
        tokio::select! {
            sent = &mut send => return sent.is_ok(),
            () = session.notified() => {
                if session.is_closed() {
                    return true;
                }
            }
        }
    }
}

/// How an event stream ends, and what it may do to its connection.
struct SseStream {
    keepalive: Duration,
    close_timeout: Duration,
    /// The connection, when served by `sockeye_hyper::serve`.
    connection: Option<ConnectionHandle>,
    /// HTTP/1: the connection ends with the stream (`Connection: close`).
    http1: bool,
    /// Resolves once hyper dropped the response body.
    body_gone: tokio::sync::oneshot::Receiver<()>,
}

impl SseStream {
    /// Sends the `close` event and waits, up to the close timeout, for the
    /// client to have it; past that the connection is aborted.
    async fn finish(self, tx: mpsc::Sender<Bytes>, code: CloseCode, reason: &str) {
        let event = format!(
            "event: close\ndata: {{\"code\":{},\"reason\":{}}}\n\n",
            code.as_u16(),
            protocol::json_string(reason)
        );
        let Self {
            close_timeout,
            connection,
            http1,
            body_gone,
            ..
        } = self;
        let delivered = tokio::time::timeout(close_timeout, async {
            if tx.send(Bytes::from(event)).await.is_err() {
                return;
            }
            // The body ends once what is in the channel is read.
            drop(tx);
            match &connection {
                // hyper closes the connection once the end is written.
                Some(conn) if http1 => conn.closed().await,
                _ => {
                    let _ = body_gone.await;
                }
            }
        })
        .await;
        if delivered.is_err()
            && let Some(conn) = connection
        {
            tracing::debug!(
                peer = %conn.peer_addr(),
                "event stream not read within the close timeout: connection aborted"
            );
            conn.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_parameter() {
        assert_eq!(session_param(Some("session=abc")), Some("abc"));
        assert_eq!(session_param(Some("x=1&session=abc&y=2")), Some("abc"));
        assert_eq!(session_param(Some("session=")), None);
        assert_eq!(session_param(None), None);
    }
}
