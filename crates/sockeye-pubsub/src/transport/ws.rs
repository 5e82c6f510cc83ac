//! The WebSocket transport: a session per socket, its commands read here
//! and its queue written out here; with feature `hyper`, the upgrade
//! service that serves the hub on sockeye-hyper.

use std::future::Future;
use std::sync::Arc;
#[cfg(feature = "hyper")]
use std::time::Duration;

use sockeye_auth::Identity;
use sockeye_proto::{CloseCode, Message, WebSocket, WriteHalf};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::hub::{Hub, SessionHandle};
use crate::session::{Batch, Session};

impl Hub {
    /// Serves one socket until it closes: reads its commands, writes its
    /// queue. `identity` is what the authorizer sees (from sockeye-auth).
    pub async fn serve<S>(&self, socket: WebSocket<S>, identity: Option<Identity>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (_handle, run) = self.session(socket, identity);
        run.await;
    }

    /// Like [`serve`](Self::serve), but returns a handle for direct sends
    /// and server-side subscriptions, and the future to run (spawn it).
    ///
    /// ```no_run
    /// # async fn f(hub: sockeye_pubsub::Hub, ws: sockeye_proto::WebSocket<tokio::net::TcpStream>) {
    /// let (handle, run) = hub.session(ws, None);
    /// tokio::spawn(run);
    /// handle.send(&serde_json::json!({"welcome": true})).unwrap();
    /// handle.subscribe("chat:lobby").await.unwrap();
    /// # }
    /// ```
    pub fn session<S>(
        &self,
        socket: WebSocket<S>,
        identity: Option<Identity>,
    ) -> (
        SessionHandle,
        impl Future<Output = ()> + Send + 'static + use<S>,
    )
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let session = self.new_session(identity);
        let handle = SessionHandle::new(self.clone(), Arc::clone(&session));
        let mut socket = socket;
        session.set_closer(socket.close_handle());
        let (mut read, write) = socket.split();
        let hub = self.clone();
        // What an idle socket holds is sized here: the writer in a box of
        // its own (its task holds a pointer, and this future holds no room
        // for it), and the reader's loop written inline, not as a captured
        // future (an awaited capture is kept twice).
        let writer = Box::pin(write_loop(Arc::clone(&session), write));
        let run = async move {
            let writer = tokio::spawn(writer);
            let mut limits = hub.limits();
            while let Some(Ok(message)) = read.recv().await {
                match message {
                    // Boxed: a command's future (subscribe, history,
                    // broker) is large, and an idle socket's would hold
                    // room for it while it waits for the next one. (A
                    // `let`: the unboxed future is a temporary of that
                    // statement only, not kept across the await.)
                    Message::Text(text) => {
                        let command = Box::pin(hub.text(&session, text.as_str(), &mut limits));
                        command.await;
                    }
                    Message::Binary(_) => hub.binary(&session, &mut limits),
                    _ => {}
                }
                if session.is_closed() {
                    // Our close is on its way: read on until the peer's
                    // reply ends the socket, without acting on commands.
                    while let Some(Ok(_)) = read.recv().await {}
                    break;
                }
            }
            // The read side ended (peer closed, error, or our close done):
            // the writer finishes the queue and stops.
            let end = Box::pin(hub.end_session(&session));
            end.await;
            let _ = writer.await;
        };
        (handle, run)
    }
}

/// Writes a session's queue out until it closes or finishes.
async fn write_loop<S>(session: Arc<Session>, mut write: WriteHalf<S>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    loop {
        let Batch {
            messages,
            closing,
            finished,
        } = session.take_batch();
        if messages.is_empty() {
            if let Some((code, reason)) = closing {
                let _ = write.close(code, reason).await;
                return;
            }
            if finished {
                return;
            }
            session.notified().await;
            continue;
        }
        for item in &messages {
            if write.feed_prepared(&item.message).await.is_err() {
                session.close(CloseCode::ABNORMAL, "write failed");
                return;
            }
        }
        if write.flush().await.is_err() {
            session.close(CloseCode::ABNORMAL, "write failed");
            return;
        }
    }
}

#[cfg(feature = "hyper")]
impl Hub {
    /// Serves the hub on sockeye-hyper: a tower service that upgrades
    /// WebSocket requests and serves each socket with the [`Identity`] that
    /// an `AuthLayer` in front of it put in the request.
    ///
    /// Sockets get a 1 MiB message limit (commands are small); set another
    /// [`Config`](sockeye_proto::Config) on the returned service to change it.
    pub fn upgrade_service(&self) -> sockeye_hyper::server::UpgradeService<HubHandler> {
        let config = sockeye_hyper::server::default_config();
        let config = sockeye_proto::Config::builder()
            .max_message_size(config.max_message_size().min(1 << 20))
            .max_frame_size(config.max_frame_size().min(1 << 20))
            .keepalive_interval(
                config
                    .keepalive_interval()
                    .or(Some(Duration::from_secs(30))),
            )
            .build();
        sockeye_hyper::server::UpgradeService::new(HubHandler { hub: self.clone() }).config(config)
    }

    /// Both transports on one URL: WebSocket upgrades go to
    /// [`upgrade_service`](Self::upgrade_service), other requests to the
    /// SSE + POST fallback. Mount it at `/ws` in hyper or axum:
    ///
    /// ```no_run
    /// # fn f(hub: sockeye_pubsub::Hub) {
    /// let app = axum::Router::new().route_service("/ws", hub.service());
    /// # let _: axum::Router = app;
    /// # }
    /// ```
    pub fn service(&self) -> sockeye_hyper::server::UpgradeService<HubHandler, crate::SseService> {
        self.upgrade_service().fallback(self.sse_service())
    }
}

/// The [`Handler`](sockeye_hyper::server::Handler) of
/// [`Hub::upgrade_service`].
#[cfg(feature = "hyper")]
#[derive(Clone, Debug)]
pub struct HubHandler {
    hub: Hub,
}

#[cfg(feature = "hyper")]
impl sockeye_hyper::server::Handler for HubHandler {
    type Future = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

    fn call(
        &self,
        socket: sockeye_hyper::server::WebSocket,
        handshake: sockeye_hyper::server::Handshake,
    ) -> Self::Future {
        let identity = handshake.extension::<Identity>().cloned();
        // The session's own future, boxed as it is: an async block around
        // it would hold the socket and the handle beside it for the
        // socket's whole life.
        let (_handle, run) = self.hub.session(socket, identity);
        Box::pin(run)
    }
}
