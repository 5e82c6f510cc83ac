//! The JSON wire protocol (text frames). Specified in `PROTOCOL.md`; parsing
//! and rendering are pure functions here.
//!
//! Client → server, one command per line (several lines may share a frame):
//!
//! ```text
//! {"id":1,"op":"subscribe","topic":"chat:lobby","since":{"offset":10,"epoch":"e7c1"}}
//! {"id":2,"op":"unsubscribe","topic":"chat:lobby"}
//! {"id":3,"op":"publish","topic":"chat:lobby","data":{"nick":"ann","text":"hi"}}
//! {"id":4,"op":"presence","topic":"chat:lobby"}
//! ```
//!
//! Server → client: replies `{"id":N,"ok":{...}}` or
//! `{"id":N,"error":{"code":"forbidden","message":"...","temporary":false}}`,
//! pushes `{"topic":"chat:lobby","offset":11,"data":{...}}` and events
//! `{"topic":"chat:lobby","event":"join","member":{...}}`.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::ErrorCode;

/// Where a client is in a topic's stream: the last offset it saw in an epoch.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StreamPosition {
    /// The offset of the last publication seen.
    pub offset: u64,
    /// The stream's incarnation: a different epoch means the history was lost.
    pub epoch: String,
}

/// A parsed client command.
#[derive(Debug)]
#[non_exhaustive]
pub enum Command {
    /// Subscribe, recovering from `since` when given.
    Subscribe {
        /// The request id (echoed in the reply).
        id: u64,
        /// The topic.
        topic: String,
        /// Recover the publications after this position.
        since: Option<StreamPosition>,
    },
    /// Unsubscribe.
    Unsubscribe {
        /// The request id.
        id: u64,
        /// The topic.
        topic: String,
    },
    /// Publish `data` (any JSON) to a topic.
    Publish {
        /// The request id.
        id: u64,
        /// The topic.
        topic: String,
        /// The payload, kept as raw JSON: never re-encoded.
        data: Box<RawValue>,
    },
    /// Ask for a topic's presence.
    Presence {
        /// The request id.
        id: u64,
        /// The topic.
        topic: String,
    },
}

impl Command {
    /// The request id.
    pub fn id(&self) -> u64 {
        match self {
            Self::Subscribe { id, .. }
            | Self::Unsubscribe { id, .. }
            | Self::Publish { id, .. }
            | Self::Presence { id, .. } => *id,
        }
    }
}

/// A command that could not be understood: the id (when readable) and why.
#[derive(Debug, PartialEq, Eq)]
pub struct BadCommand {
    /// The request id, if the command had a readable one.
    pub id: Option<u64>,
    /// What is wrong.
    pub message: String,
}

#[derive(Deserialize)]
struct Raw<'a> {
    id: Option<u64>,
    #[serde(borrow)]
    op: Option<&'a str>,
    topic: Option<String>,
    since: Option<StreamPosition>,
    data: Option<Box<RawValue>>,
}

/// Parses one command (one line of JSON).
///
/// ```
/// use sockeye_pubsub::protocol::{parse_command, Command};
/// let cmd = parse_command(r#"{"id":3,"op":"publish","topic":"chat:x","data":{"a":[1,2]}}"#).unwrap();
/// match cmd {
///     Command::Publish { id, topic, data } => {
///         assert_eq!((id, topic.as_str(), data.get()), (3, "chat:x", r#"{"a":[1,2]}"#));
///     }
///     _ => unreachable!(),
/// }
/// assert!(parse_command("not json").is_err());
/// ```
pub fn parse_command(line: &str) -> Result<Command, BadCommand> {
    let raw: Raw<'_> = serde_json::from_str(line).map_err(|e| BadCommand {
        id: None,
        message: format!("malformed JSON: {e}"),
    })?;
    let bad = |message: &str| BadCommand {
        id: raw.id,
        message: message.to_owned(),
    };
    let id = raw.id.ok_or_else(|| bad("missing numeric id"))?;
    let topic = raw.topic.clone().ok_or_else(|| bad("missing topic"))?;
    match raw.op {
        Some("subscribe") => Ok(Command::Subscribe {
            id,
            topic,
            since: raw.since,
        }),
        Some("unsubscribe") => Ok(Command::Unsubscribe { id, topic }),
        Some("publish") => {
            let data = raw.data.ok_or_else(|| bad("missing data"))?;
            Ok(Command::Publish { id, topic, data })
        }
        Some("presence") => Ok(Command::Presence { id, topic }),
        Some(_) => Err(bad("unknown op")),
        None => Err(bad("missing op")),
    }
}

/// The lines of a frame: one command each, blank lines ignored.
pub fn split_commands(frame: &str) -> impl Iterator<Item = &str> {
    frame.split('\n').map(str::trim).filter(|l| !l.is_empty())
}

/// A JSON string literal for `s`.
pub(crate) fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// `{"id":N,"ok":<ok>}`
pub(crate) fn reply_ok(id: u64, ok: &str) -> String {
    format!("{{\"id\":{id},\"ok\":{ok}}}")
}

/// `{"id":N,"error":{...}}` (`"id":null` when unreadable).
pub(crate) fn reply_error(id: Option<u64>, code: ErrorCode, message: &str) -> String {
    let id = id.map_or_else(|| "null".to_owned(), |i| i.to_string());
    format!(
        "{{\"id\":{id},\"error\":{{\"code\":\"{}\",\"message\":{},\"temporary\":{}}}}}",
        code.as_str(),
        json_string(message),
        code.is_temporary()
    )
}

/// A stream position as a reply's `ok` object:
/// `{"offset":N,"epoch":E<,"recovered":B>}`, `{}` without one.
pub(crate) fn position_json(position: Option<&StreamPosition>, recovered: Option<bool>) -> String {
    let Some(p) = position else {
        return "{}".to_owned();
    };
    let recovered = recovered.map_or_else(String::new, |r| format!(",\"recovered\":{r}"));
    format!(
        "{{\"offset\":{},\"epoch\":{}{recovered}}}",
        p.offset,
        json_string(&p.epoch)
    )
}

/// A publication push: `{"topic":T,"offset":N,"data":D}` (no offset without
/// history).
pub(crate) fn push(topic: &str, offset: Option<u64>, data: &str) -> String {
    let mut out = String::with_capacity(topic.len() + data.len() + 40);
    out.push_str("{\"topic\":");
    out.push_str(&json_string(topic));
    if let Some(o) = offset {
        let _ = write!(out, ",\"offset\":{o}");
    }
    out.push_str(",\"data\":");
    out.push_str(data);
    out.push('}');
    out
}

/// An event: `{"topic":T,"event":E<,extra fields>}`; `extra` is a JSON
/// object's inside (without braces), or empty.
pub(crate) fn event(topic: &str, event: &str, extra: &str) -> String {
    let sep = if extra.is_empty() { "" } else { "," };
    format!(
        "{{\"topic\":{},\"event\":\"{event}\"{sep}{extra}}}",
        json_string(topic)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_and_reject() {
        let c = parse_command(
            r#"{"id":1,"op":"subscribe","topic":"chat:lobby","since":{"offset":10,"epoch":"e"}}"#,
        )
        .unwrap();
        assert!(matches!(
            c,
            Command::Subscribe {
                id: 1,
                since: Some(StreamPosition { offset: 10, .. }),
                ..
            }
        ));
        for (line, id) in [
            (r#"{"op":"subscribe","topic":"a:b"}"#, None),
            (r#"{"id":2,"op":"subscribe"}"#, Some(2)),
            (r#"{"id":3,"op":"dance","topic":"a:b"}"#, Some(3)),
            (r#"{"id":4,"op":"publish","topic":"a:b"}"#, Some(4)),
            (r#"{"id":-1,"op":"subscribe","topic":"a:b"}"#, None),
            ("[1,2,3]", None),
        ] {
            assert_eq!(parse_command(line).unwrap_err().id, id, "{line}");
        }
        assert_eq!(
            split_commands("a\n\n b \r\n").collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn frames_are_valid_json() {
        let check = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
        check(&reply_ok(1, "{}"));
        check(&reply_error(
            None,
            ErrorCode::BadRequest,
            "quote \" and \\ and\nnewline",
        ));
        let p = check(&push("chat:\"x\"", Some(7), r#"{"a":1}"#));
        assert_eq!(p["offset"], 7);
        assert_eq!(p["data"]["a"], 1);
        check(&push("a:b", None, "null"));
        check(&event("a:b", "lag", ""));
        check(&event("a:b", "join", r#""member":{"id":"x"}"#));
    }
}
