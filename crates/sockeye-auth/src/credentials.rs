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

/// A query parameter's value: `+` is a space, as in
/// `application/x-www-form-urlencoded` (what browsers' `URLSearchParams`
/// write; a literal plus is `%2B`), then `%` and two hex digits are a byte.
/// A `%` not followed by two hex digits is kept as written; bytes that are
/// not UTF-8 become U+FFFD.
fn percent_decode(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
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

    fn query_value(target: &str) -> Option<String> {
        let mut p = parts(http::Request::get(target));
        match Carrier::Query("token".into()).extract(&mut p)? {
            Credentials::Query { value, .. } => Some(value.expose().to_owned()),
            other => panic!("{other:?}"),
        }
    }

    /// `u8::from_str_radix` takes a sign: `%+A` once decoded to a newline.
    /// An escape is `%` and exactly two hex digits; any other `%` is kept
    /// as written (and the `+` after it is a space, as everywhere).
    #[test]
    fn percent_escapes_are_two_hex_digits() {
        assert_eq!(query_value("/ws?token=%+A").as_deref(), Some("% A"));
        assert_eq!(query_value("/ws?token=%+a%+0").as_deref(), Some("% a% 0"));
        assert_eq!(query_value("/ws?token=%2+A").as_deref(), Some("%2 A"));
        assert_eq!(query_value("/ws?token=%zz%4").as_deref(), Some("%zz%4"));
        assert_eq!(query_value("/ws?token=%4a%4A").as_deref(), Some("JJ"));
        // `+` is a space (application/x-www-form-urlencoded); `%2B` a plus.
        assert_eq!(query_value("/ws?token=a+b%2Bc").as_deref(), Some("a b+c"));
        // Bytes that are not UTF-8 become U+FFFD.
        assert_eq!(query_value("/ws?token=%FFx").as_deref(), Some("\u{FFFD}x"));
        // The name is matched as written, not decoded; an empty value is none.
        assert_eq!(query_value("/ws?tok%65n=a&token="), None);
        assert_eq!(
            redacted_uri(&"/ws?token=%+A&x=1".parse().unwrap(), &["token".to_owned()]),
            "/ws?token=***&x=1"
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
