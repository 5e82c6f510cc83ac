//! Deciding who may subscribe to and publish on which topic.

use std::future::Future;
use std::pin::Pin;

use sockeye_auth::Identity;

/// What a client asks to do on a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Receive the topic's publications (and ask for its presence).
    Subscribe,
    /// Publish to the topic.
    Publish,
}

/// A request to check.
#[derive(Clone, Copy, Debug)]
pub struct Access<'a> {
    /// Who asks: the sockeye-auth identity of the socket, if it has one.
    pub identity: Option<&'a Identity>,
    /// The topic.
    pub topic: &'a str,
    /// The action.
    pub action: Action,
    /// For [`Action::Publish`], the data as raw JSON (to check its shape,
    /// or that it names its author); `None` for subscribe.
    pub data: Option<&'a str>,
}

/// Decides, asynchronously, whether a client may act on a topic. Namespace
/// rules (client publish allowed or not) apply first.
///
/// Implemented for closures `Fn(Access<'_>) -> bool` (synchronous checks);
/// implement the trait for checks that await (a database, a token service).
///
/// ```
/// use sockeye_pubsub::{Access, Action};
/// // Users may publish only to their own topic `user:<subject>`.
/// let rule = |a: Access<'_>| match a.action {
///     Action::Subscribe => true,
///     Action::Publish => a.identity.is_some_and(|id| a.topic == format!("user:{}", id.subject())),
///     _ => false,
/// };
/// # let _: &dyn sockeye_pubsub::Authorizer = &rule;
/// ```
pub trait Authorizer: Send + Sync + 'static {
    /// `true` to allow.
    fn authorize<'a>(
        &'a self,
        access: Access<'a>,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>>;
}

impl<F> Authorizer for F
where
    F: Fn(Access<'_>) -> bool + Send + Sync + 'static,
{
    fn authorize<'a>(
        &'a self,
        access: Access<'a>,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        let allowed = self(access);
        Box::pin(async move { allowed })
    }
}

/// Allows everything the namespace allows.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn authorize<'a>(
        &'a self,
        _access: Access<'a>,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        Box::pin(async { true })
    }
}
