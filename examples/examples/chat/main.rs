//! Chat: a web page and a sockeye-pubsub hub in one binary. Rooms, a
//! nickname, history, who is online, reconnection that fetches what was
//! missed, and a Server-Sent Events fallback when WebSockets cannot pass.
//!
//! ```text
//! cargo run --release --example chat -- [--addr 127.0.0.1:8080]
//!     [--redis redis://127.0.0.1:6379 [--redis-mode standalone|sharded]]
//!     [--allow-origin ORIGIN]... [--allowed-host HOST]... [--rate-limit N] [--history-mb N] [--history-topics N] [--max-connections N] [--max-connections-per-ip N] [--metrics ADDR] [--threads N]
//! ```
//! Open http://127.0.0.1:8080 in two windows. Prints `listening on ADDR`
//! once ready.
//!
//! - The page (`index.html`, embedded) talks the documented protocol
//!   (`crates/sockeye-pubsub/PROTOCOL.md`) at `/ws?nick=NICK`: a room is the
//!   topic `chat:ROOM`, a message's data `{"nick":...,"text":...,"ts":...}`.
//!   Any other client (a script, an app) can join with that protocol alone.
//! - Rooms keep their last 200 messages for an hour; a client that comes
//!   back subscribes with `since` and gets what it missed.
//! - With `--redis`, several chat processes on one Redis share their rooms.
//! - With `WEBSOCKETS_DISABLE=1` set, upgrades are refused (503) and the
//!   page falls back to Server-Sent Events + POST on the same URL. It falls
//!   back only when a WebSocket fails while the server answers (a server
//!   that is down or restarting is retried with WebSocket), and after a
//!   lost link it tries WebSocket once more before falling back.
//! - Defaults that matter in production: only same-origin pages may
//!   connect (`--allow-origin` adds others); bound to a loopback address
//!   (the default), only requests to `localhost`, `127.0.0.1` or `[::1]`
//!   on its port reach the socket, so a page re-resolved to 127.0.0.1 (DNS
//!   rebinding) is refused (`--allowed-host NAME[:PORT]` adds names; on
//!   another address, list the names the server is reached under); 20 commands a second per
//!   socket, 4 KiB per message and 2000 characters of text, nicknames of
//!   1–32 letters, digits, spaces and `_-.`; a message must carry its
//!   sender's nickname.

use std::time::Duration;

use http::{Method, Request};
use hyper::body::Incoming;
use serde_json::Value;
use sockeye_auth::{AuthLayer, Credentials, Identity, OriginLayer, OriginPolicy, Rejection};
use sockeye_deflate::{DeflateConfig, DeflateLayer};
use sockeye_examples::{
    Caps, HistoryFlags, RedisFlags, ServerFlags, history_budget, html_page, not_found, parse_flags,
    serve_hub, server_runtime,
};
use sockeye_hyper::server::Drain;
use sockeye_pubsub::{
    Access, Action, HistoryBudget, Hub, Namespace, RateLimit, RedisBroker, RedisMode,
};
use tokio::net::TcpListener;
use tower::{ServiceBuilder, ServiceExt};

const PAGE: &str = include_str!("index.html");

/// The longest message text, in characters.
const MAX_TEXT: usize = 2000;

/// Chat: a web page and a sockeye-pubsub hub in one binary.
#[derive(Debug, clap::Parser)]
#[command(name = "chat")]
struct Flags {
    /// Listen on this address.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    addr: String,
    #[command(flatten)]
    redis: RedisFlags,
    /// Let pages of this origin connect too, beside same-origin ones
    /// (repeatable).
    #[arg(long, value_name = "ORIGIN")]
    allow_origin: Vec<String>,
    /// Answer requests naming this host too, beside the loopback names
    /// (repeatable).
    #[arg(long, value_name = "NAME[:PORT]")]
    allowed_host: Vec<String>,
    /// Commands a socket may send per second (bursts of twice that).
    #[arg(long, value_name = "N", default_value_t = 20.0)]
    rate_limit: f64,
    #[command(flatten)]
    history: HistoryFlags,
    #[command(flatten)]
    server: ServerFlags,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let flags: Flags = parse_flags();
    let options = Options {
        redis: flags.redis.broker(),
        origins: flags.allow_origin,
        hosts: flags.allowed_host,
        rate: flags.rate_limit,
        history: history_budget(&flags.history),
        caps: Caps::from_flags(&flags.server),
    };
    server_runtime(&flags.server)?.block_on(serve(flags.addr, options))
}

struct Options {
    redis: Option<(String, RedisMode)>,
    origins: Vec<String>,
    hosts: Vec<String>,
    rate: f64,
    history: HistoryBudget,
    caps: Caps,
}

/// A nickname: 1–32 letters, digits, spaces, `_`, `-` or `.`, not blank.
fn valid_nick(nick: &str) -> bool {
    let n = nick.chars().count();
    (1..=32).contains(&n)
        && !nick.trim().is_empty()
        && nick
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '_' | '-' | '.'))
}

/// A room: `chat:` then 1–32 of `a-z0-9_-`.
fn valid_room(topic: &str) -> bool {
    topic.strip_prefix("chat:").is_some_and(|room| {
        (1..=32).contains(&room.len())
            && room
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    })
}

/// What a client may do: any valid room; publish only messages that name
/// their sender, with a text of 1–2000 characters.
fn authorize(access: Access<'_>) -> bool {
    if !valid_room(access.topic) {
        return false;
    }
    match access.action {
        Action::Subscribe => true,
        Action::Publish => {
            let (Some(identity), Some(data)) = (access.identity, access.data) else {
                return false;
            };
            let Ok(Value::Object(message)) = serde_json::from_str::<Value>(data) else {
                return false;
            };
            let text_ok = message
                .get("text")
                .and_then(Value::as_str)
                .is_some_and(|t| !t.trim().is_empty() && t.chars().count() <= MAX_TEXT);
            let nick_ok = message.get("nick").and_then(Value::as_str) == Some(identity.subject());
            let ts_ok = message.get("ts").is_none_or(Value::is_number);
            // Only the three known fields: a key count would let
            // `{"nick", "text", "admin"}` through.
            let fields_ok = message
                .keys()
                .all(|k| matches!(k.as_str(), "nick" | "text" | "ts"));
            text_ok && nick_ok && ts_ok && fields_ok
        }
        _ => false,
    }
}

async fn serve(addr: String, options: Options) -> Result<(), Box<dyn std::error::Error>> {
    let rooms = Namespace::new()
        .client_publish(true)
        .history(200, Duration::from_secs(3600))
        .presence(true)
        .max_data_bytes(4 << 10);
    let burst = (2.0 * options.rate).clamp(1.0, 1e9) as u32;
    let mut builder = Hub::builder()
        .namespace("chat", rooms)
        .authorizer(authorize)
        .rate_limit(RateLimit::new(options.rate, burst))
        .history_budget(options.history)
        .deflate(DeflateConfig::new());
    if let Some((url, mode)) = &options.redis {
        builder = builder.broker(
            RedisBroker::builder(url.as_str())
                .mode(*mode)
                .connect()
                .await?,
        );
    }
    let hub = builder.build();
    let listener = TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;

    // Same-origin pages only (plus --allow-origin), on the server's own
    // host names (loopback ones when bound to loopback, plus
    // --allowed-host), for the upgrade and for the fallback's GET and POST
    // alike.
    let policy = if options.origins.is_empty() {
        OriginPolicy::same_origin()
    } else {
        OriginPolicy::same_origin().or(OriginPolicy::list(&options.origins)?)
    };
    let origins = OriginLayer::new(policy)
        .check_all_requests(true)
        .bound_to(local)
        .allow_hosts(&options.hosts)?;
    // The nickname is the identity (no passwords in a demo); the page
    // sends it as `?nick=`.
    let nicks = AuthLayer::new(|creds: Credentials| async move {
        match creds {
            Credentials::Query { value, .. } if valid_nick(value.expose()) => {
                Ok(Identity::new(value.expose().trim()))
            }
            _ => Err(Rejection::Invalid),
        }
    })
    .query("nick")
    .check_all_requests(true);
    let drain = Drain::new();
    let socket = ServiceBuilder::new()
        .layer(origins)
        .layer(nicks)
        .layer(DeflateLayer::new(DeflateConfig::new()))
        .service(hub.service().drain(&drain));

    let service = tower::service_fn(move |req: Request<Incoming>| {
        let socket = socket.clone();
        async move {
            match (req.method(), req.uri().path()) {
                (_, "/ws") => socket.oneshot(req).await,
                (&Method::GET, "/" | "/index.html") => Ok(html_page(PAGE)),
                _ => Ok(not_found()),
            }
        }
    });

    println!("listening on {local}");
    eprintln!(
        "chat: http://{local}/ ({}{})",
        match &options.redis {
            Some((url, mode)) => format!("rooms shared through Redis {url}, {mode:?}"),
            None => "in-memory broker".to_owned(),
        },
        if sockeye_hyper::disabled_by_env() {
            "; WebSockets disabled, SSE fallback only"
        } else {
            ""
        }
    );
    serve_hub(listener, service, &drain, options.caps, &hub).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nicknames_rooms_and_messages() {
        assert!(valid_nick("ann") && valid_nick("Zoë K.") && valid_nick("a_b-c"));
        assert!(
            !valid_nick("")
                && !valid_nick("   ")
                && !valid_nick("<script>")
                && !valid_nick(&"x".repeat(33))
        );
        assert!(valid_room("chat:lobby") && valid_room("chat:a-1_b"));
        assert!(!valid_room("chat:") && !valid_room("chat:Lobby") && !valid_room("other:lobby"));
        let ann = Identity::new("ann");
        let publish = |data: &'static str| Access {
            identity: Some(&ann),
            topic: "chat:lobby",
            action: Action::Publish,
            data: Some(data),
        };
        assert!(authorize(publish(r#"{"nick":"ann","text":"hi","ts":1}"#)));
        assert!(!authorize(publish(r#"{"nick":"bob","text":"hi"}"#)));
        assert!(!authorize(publish(r#"{"nick":"ann","text":"  "}"#)));
        assert!(!authorize(publish(
            r#"{"nick":"ann","text":"hi","extra":1}"#
        )));
        assert!(!authorize(publish(r#"["ann","hi"]"#)));
    }
}
