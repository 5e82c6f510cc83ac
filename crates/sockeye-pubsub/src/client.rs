//! A Rust client of the hub's protocol on the sockeye-hyper client: it
//! subscribes and publishes, and when the link drops it reconnects with
//! backoff, subscribes again, and recovers from the last offset it saw on
//! topics with history — without gaps or duplicates, or it says
//! [`Item::Lost`].

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;
use sockeye_hyper::client::{Backoff, ClientBuilder, Reconnect, ReconnectEvent, StopHandle};
use sockeye_proto::{CloseCode, Message};
use tokio::sync::{mpsc, oneshot};

use crate::broker::Member;
use crate::error::{Error, ErrorCode};
use crate::protocol::{StreamPosition, json_string};

/// What a [`Subscription`] yields.
#[derive(Debug)]
#[non_exhaustive]
pub enum Item {
    /// A publication.
    Publication {
        /// Its offset (topics with history).
        offset: Option<u64>,
        /// The payload as the publisher sent it.
        data: Box<RawValue>,
    },
    /// Someone subscribed (presence).
    Join(Member),
    /// Someone left (presence).
    Leave(Member),
    /// Publications were missed and could not be recovered (history gone or
    /// off): resynchronise from your source of truth.
    Lost,
    /// The link to the server, or the server's link to its broker, is down:
    /// publications wait until it is back.
    Disconnected,
    /// The link is back; `recovered` when nothing was missed.
    Reconnected {
        /// Whether the missed publications were all delivered.
        recovered: bool,
    },
    /// The server ended the subscription.
    Unsubscribed {
        /// Why.
        reason: String,
    },
}

/// Configures a [`PubSubClient`].
#[derive(Debug)]
#[must_use]
pub struct PubSubClientBuilder {
    client: ClientBuilder,
    backoff: Backoff,
    buffer: usize,
    request_timeout: Duration,
}

impl PubSubClientBuilder {
    /// The reconnect backoff (default: 500 ms doubling to 30 s, jittered).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Items buffered per subscription (default 1024). A subscription that
    /// is not read stops the client from reading the socket, and the server
    /// then applies its slow-consumer policy.
    pub fn buffer(mut self, items: usize) -> Self {
        self.buffer = items.max(1);
        self
    }

    /// How long a command waits for its reply (default 10 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Connects (waiting for the first connection; it fails if that does)
    /// and starts the client's task.
    pub async fn connect(self) -> Result<PubSubClient, Error> {
        let mut connector = self.client.reconnecting().backoff(self.backoff);
        let stop = connector.stop_handle();
        let first = match connector.next().await {
            Some(ReconnectEvent::Connected { socket, .. }) => socket,
            Some(ReconnectEvent::Retrying { error, .. } | ReconnectEvent::GaveUp(error)) => {
                return Err(unavailable(error));
            }
            None => return Err(Error::Closed),
        };
        let (tx, rx) = mpsc::channel(64);
        let driver = Driver {
            rx,
            next_id: 1,
            waiting: HashMap::new(),
            subs: HashMap::new(),
            buffer: self.buffer,
        };
        tokio::spawn(driver.run(connector, first));
        Ok(PubSubClient {
            tx,
            stop,
            timeout: self.request_timeout,
        })
    }
}

fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::refused(ErrorCode::Unavailable, e.to_string())
}

/// A reconnecting pub/sub client.
///
/// ```no_run
/// use sockeye_pubsub::client::{Item, PubSubClient};
/// # async fn run() -> Result<(), sockeye_pubsub::Error> {
/// let client = PubSubClient::builder("ws://127.0.0.1:9002/ws").connect().await?;
/// let mut lobby = client.subscribe("test:lobby").await?;
/// client.publish("test:lobby", &serde_json::json!({"text": "hi"})).await?;
/// while let Some(item) = lobby.recv().await {
///     if let Item::Publication { offset, data } = item {
///         println!("{offset:?}: {}", data.get());
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PubSubClient {
    tx: mpsc::Sender<Request>,
    stop: StopHandle,
    timeout: Duration,
}

/// A topic's items; dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    topic: String,
    rx: mpsc::Receiver<Item>,
    tx: mpsc::Sender<Request>,
}

impl Subscription {
    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The next item; `None` once the client is closed.
    pub async fn recv(&mut self) -> Option<Item> {
        self.rx.recv().await
    }
}

impl futures_util::Stream for Subscription {
    type Item = Item;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Item>> {
        self.get_mut().rx.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.tx.try_send(Request::Unsubscribe {
            topic: std::mem::take(&mut self.topic),
        });
    }
}

type Reply = oneshot::Sender<Result<Box<RawValue>, Error>>;

enum Request {
    Subscribe {
        topic: String,
        reply: oneshot::Sender<Result<mpsc::Receiver<Item>, Error>>,
    },
    Unsubscribe {
        topic: String,
    },
    Close,
    Command {
        op: &'static str,
        topic: String,
        data: Option<Box<RawValue>>,
        reply: Reply,
    },
}

impl PubSubClient {
    /// A builder for `url` (e.g. `ws://127.0.0.1:9002/ws`).
    pub fn builder(url: impl Into<String>) -> PubSubClientBuilder {
        Self::with_client(ClientBuilder::new(url))
    }

    /// A builder over a configured sockeye-hyper client (headers, proxy,
    /// TLS roots, deflate).
    pub fn with_client(client: ClientBuilder) -> PubSubClientBuilder {
        PubSubClientBuilder {
            client,
            backoff: Backoff::default(),
            buffer: 1024,
            request_timeout: Duration::from_secs(10),
        }
    }

    /// Subscribes to a topic. Its publications, presence events and link
    /// events arrive on the subscription; after a reconnection the client
    /// subscribes again from the last offset it saw.
    pub async fn subscribe(&self, topic: &str) -> Result<Subscription, Error> {
        let (reply, rx) = oneshot::channel();
        self.request(Request::Subscribe {
            topic: topic.to_owned(),
            reply,
        })
        .await?;
        let rx = self.wait(rx).await??;
        Ok(Subscription {
            topic: topic.to_owned(),
            rx,
            tx: self.tx.clone(),
        })
    }

    /// Publishes a value; returns its position on topics with history.
    pub async fn publish<T: serde::Serialize + ?Sized>(
        &self,
        topic: &str,
        value: &T,
    ) -> Result<Option<StreamPosition>, Error> {
        let data = serde_json::value::to_raw_value(value)?;
        let ok = self.command("publish", topic, Some(data)).await?;
        Ok(serde_json::from_str::<StreamPosition>(ok.get()).ok())
    }

    /// The members of a topic with presence.
    pub async fn presence(&self, topic: &str) -> Result<Vec<Member>, Error> {
        #[derive(Deserialize)]
        struct Ok {
            members: Vec<Member>,
        }
        let ok = self.command("presence", topic, None).await?;
        Ok(serde_json::from_str::<Ok>(ok.get())?.members)
    }

    /// Stops the client: the socket is closed (1000) and subscriptions end.
    pub async fn close(&self) {
        self.stop.stop();
        let _ = self.tx.send(Request::Close).await;
    }

    async fn command(
        &self,
        op: &'static str,
        topic: &str,
        data: Option<Box<RawValue>>,
    ) -> Result<Box<RawValue>, Error> {
        let (reply, rx) = oneshot::channel();
        self.request(Request::Command {
            op,
            topic: topic.to_owned(),
            data,
            reply,
        })
        .await?;
        self.wait(rx).await?
    }

    async fn request(&self, request: Request) -> Result<(), Error> {
        self.tx.send(request).await.map_err(|_| Error::Closed)
    }

    async fn wait<T>(&self, rx: oneshot::Receiver<T>) -> Result<T, Error> {
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => Err(Error::refused(ErrorCode::Unavailable, "no reply in time")),
        }
    }
}

/// What a reply is awaited for.
enum Waiter {
    /// A user command.
    Command(Reply),
    /// A subscription the user asked for.
    Subscribe(
        oneshot::Sender<Result<mpsc::Receiver<Item>, Error>>,
        mpsc::Receiver<Item>,
    ),
    /// A resubscription (after a lag, or a reconnection when `true`).
    Resubscribe { reconnect: bool },
}

struct SubState {
    tx: mpsc::Sender<Item>,
    /// The last contiguous position seen (topics with history).
    position: Option<StreamPosition>,
    /// Resubscribing: pushes are ignored until the reply, since the
    /// recovery replays everything after `position`.
    resyncing: bool,
    /// Whether the subscribe reply was received once.
    active: bool,
}

struct Driver {
    rx: mpsc::Receiver<Request>,
    next_id: u64,
    waiting: HashMap<u64, (String, Waiter)>,
    subs: HashMap<String, SubState>,
    buffer: usize,
}

/// A server line, as far as the client needs it.
#[derive(Deserialize)]
struct Incoming<'a> {
    id: Option<u64>,
    #[serde(borrow)]
    ok: Option<&'a RawValue>,
    error: Option<WireError>,
    topic: Option<String>,
    offset: Option<u64>,
    data: Option<Box<RawValue>>,
    event: Option<String>,
    member: Option<Member>,
    recovered: Option<bool>,
    reason: Option<String>,
    position: Option<SubscribeOk>,
}

#[derive(Deserialize)]
struct WireError {
    code: String,
    message: String,
}

#[derive(Deserialize, Default)]
struct SubscribeOk {
    offset: Option<u64>,
    epoch: Option<String>,
    recovered: Option<bool>,
}

fn wire_code(code: &str) -> ErrorCode {
    match code {
        "forbidden" => ErrorCode::Forbidden,
        "unknown_topic" => ErrorCode::UnknownTopic,
        "limit_exceeded" => ErrorCode::LimitExceeded,
        "rate_limited" => ErrorCode::RateLimited,
        "unavailable" => ErrorCode::Unavailable,
        _ => ErrorCode::BadRequest,
    }
}

impl Driver {
    async fn run(
        mut self,
        mut connector: Reconnect,
        first: sockeye_hyper::client::ReconnectingSocket,
    ) {
        let mut socket = Some(first);
        let mut reconnect = false;
        loop {
            let mut ws = match socket.take() {
                Some(ws) => ws,
                None => match connector.next().await {
                    Some(ReconnectEvent::Connected { socket, .. }) => socket,
                    Some(ReconnectEvent::Retrying { error, delay, .. }) => {
                        tracing::debug!(%error, ?delay, "pubsub client: reconnect failed");
                        continue;
                    }
                    Some(ReconnectEvent::GaveUp(_)) | None => break,
                },
            };
            if reconnect && !self.resubscribe_all(&mut ws).await {
                continue;
            }
            reconnect = true;
            let stopped = loop {
                tokio::select! {
                    request = self.rx.recv() => match request {
                        Some(Request::Close) | None => {
                            let _ = ws.close(CloseCode::NORMAL, "").await;
                            break true;
                        }
                        Some(request) => {
                            if let Some(line) = self.request(request) && ws.send(Message::text(line)).await.is_err() {
                                break false;
                            }
                        }
                    },
                    message = ws.recv() => match message {
                        Some(Ok(Message::Text(text))) => {
                            for line in text.as_str().split('\n').filter(|l| !l.trim().is_empty()) {
                                for out in self.incoming(line).await {
                                    if ws.send(Message::text(out)).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => break false,
                    },
                }
            };
            drop(ws);
            self.disconnected().await;
            if stopped {
                break;
            }
        }
        // Subscriptions end when their senders drop with the driver.
    }

    /// A request from the user: the line to send, if any.
    fn request(&mut self, request: Request) -> Option<String> {
        let id = self.next_id;
        self.next_id += 1;
        match request {
            Request::Subscribe { topic, reply } => {
                if self.subs.contains_key(&topic) {
                    let _ = reply.send(Err(Error::refused(
                        ErrorCode::BadRequest,
                        "already subscribed",
                    )));
                    return None;
                }
                let (tx, rx) = mpsc::channel(self.buffer);
                self.subs.insert(
                    topic.clone(),
                    SubState {
                        tx,
                        position: None,
                        resyncing: false,
                        active: false,
                    },
                );
                let line = subscribe_line(id, &topic, None);
                self.waiting
                    .insert(id, (topic, Waiter::Subscribe(reply, rx)));
                Some(line)
            }
            Request::Close => None,
            Request::Unsubscribe { topic } => {
                self.subs.remove(&topic)?;
                Some(format!(
                    "{{\"id\":{id},\"op\":\"unsubscribe\",\"topic\":{}}}",
                    json_string(&topic)
                ))
            }
            Request::Command {
                op,
                topic,
                data,
                reply,
            } => {
                let data = data.map_or_else(String::new, |d| format!(",\"data\":{}", d.get()));
                let line = format!(
                    "{{\"id\":{id},\"op\":\"{op}\",\"topic\":{}{data}}}",
                    json_string(&topic)
                );
                self.waiting.insert(id, (topic, Waiter::Command(reply)));
                Some(line)
            }
        }
    }

    /// Subscribes again to everything after a reconnection; `false` if the
    /// socket failed.
    async fn resubscribe_all(
        &mut self,
        ws: &mut sockeye_hyper::client::ReconnectingSocket,
    ) -> bool {
        let topics: Vec<(String, Option<StreamPosition>)> = self
            .subs
            .iter()
            .map(|(t, s)| (t.clone(), s.position.clone()))
            .collect();
        for (topic, since) in topics {
            let id = self.next_id;
            self.next_id += 1;
            if let Some(sub) = self.subs.get_mut(&topic) {
                sub.resyncing = true;
            }
            self.waiting
                .insert(id, (topic.clone(), Waiter::Resubscribe { reconnect: true }));
            if ws
                .send(Message::text(subscribe_line(id, &topic, since.as_ref())))
                .await
                .is_err()
            {
                return false;
            }
        }
        true
    }

    /// The socket dropped: pending commands fail, subscriptions hear it.
    async fn disconnected(&mut self) {
        for (_, (topic, waiter)) in self.waiting.drain() {
            match waiter {
                Waiter::Command(reply) => {
                    let _ = reply.send(Err(Error::refused(ErrorCode::Unavailable, "disconnected")));
                }
                Waiter::Subscribe(reply, _) => {
                    self.subs.remove(&topic);
                    let _ = reply.send(Err(Error::refused(ErrorCode::Unavailable, "disconnected")));
                }
                Waiter::Resubscribe { .. } => {}
            }
        }
        for sub in self.subs.values() {
            let _ = sub.tx.send(Item::Disconnected).await;
        }
    }

    /// One server line; returns lines to send (resubscriptions).
    async fn incoming(&mut self, line: &str) -> Vec<String> {
        let Ok(msg) = serde_json::from_str::<Incoming<'_>>(line) else {
            tracing::debug!(line, "pubsub client: unreadable line");
            return Vec::new();
        };
        if let Some(id) = msg.id {
            self.reply(id, msg.ok, msg.error).await;
            return Vec::new();
        }
        let Some(topic) = msg.topic else {
            return Vec::new();
        };
        let Some(sub) = self.subs.get_mut(&topic) else {
            return Vec::new();
        };
        let item = match msg.event.as_deref() {
            None => {
                let Some(data) = msg.data else {
                    return Vec::new();
                };
                if sub.resyncing {
                    return Vec::new();
                }
                if let (Some(offset), Some(pos)) = (msg.offset, sub.position.as_mut()) {
                    if offset <= pos.offset {
                        return Vec::new(); // a duplicate
                    }
                    if offset > pos.offset + 1 {
                        // A gap: resubscribe from the last contiguous offset.
                        return self.resync(&topic).into_iter().collect();
                    }
                    pos.offset = offset;
                }
                Item::Publication {
                    offset: msg.offset,
                    data,
                }
            }
            Some("lag") => return self.resync(&topic).into_iter().collect(),
            Some("join") => match msg.member {
                Some(m) => Item::Join(m),
                None => return Vec::new(),
            },
            Some("leave") => match msg.member {
                Some(m) => Item::Leave(m),
                None => return Vec::new(),
            },
            Some("link_down") => Item::Disconnected,
            Some("link_up") => Item::Reconnected {
                recovered: msg.recovered.unwrap_or(false),
            },
            Some("subscribed") => {
                let p = msg.position.unwrap_or_default();
                if let (Some(offset), Some(epoch)) = (p.offset, p.epoch) {
                    sub.position = Some(StreamPosition { offset, epoch });
                }
                return Vec::new();
            }
            Some("unsubscribed") => {
                let reason = msg.reason.unwrap_or_default();
                if let Some(sub) = self.subs.remove(&topic) {
                    let _ = sub.tx.send(Item::Unsubscribed { reason }).await;
                }
                return Vec::new();
            }
            Some(_) => return Vec::new(),
        };
        let tx = sub.tx.clone();
        let _ = tx.send(item).await;
        Vec::new()
    }

    /// Resubscribes from the last contiguous position (once at a time).
    fn resync(&mut self, topic: &str) -> Option<String> {
        let sub = self.subs.get_mut(topic)?;
        if sub.resyncing || !sub.active {
            return None;
        }
        sub.resyncing = true;
        let since = sub.position.clone();
        let id = self.next_id;
        self.next_id += 1;
        self.waiting.insert(
            id,
            (topic.to_owned(), Waiter::Resubscribe { reconnect: false }),
        );
        Some(subscribe_line(id, topic, since.as_ref()))
    }

    async fn reply(&mut self, id: u64, ok: Option<&RawValue>, error: Option<WireError>) {
        let Some((topic, waiter)) = self.waiting.remove(&id) else {
            return;
        };
        let result = match (ok, error) {
            (Some(ok), _) => Ok(ok.to_owned()),
            (None, Some(e)) => Err(Error::refused(wire_code(&e.code), e.message)),
            (None, None) => Err(Error::refused(
                ErrorCode::BadRequest,
                "reply without ok or error",
            )),
        };
        match waiter {
            Waiter::Command(reply) => {
                let _ = reply.send(result);
            }
            Waiter::Subscribe(reply, rx) => match result {
                Ok(ok) => {
                    if let Some(sub) = self.subs.get_mut(&topic) {
                        let p: SubscribeOk = serde_json::from_str(ok.get()).unwrap_or_default();
                        if let (Some(offset), Some(epoch)) = (p.offset, p.epoch) {
                            sub.position = Some(StreamPosition { offset, epoch });
                        }
                        sub.active = true;
                    }
                    let _ = reply.send(Ok(rx));
                }
                Err(e) => {
                    self.subs.remove(&topic);
                    let _ = reply.send(Err(e));
                }
            },
            Waiter::Resubscribe { reconnect } => {
                let Some(sub) = self.subs.get_mut(&topic) else {
                    return;
                };
                sub.resyncing = false;
                let had_history = sub.position.is_some();
                let recovered = match result {
                    Ok(ok) => {
                        let p: SubscribeOk = serde_json::from_str(ok.get()).unwrap_or_default();
                        let recovered = p.recovered.unwrap_or(false);
                        if !recovered && let (Some(offset), Some(epoch)) = (p.offset, p.epoch) {
                            sub.position = Some(StreamPosition { offset, epoch });
                        }
                        recovered
                    }
                    Err(e) => {
                        tracing::warn!(topic, error = %e, "pubsub client: resubscribe refused");
                        let sub = self.subs.remove(&topic);
                        if let Some(sub) = sub {
                            let _ = sub
                                .tx
                                .send(Item::Unsubscribed {
                                    reason: e.to_string(),
                                })
                                .await;
                        }
                        return;
                    }
                };
                let tx = sub.tx.clone();
                if had_history && !recovered {
                    let _ = tx.send(Item::Lost).await;
                }
                if reconnect {
                    let _ = tx.send(Item::Reconnected { recovered }).await;
                }
            }
        }
    }
}

fn subscribe_line(id: u64, topic: &str, since: Option<&StreamPosition>) -> String {
    let since = since.map_or_else(String::new, |p| {
        format!(
            ",\"since\":{{\"offset\":{},\"epoch\":{}}}",
            p.offset,
            json_string(&p.epoch)
        )
    });
    format!(
        "{{\"id\":{id},\"op\":\"subscribe\",\"topic\":{}{since}}}",
        json_string(topic)
    )
}
