//! # sockeye-auth
//!
//! Decide who may open a WebSocket, before the 101, as tower layers in
//! tower-http's grammar. WebSocket has no same-origin restriction: any page
//! can open a socket to any server, and the browser sends its cookies along
//! (cross-site WebSocket hijacking). These layers close that by
//! construction:
//!
//! - [`OriginLayer`] with [`OriginPolicy`]: whole-origin comparison after
//!   normalisation, explicit `*.example.com` wildcards only, or
//!   [`OriginPolicy::same_origin`] (the `Origin` must match `Host`); the
//!   policy is always chosen explicitly; `null`, unparsable or repeated
//!   `Origin` → 403.
//! - [`AuthLayer`] with an async [`Validator`]: credentials from a bearer
//!   token, Basic, a cookie, a query parameter (opt-in) or a
//!   subprotocol-carried token; 401 / 403 / 503; the [`Identity`] goes into
//!   the request's extensions and on to the socket handler.
//! - [`SocketLimitLayer`]: concurrent sockets per identity and per client IP
//!   (429). The client IP is taken from a header only when the peer is a
//!   configured trusted proxy, and then from the one header those proxies
//!   set ([`ForwardedHeader`]: `X-Forwarded-For` by default, or RFC 7239
//!   `Forwarded`), walked from the right and stopped at the first hop that
//!   is not a trusted proxy or does not parse.
//!
//! The layers guard both ways of opening a socket: the HTTP/1.1 upgrade
//! (`Upgrade: websocket`) and HTTP/2's extended CONNECT (RFC 8441; any
//! HTTP/2 `CONNECT` carrying `Sec-WebSocket-Version`, since `:protocol` is
//! not among the headers).
//!
//! A rejection is an HTTP response, never an `Err`; decisions travel in
//! `http::Extensions`. The crate depends on `http`, the tower traits and
//! sockeye-proto's sans-IO core (its upgrade test and `PeerAddr`), no
//! runtime.
//!
//! ## Parsing untrusted headers
//!
//! Every header read here comes from the network, and each is parsed to a
//! strict rule; what does not fit is refused, never guessed at:
//!
//! - `Origin` and `Host`: `scheme://host[:port]` and `host[:port]`, the
//!   host a name (letters, digits, `-`, `.`, `_`), an IPv4 address or an
//!   IPv6 address in brackets; the port digits. `a:b:80` is not a host
//!   and port, and such an `Origin` gets 403.
//! - A query-parameter credential is decoded as a form field: `+` is a
//!   space, `%` and two hex digits a byte, any other `%` kept as written.
//! - `X-Forwarded-For` / `Forwarded`: see [`SocketLimitLayer`].
//!
//! ```text
//! hyper ─► OriginLayer ─► AuthLayer ─► SocketLimitLayer ─► DeflateLayer ─► UpgradeService
//!            403            401/403/503    429                 agreement        101
//! ```
//!
//! ## Choosing a credential carrier
//!
//! | client | carrier | why |
//! |---|---|---|
//! | a service, a CLI, a phone app | `Authorization: Bearer` ([`AuthLayer::bearer`]) | it can set headers; nothing lands in URLs |
//! | a browser, same site | session cookie ([`AuthLayer::cookie`]) **with** an [`OriginLayer`] | the browser sends the cookie by itself; the Origin check is what stops other sites from riding it; set the cookie `SameSite=Lax` or `Strict` |
//! | a browser, token in hand | subprotocol ([`AuthLayer::subprotocol`]): `new WebSocket(url, ["app.v1", "bearer." + token])` | the browser API cannot set headers; the layer removes the token entry so it is never echoed |
//! | a browser, nothing else works | query parameter ([`AuthLayer::query`]) | URLs end up in proxy and access logs: use short-lived single-use tokens; sockeye redacts it in its own logs |
//!
//! ## Metrics
//!
//! With feature `metrics` (off by default), each layer counts its
//! decisions through the `metrics` facade:
//!
//! | name | labels | counts |
//! |---|---|---|
//! | `sockeye_auth_decisions_total` | `layer`: `origin`/`auth`/`limit`, `outcome`: `allowed`/`refused`, and on refusals `status`: `401`/`403`/`429`/`503` | requests a layer checked (upgrade requests, or all with `check_all_requests`): let through, or answered with that status |
//!
//! No label carries a credential, an origin, a host, an identity or an
//! address. Requests a layer does not check pass uncounted.
//!
//! Services needing auth after the upgrade (a first-message token) can still
//! use an Origin check here and authenticate in the handler.
//!
//! ```
//! use sockeye_auth::{AuthLayer, Credentials, Identity, OriginLayer, OriginPolicy, Rejection};
//! use tower::ServiceBuilder;
//!
//! # let upgrade_service = tower::service_fn(|_req: http::Request<()>| async {
//! #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
//! # });
//! let service = ServiceBuilder::new()
//!     .layer(OriginLayer::new(OriginPolicy::list(["https://chat.example.com"]).unwrap()))
//!     .layer(
//!         AuthLayer::new(|creds: Credentials| async move {
//!             match creds {
//!                 Credentials::Cookie { value, .. } if value.matches("session-42") => {
//!                     Ok(Identity::new("user-42"))
//!                 }
//!                 _ => Err(Rejection::Invalid),
//!             }
//!         })
//!         .cookie("session"),
//!     )
//!     .service(upgrade_service);
//! # drop(service);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod auth;
mod credentials;
mod forwarded;
mod identity;
mod limit;
mod observe;
mod origin;
mod rejection;

pub use auth::{Auth, AuthLayer, Validator, future};
pub use credentials::{Credentials, Secret};
pub use forwarded::ForwardedHeader;
pub use identity::{Identity, Rejection};
pub use limit::{ClientIp, PeerAddr, SocketLimit, SocketLimitLayer, SocketPermit};
pub use origin::{InvalidOrigin, Origin, OriginCheck, OriginLayer, OriginPolicy};
pub use rejection::Reject;
