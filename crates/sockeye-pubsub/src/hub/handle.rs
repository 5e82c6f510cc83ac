//! [`SessionHandle`]: a session driven from the server side.

use std::sync::Arc;

use sockeye_auth::Identity;
use sockeye_proto::{CloseCode, Message, PreparedMessage};

use super::Hub;
use crate::error::Error;
use crate::protocol;
use crate::session::Session;
use crate::topic::SlowConsumer;

/// A handle on one hub session: direct sends share the socket's queue with
/// its topic pushes and keep their order.
#[derive(Clone)]
pub struct SessionHandle {
    session: Arc<Session>,
    hub: Hub,
}

impl std::fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHandle")
            .field("id", &self.session.member.id)
            .finish_non_exhaustive()
    }
}

impl SessionHandle {
    pub(crate) fn new(hub: Hub, session: Arc<Session>) -> Self {
        Self { session, hub }
    }

    /// The session's id: unique across nodes, as presence lists it.
    pub fn id(&self) -> &str {
        &self.session.member.id
    }

    /// The socket's identity, if the upgrade had one.
    pub fn identity(&self) -> Option<&Identity> {
        self.session.identity.as_ref()
    }

    /// Sends a JSON value to this socket alone, in order with its pushes.
    /// A socket whose queue is full is closed with 1008.
    pub fn send<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<(), Error> {
        let text = serde_json::to_string(value)?;
        self.send_raw(text)
    }

    /// Sends raw text (one JSON line, by the protocol) to this socket alone.
    pub fn send_raw(&self, text: impl Into<String>) -> Result<(), Error> {
        let message = PreparedMessage::new(Message::text(text.into()))?;
        if self.session.push(&message, None, SlowConsumer::Disconnect) {
            Ok(())
        } else {
            Err(Error::Closed)
        }
    }

    /// Subscribes the socket to a topic from the server side (no
    /// authorizer; the namespace's limits apply). The socket gets a
    /// `subscribed` event with the stream position, then the pushes.
    pub async fn subscribe(&self, topic: &str) -> Result<(), Error> {
        self.hub.subscribe_session(&self.session, topic, None).await
    }

    /// Unsubscribes the socket from a topic and sends it an `unsubscribed`
    /// event.
    pub async fn unsubscribe(&self, topic: &str) -> Result<(), Error> {
        self.hub.unsubscribe_session(&self.session, topic).await?;
        self.session.control(protocol::event(
            topic,
            "unsubscribed",
            r#""reason":"server""#,
        ));
        Ok(())
    }

    /// Closes the socket with `code`.
    pub fn close(&self, code: CloseCode, reason: &'static str) {
        self.session.close(code, reason);
    }

    /// Bytes queued for the socket right now (pushes and control items).
    pub fn queued_bytes(&self) -> usize {
        self.session.queued_bytes()
    }

    /// Whether the socket is closed or closing.
    pub fn is_closed(&self) -> bool {
        self.session.is_closed()
    }
}
