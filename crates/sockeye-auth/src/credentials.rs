//! Credentials and where they are taken from.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::header::{AUTHORIZATION, COOKIE, HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use http::request::Parts;

/// A secret value: never shown by `Debug` or `Display`, compared in
/// constant time.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares with `other` in time that depends only on the lengths.
    ///
    /// ```
    /// use sockeye_auth::Secret;
    /// assert!(Secret::new("s3cret").matches("s3cret"));
    /// assert!(!Secret::new("s3cret").matches("s3creT"));
    /// assert_eq!(format!("{:?}", Secret::new("s3cret")), "Secret(***)");
    /// ```
    pub fn matches(&self, other: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), other.as_bytes());
        let mut diff = u8::from(a.len() != b.len());
        for i in 0..a.len().max(b.len()) {
            diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xFF);
        }
        diff == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What a request presented.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Credentials {
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// `Authorization: Basic` user and password.
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: Secret,
    },
    /// A cookie.
    Cookie {
        /// The cookie's name.
        name: String,
        /// Its value.
        value: Secret,
    },
    /// A query parameter (off unless enabled: query strings end up in logs).
    Query {
        /// The parameter's name.
        name: String,
        /// Its value.
        value: Secret,
    },
    /// A token carried as a `Sec-WebSocket-Protocol` entry (browsers cannot
    /// set headers); the prefix is removed.
    Subprotocol(Secret),
}

/// Where an [`AuthLayer`](crate::AuthLayer) looks for credentials, in the
/// order they are added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Carrier {
    Bearer,
    Basic,
    Cookie(String),
    Query(String),
    Subprotocol(String),
}

impl Carrier {
    /// Takes this carrier's credentials from the request, if present. A
    /// subprotocol token is removed from `Sec-WebSocket-Protocol`, so the
    /// upgrade can never select (and echo) it.
    pub(crate) fn extract(&self, parts: &mut Parts) -> Option<Credentials> {
        match self {
            Self::Bearer => {
                let v = auth_header(parts)?;
                let token = strip_scheme(v, "bearer")?;
                (!token.is_empty()).then(|| Credentials::Bearer(Secret::new(token)))
            }
            Self::Basic => {
                let v = auth_header(parts)?;
                let encoded = strip_scheme(v, "basic")?;
                let decoded = STANDARD.decode(encoded).ok()?;
                let text = String::from_utf8(decoded).ok()?;
                let (user, password) = text.split_once(':')?;
                Some(Credentials::Basic {
                    user: user.to_owned(),
                    password: Secret::new(password),
                })
            }
            Self::Cookie(name) => {
                let value = parts
                    .headers
                    .get_all(COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(';'))
                    .find_map(|pair| {
                        let (k, v) = pair.trim().split_once('=')?;
                        (k.trim() == name).then(|| v.trim().trim_matches('"').to_owned())
                    })?;
                Some(Credentials::Cookie {
                    name: name.clone(),
                    value: Secret::new(value),
                })
            }
            Self::Query(name) => {
                let query = parts.uri.query()?;
                let value = query.split('&').find_map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (k == name).then(|| percent_decode(v))
                })?;
                (!value.is_empty()).then(|| Credentials::Query {
                    name: name.clone(),
                    value: Secret::new(value),
                })
            }
            Self::Subprotocol(prefix) => {
                let mut token = None;
                let mut kept = Vec::new();
                for value in parts.headers.get_all(SEC_WEBSOCKET_PROTOCOL) {
                    let Ok(s) = value.to_str() else { continue };
                    for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                        match p.strip_prefix(prefix.as_str()) {
                            Some(t) if token.is_none() && !t.is_empty() => {
                                token = Some(t.to_owned())
                            }
                            Some(_) => {}
                            None => kept.push(p.to_owned()),
                        }
                    }
                }
                let token = token?;
                parts.headers.remove(SEC_WEBSOCKET_PROTOCOL);
                if !kept.is_empty()
                    && let Ok(v) = HeaderValue::try_from(kept.join(", "))
                {
                    parts.headers.insert(SEC_WEBSOCKET_PROTOCOL, v);
                }
                Some(Credentials::Subprotocol(Secret::new(token)))
            }
        }
    }

    /// The `WWW-Authenticate` challenge for a missing credential, if the
    /// carrier has one.
    pub(crate) fn challenge(&self, realm: &str) -> Option<String> {
        match self {
            Self::Bearer => Some(format!("Bearer realm=\"{realm}\"")),
            Self::Basic => Some(format!("Basic realm=\"{realm}\", charset=\"UTF-8\"")),
            _ => None,
        }
    }
}

fn auth_header(parts: &Parts) -> Option<&str> {
    parts.headers.get(AUTHORIZATION)?.to_str().ok()
}

/// The credentials after an auth scheme name (case-insensitive).
fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (name, rest) = value.trim().split_once(' ')?;
    name.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    out.push(v);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The request target with the values of `secret_params` replaced, for logs.
pub(crate) fn redacted_uri(uri: &http::Uri, secret_params: &[String]) -> String {
    let Some(query) = uri.query() else {
        return uri.path().to_owned();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if secret_params.iter().any(|p| p == k) => format!("{k}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{}?{}", uri.path(), query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(build: http::request::Builder) -> Parts {
        build.body(()).unwrap().into_parts().0
    }

    #[test]
    fn bearer_and_basic() {
        let mut p = parts(http::Request::get("/").header("authorization", "bearer  abc.def"));
        assert!(
            matches!(Carrier::Bearer.extract(&mut p), Some(Credentials::Bearer(s)) if s.expose() == "abc.def")
        );
        assert!(Carrier::Basic.extract(&mut p).is_none());
        let mut p = parts(http::Request::get("/").header(
            "authorization",
            format!("Basic {}", STANDARD.encode("ann:pw:x")),
        ));
        match Carrier::Basic.extract(&mut p) {
            Some(Credentials::Basic { user, password }) => {
                assert_eq!(user, "ann");
                assert_eq!(password.expose(), "pw:x");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cookie_and_query() {
        let mut p = parts(
            http::Request::get("/ws?room=1&token=a%20b")
                .header("cookie", "theme=dark; session=xyz")
                .header("cookie", "other=1"),
        );
        let c = Carrier::Cookie("session".into()).extract(&mut p).unwrap();
        assert!(matches!(c, Credentials::Cookie { value, .. } if value.expose() == "xyz"));
        let q = Carrier::Query("token".into()).extract(&mut p).unwrap();
        assert!(matches!(q, Credentials::Query { value, .. } if value.expose() == "a b"));
        assert!(Carrier::Cookie("nope".into()).extract(&mut p).is_none());
        assert_eq!(
            redacted_uri(&p.uri, &["token".to_owned()]),
            "/ws?room=1&token=***"
        );
    }

    #[test]
    fn subprotocol_token_is_removed_from_the_offer() {
        let mut p = parts(
            http::Request::get("/")
                .header("sec-websocket-protocol", "chat.v1, bearer.T0K3N, chat.v2"),
        );
        let c = Carrier::Subprotocol("bearer.".into())
            .extract(&mut p)
            .unwrap();
        assert!(matches!(c, Credentials::Subprotocol(s) if s.expose() == "T0K3N"));
        assert_eq!(p.headers["sec-websocket-protocol"], "chat.v1, chat.v2");
        let mut only = parts(http::Request::get("/").header("sec-websocket-protocol", "bearer.x"));
        Carrier::Subprotocol("bearer.".into())
            .extract(&mut only)
            .unwrap();
        assert!(only.headers.get("sec-websocket-protocol").is_none());
    }

    #[test]
    fn secrets_never_show() {
        let c = Credentials::Basic {
            user: "u".into(),
            password: Secret::new("hunter2"),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(Secret::new("hunter2").to_string(), "***");
    }
}
