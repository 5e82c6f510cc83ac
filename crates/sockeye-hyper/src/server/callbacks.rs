//! Browser-style callbacks (the `onopen` / `onmessage` / `onclose` of the
//! JavaScript `WebSocket` API), built on the async handler.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use sockeye_proto::{CloseCode, CloseHandle, Message};
use tokio::sync::mpsc;

use super::{Handler, Handshake, WebSocket};

type OpenFn = Arc<dyn Fn(&Session) + Send + Sync>;
type MessageFn = Arc<dyn Fn(&Session, Message) + Send + Sync>;
type CloseFn = Arc<dyn Fn(&Session, &CloseEvent) + Send + Sync>;

/// Callbacks run for each socket: on open, on every text or binary message,
/// and once on close. Messages are sent through the [`Session`] from any
/// callback or task.
///
/// ```
/// use sockeye_hyper::server::{Callbacks, UpgradeService};
/// let chat = Callbacks::new()
///     .on_open(|s| { let _ = s.send("welcome"); })
///     .on_message(|s, msg| { let _ = s.send(msg); })
///     .on_close(|_s, ev| println!("closed: {} {}", ev.code, ev.reason));
/// let service = UpgradeService::new(chat);
/// # drop(service);
/// ```
#[derive(Clone)]
pub struct Callbacks {
    on_open: Option<OpenFn>,
    on_message: Option<MessageFn>,
    on_close: Option<CloseFn>,
    queue: usize,
}

/// How a socket ended, as the browser's `CloseEvent` tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseEvent {
    /// The close code (1006 when the connection dropped without one).
    pub code: CloseCode,
    /// The reason, or the error that ended the connection.
    pub reason: String,
    /// Whether the close handshake completed.
    pub was_clean: bool,
}

/// The open socket as the callbacks see it: send messages, close, look at
/// the handshake. Cheap to clone and usable from other tasks.
#[derive(Clone)]
pub struct Session {
    tx: mpsc::Sender<Message>,
    close: CloseHandle,
    handshake: Arc<Handshake>,
}

/// A message could not be queued; it is handed back.
#[derive(Debug)]
pub enum SendError {
    /// The outgoing queue is full: the peer is not reading.
    Full(Message),
    /// The socket is closed.
    Closed(Message),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("outgoing queue full"),
            Self::Closed(_) => f.write_str("socket closed"),
        }
    }
}

impl std::error::Error for SendError {}

impl Session {
    /// Queues a message (bounded queue; see [`Callbacks::queue_size`]).
    pub fn send(&self, message: impl Into<Message>) -> Result<(), SendError> {
        self.tx.try_send(message.into()).map_err(|e| match e {
            mpsc::error::TrySendError::Full(m) => SendError::Full(m),
            mpsc::error::TrySendError::Closed(m) => SendError::Closed(m),
        })
    }

    /// Starts the close handshake.
    pub fn close(&self, code: CloseCode, reason: &str) {
        self.close.close(code, reason);
    }

    /// The upgrade request.
    pub fn handshake(&self) -> &Handshake {
        &self.handshake
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("uri", &self.handshake.parts.uri)
            .finish_non_exhaustive()
    }
}

impl Default for Callbacks {
    fn default() -> Self {
        Self::new()
    }
}

impl Callbacks {
    /// No callbacks yet; an outgoing queue of 1024 messages.
    pub fn new() -> Self {
        Self {
            on_open: None,
            on_message: None,
            on_close: None,
            queue: 1024,
        }
    }

    /// Runs when the socket is open.
    #[must_use]
    pub fn on_open(mut self, f: impl Fn(&Session) + Send + Sync + 'static) -> Self {
        self.on_open = Some(Arc::new(f));
        self
    }

    /// Runs for every text and binary message (pings are answered for you).
    #[must_use]
    pub fn on_message(mut self, f: impl Fn(&Session, Message) + Send + Sync + 'static) -> Self {
        self.on_message = Some(Arc::new(f));
        self
    }

    /// Runs once when the socket has closed.
    #[must_use]
    pub fn on_close(mut self, f: impl Fn(&Session, &CloseEvent) + Send + Sync + 'static) -> Self {
        self.on_close = Some(Arc::new(f));
        self
    }

    /// How many messages [`Session::send`] may queue before it fails with
    /// [`SendError::Full`] (default 1024).
    #[must_use]
    pub fn queue_size(mut self, messages: usize) -> Self {
        self.queue = messages.max(1);
        self
    }

    async fn run(self, mut ws: WebSocket, handshake: Handshake) {
        let (tx, mut rx) = mpsc::channel::<Message>(self.queue);
        let session = Session {
            tx,
            close: ws.close_handle(),
            handshake: Arc::new(handshake),
        };
        let (mut read, mut write) = ws.split();
        let writer = tokio::spawn(async move {
            while let Some(message) = rx.recv().await {
                if write.feed(message).await.is_err() {
                    return;
                }
                if rx.is_empty() && write.flush().await.is_err() {
                    return;
                }
            }
        });
        if let Some(f) = &self.on_open {
            f(&session);
        }
        let mut event = CloseEvent {
            code: CloseCode::ABNORMAL,
            reason: String::new(),
            was_clean: false,
        };
        while let Some(message) = read.next().await {
            match message {
                Ok(Message::Close(frame)) => {
                    event.was_clean = true;
                    match frame {
                        Some(f) => {
                            event.code = f.code;
                            event.reason = f.reason.to_string();
                        }
                        None => event.code = CloseCode::NO_STATUS_RECEIVED,
                    }
                }
                Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                    if let Some(f) = &self.on_message {
                        f(&session, m);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if let Some(code) = e.close_code() {
                        event.code = code;
                    }
                    event.reason = e.to_string();
                }
            }
        }
        writer.abort();
        if let Some(f) = &self.on_close {
            f(&session, &event);
        }
    }
}

impl Handler for Callbacks {
    type Future = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn call(&self, socket: WebSocket, handshake: Handshake) -> Self::Future {
        Box::pin(self.clone().run(socket, handshake))
    }
}

impl fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callbacks")
            .field("on_open", &self.on_open.is_some())
            .field("on_message", &self.on_message.is_some())
            .field("on_close", &self.on_close.is_some())
            .field("queue", &self.queue)
            .finish()
    }
}
