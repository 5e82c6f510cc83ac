//! A session's commands, whatever carried them: one line each, parsed,
//! held to the rate limit (bad ones earn strikes), run against the hub and
//! answered through the session's queue.

use std::sync::Arc;

use super::subscribe::Requester;
use super::{Hub, Inner};
use crate::authorizer::Action;
use crate::broker::Member;
use crate::error::{Error, ErrorCode};
use crate::protocol::{self, Command, StreamPosition, position_json};
use crate::session::{Limits, Session};

impl Hub {
    /// One text frame (or POST body) of commands, one per line.
    pub(crate) async fn text(&self, session: &Arc<Session>, text: &str, limits: &mut Limits) {
        for line in protocol::split_commands(text) {
            if session.is_closed() {
                return;
            }
            let bad = match protocol::parse_command(line) {
                Err(bad) => {
                    session.control(protocol::reply_error(
                        bad.id,
                        ErrorCode::BadRequest,
                        &bad.message,
                    ));
                    true
                }
                Ok(command) if !limits.take() => {
                    session.control(rate_limited_reply(Some(command.id())));
                    true
                }
                Ok(command) => {
                    self.command(session, command).await;
                    false
                }
            };
            if bad {
                limits.strike(session);
            }
        }
    }

    /// A binary frame: not a command.
    pub(crate) fn binary(&self, session: &Session, limits: &mut Limits) {
        session.control(protocol::reply_error(
            None,
            ErrorCode::BadRequest,
            "commands are text frames",
        ));
        limits.strike(session);
    }

    async fn command(&self, session: &Arc<Session>, command: Command) {
        let inner = &self.inner;
        match command {
            Command::Subscribe { id, topic, since } => {
                if let Err(e) = self
                    .subscribe_as(session, Requester::Client(id), &topic, since)
                    .await
                {
                    session.control(refused_reply(Some(id), &e));
                }
            }
            Command::Unsubscribe { id, topic } => {
                let reply = match self.unsubscribe_session(session, &topic).await {
                    Ok(()) => protocol::reply_ok(id, "{}"),
                    Err(e) => refused_reply(Some(id), &e),
                };
                session.control(reply);
            }
            Command::Publish { id, topic, data } => {
                let reply = match inner.client_publish(session, &topic, data.get()).await {
                    Ok(position) => protocol::reply_ok(id, &position_json(position.as_ref(), None)),
                    Err(e) => refused_reply(Some(id), &e),
                };
                session.control(reply);
            }
            Command::Presence { id, topic } => {
                let reply = match inner.client_presence(session, &topic).await {
                    Ok(members) => {
                        let list = serde_json::to_string(&members).unwrap_or_else(|_| "[]".into());
                        protocol::reply_ok(
                            id,
                            &format!("{{\"count\":{},\"members\":{list}}}", members.len()),
                        )
                    }
                    Err(e) => refused_reply(Some(id), &e),
                };
                session.control(reply);
            }
        }
    }
}

impl Inner {
    async fn client_publish(
        &self,
        session: &Session,
        topic: &str,
        data: &str,
    ) -> Result<Option<StreamPosition>, Error> {
        let ns = self.namespace(topic)?;
        if !ns.client_publish {
            return Err(Error::refused(
                ErrorCode::Forbidden,
                "clients may not publish in this namespace",
            ));
        }
        if data.len() > ns.max_data_bytes {
            return Err(Error::refused(ErrorCode::LimitExceeded, "data too large"));
        }
        self.authorize(session, topic, Action::Publish, Some(data))
            .await?;
        if data.contains('\r') {
            // A lone CR (the command line was split at LF) can only be
            // whitespace between JSON tokens, but an event stream reads it
            // as a line end and would cut the `data:` line: a space is the
            // same JSON, byte for byte the same length.
            return self.publish(topic, &data.replace('\r', " "), &ns).await;
        }
        self.publish(topic, data, &ns).await
    }

    async fn client_presence(&self, session: &Session, topic: &str) -> Result<Vec<Member>, Error> {
        let ns = self.namespace(topic)?;
        if !ns.presence {
            return Err(Error::refused(
                ErrorCode::BadRequest,
                "presence is off for this namespace",
            ));
        }
        self.authorize(session, topic, Action::Subscribe, None)
            .await?;
        self.broker.presence(topic).await
    }
}

fn refused_reply(id: Option<u64>, error: &Error) -> String {
    let message = match error {
        Error::Refused { message, .. } => message.clone(),
        other => other.to_string(),
    };
    protocol::reply_error(id, error.code(), &message)
}

fn rate_limited_reply(id: Option<u64>) -> String {
    protocol::reply_error(id, ErrorCode::RateLimited, "too many commands")
}
