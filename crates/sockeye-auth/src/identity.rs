//! Who a validator says the peer is, and how a validation can fail.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// An authenticated peer: a subject (user or service id) and attributes
/// (roles, tenant, ...). Cheap to clone; lands in the request's extensions
/// and reaches the socket handler.
///
/// ```
/// use sockeye_auth::Identity;
/// let id = Identity::new("alice").with_attribute("role", "admin");
/// assert_eq!(id.subject(), "alice");
/// assert_eq!(id.attribute("role"), Some("admin"));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    subject: Arc<str>,
    attributes: Arc<BTreeMap<String, String>>,
}

impl Identity {
    /// An identity named `subject`.
    pub fn new(subject: impl Into<String>) -> Self {
        Self {
            subject: subject.into().into(),
            attributes: Arc::default(),
        }
    }

    /// Adds an attribute.
    #[must_use]
    pub fn with_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.attributes).insert(key.into(), value.into());
        self
    }

    /// The subject.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// An attribute.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("subject", &self.subject)
            .field("attributes", &self.attributes.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Why a validator refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// The credentials are wrong, expired or not allowed here (403).
    Invalid,
    /// The validator could not decide (its store is down, ...) (503).
    Unavailable,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Invalid => "invalid credentials",
            Self::Unavailable => "credential check unavailable",
        })
    }
}

impl std::error::Error for Rejection {}
