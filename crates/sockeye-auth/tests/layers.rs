//! The layers over real sockets, in front of sockeye-hyper's upgrade
//! service: Origin rules, cross-site hijacking, credentials of every
//! carrier, socket caps, secrets kept out of logs, and the order of
//! decisions when composed with permessage-deflate (also on axum).
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use sockeye_auth::{
    AuthLayer, Credentials, Identity, OriginLayer, OriginPolicy, PeerAddr, Rejection,
    SocketLimitLayer,
};
use sockeye_deflate::{DeflateConfig, DeflateLayer};
use sockeye_hyper::Body;
use sockeye_hyper::client::ClientBuilder;
use sockeye_hyper::server::{Handshake, UpgradeService, WebSocket};
use sockeye_hyper::{Error, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::{Layer, ServiceBuilder, ServiceExt};

// ===== harness =====

/// Serves `service`, inserting the TCP peer as [`PeerAddr`].
async fn serve<S>(service: S) -> SocketAddr
where
    S: tower::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve_on(listener, service)
}

/// [`serve`] on a listener already bound.
fn serve_on<S>(listener: TcpListener, service: S) -> SocketAddr
where
    S: tower::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = listener.accept().await.unwrap();
            let svc = service
                .clone()
                .map_request(move |mut req: Request<Incoming>| {
                    req.extensions_mut().insert(PeerAddr(peer));
                    req
                });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(svc))
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// Sends the identity it sees (or `anonymous`) and the selected
/// subprotocol, then echoes until the peer closes.
async fn whoami(mut ws: WebSocket, hs: Handshake) {
    let who = hs
        .extension::<Identity>()
        .map_or("anonymous", |i| i.subject())
        .to_owned();
    let protocol = hs.protocol.clone().unwrap_or_default();
    let _ = ws.send(format!("{who}|{protocol}")).await;
    while let Some(Ok(m)) = ws.next().await {
        if m.is_text() {
            let _ = ws.send(m).await;
        }
    }
    drop(hs);
}

fn upgrade()
-> UpgradeService<fn(WebSocket, Handshake) -> futures_util::future::BoxFuture<'static, ()>> {
    fn boxed(ws: WebSocket, hs: Handshake) -> futures_util::future::BoxFuture<'static, ()> {
        Box::pin(whoami(ws, hs))
    }
    UpgradeService::new(boxed as fn(_, _) -> _).protocols(["chat.v1"])
}

/// A raw upgrade request with extra header lines; returns the status line.
async fn status(addr: SocketAddr, extra: &str) -> String {
    status_for_host(addr, &addr.to_string(), extra).await
}

/// [`status`] with the given `Host` header.
async fn status_for_host(addr: SocketAddr, host: &str, extra: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 2048];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn first_line(resp: &str) -> &str {
    resp.lines().next().unwrap_or_default()
}

/// A validator accepting bearer `good`, Basic `ann:pw`, cookie `s=c00kie`,
/// query `token=q`, subprotocol token `t0k`; `down` means unavailable.
/// Counts its calls.
#[derive(Clone, Default)]
struct Check(Arc<AtomicUsize>);

impl Check {
    fn layer(&self) -> AuthLayer<impl sockeye_auth::Validator + use<>> {
        let calls = self.0.clone();
        AuthLayer::new(move |creds: Credentials| {
            calls.fetch_add(1, Ordering::SeqCst);
            let result = match &creds {
                Credentials::Bearer(t) if t.matches("down") => Err(Rejection::Unavailable),
                Credentials::Bearer(t) if t.matches("good") => Ok(Identity::new("bearer-user")),
                Credentials::Basic { user, password }
                    if user == "ann" && password.matches("pw") =>
                {
                    Ok(Identity::new("ann"))
                }
                Credentials::Cookie { value, .. } if value.matches("c00kie") => {
                    Ok(Identity::new("cookie-user"))
                }
                Credentials::Query { value, .. } if value.matches("q") => {
                    Ok(Identity::new("query-user"))
                }
                Credentials::Subprotocol(t) if t.matches("t0k") => {
                    Ok(Identity::new("browser-user"))
                }
                _ => Err(Rejection::Invalid),
            };
            async move { result }
        })
    }

    fn calls(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

// ===== Origin =====

#[tokio::test]
async fn origin_allow_list() {
    let policy =
        OriginPolicy::list(["https://chat.example.com", "https://*.apps.example.com"]).unwrap();
    let addr = serve(OriginLayer::new(policy).layer(upgrade())).await;
    for (origin, expected) in [
        ("Origin: https://chat.example.com\r\n", "101"),
        ("Origin: HTTPS://CHAT.EXAMPLE.COM:443\r\n", "101"),
        ("Origin: wss://a.apps.example.com\r\n", "101"),
        ("Origin: https://chat.example.com.evil.net\r\n", "403"),
        ("Origin: https://evilchat.example.com\r\n", "403"),
        ("Origin: http://chat.example.com\r\n", "403"),
        ("Origin: https://chat.example.com:8443\r\n", "403"),
        ("Origin: https://apps.example.com\r\n", "403"),
        ("Origin: null\r\n", "403"),
        ("Origin: not an origin\r\n", "403"),
        (
            "Origin: https://chat.example.com\r\nOrigin: https://chat.example.com\r\n",
            "403",
        ),
        ("", "101"),
    ] {
        let resp = status(addr, origin).await;
        assert!(first_line(&resp).contains(expected), "{origin:?} -> {resp}");
    }
}

#[tokio::test]
async fn same_origin_by_default_require_origin_and_pages() {
    let addr = serve(OriginLayer::new(OriginPolicy::same_origin()).layer(upgrade())).await;
    let resp = status(addr, &format!("Origin: http://{addr}\r\n")).await;
    assert!(first_line(&resp).contains("101"), "{resp}");
    let resp = status(addr, "Origin: http://127.0.0.1:1\r\n").await;
    assert!(first_line(&resp).contains("403"), "{resp}");

    let strict = OriginLayer::new(OriginPolicy::any()).require_origin(true);
    let addr = serve(strict.layer(upgrade())).await;
    assert!(first_line(&status(addr, "").await).contains("403"));
    assert!(
        first_line(&status(addr, "Origin: https://anything.example\r\n").await).contains("101")
    );
}

/// DNS rebinding: a page on `evil.example`, re-resolved to 127.0.0.1, sends
/// `Host` and `Origin` that agree. Same-origin alone lets it in; bound to
/// loopback, only the loopback names (and the operator's list) pass.
#[tokio::test]
async fn dns_rebinding_is_refused_on_a_loopback_server() {
    let open = serve(OriginLayer::new(OriginPolicy::same_origin()).layer(upgrade())).await;
    let port = open.port();
    let rebound = |host: String| (host.clone(), format!("Origin: http://{host}\r\n"));
    let (host, origin) = rebound(format!("evil.example:{port}"));
    let resp = status_for_host(open, &host, &origin).await;
    assert!(
        first_line(&resp).contains("101"),
        "without bound_to: {resp}"
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let layer = OriginLayer::new(OriginPolicy::same_origin())
        .bound_to(addr)
        .allow_hosts(["chat.test"])
        .unwrap();
    serve_on(listener, layer.layer(upgrade()));
    let p = addr.port();
    for (host, expected) in [
        (format!("evil.example:{p}"), "403"),
        (format!("127.0.0.1:{p}"), "101"),
        (format!("localhost:{p}"), "101"),
        (format!("LOCALHOST:{p}"), "101"),
        (format!("[::1]:{p}"), "101"),
        (format!("localhost:{}", p.wrapping_add(1)), "403"),
        ("localhost".to_owned(), "403"),
        (format!("chat.test:{p}"), "101"),
        ("chat.test".to_owned(), "101"),
        (format!("127.0.0.1.evil.example:{p}"), "403"),
    ] {
        let (host, origin) = rebound(host);
        let resp = status_for_host(addr, &host, &origin).await;
        assert!(first_line(&resp).contains(expected), "{host} -> {resp}");
    }
    // A client without Origin is held to the same hosts.
    let resp = status_for_host(addr, &format!("evil.example:{p}"), "").await;
    assert!(first_line(&resp).contains("403"), "{resp}");
    let resp = status_for_host(addr, &format!("127.0.0.1:{p}"), "").await;
    assert!(first_line(&resp).contains("101"), "{resp}");
}

#[tokio::test]
async fn cross_site_hijacking_is_refused_before_the_validator() {
    let check = Check::default();
    let service = ServiceBuilder::new()
        .layer(OriginLayer::new(
            OriginPolicy::list(["https://chat.example.com"]).unwrap(),
        ))
        .layer(check.layer().cookie("s"))
        .service(upgrade());
    let addr = serve(service).await;
    // A hostile page: valid session cookie, foreign Origin.
    let resp = status(addr, "Origin: https://evil.example\r\nCookie: s=c00kie\r\n").await;
    assert!(first_line(&resp).contains("403"), "{resp}");
    assert_eq!(check.calls(), 0, "the validator never saw it");
    // The real page.
    let resp = status(
        addr,
        "Origin: https://chat.example.com\r\nCookie: s=c00kie\r\n",
    )
    .await;
    assert!(first_line(&resp).contains("101"), "{resp}");
    assert_eq!(check.calls(), 1);
}

// ===== credentials =====

#[tokio::test]
async fn every_carrier_and_every_outcome() {
    let check = Check::default();
    let layer = check
        .layer()
        .bearer()
        .basic()
        .cookie("s")
        .query("token")
        .subprotocol("bearer.");
    let addr = serve(layer.layer(upgrade())).await;

    let resp = status(addr, "").await;
    assert!(first_line(&resp).contains("401"), "{resp}");
    let lower = resp.to_ascii_lowercase();
    assert!(
        lower.contains("www-authenticate: bearer realm=\"sockeye\""),
        "{resp}"
    );
    assert!(
        lower.contains("www-authenticate: basic realm=\"sockeye\""),
        "{resp}"
    );

    assert!(first_line(&status(addr, "Authorization: Bearer wrong\r\n").await).contains("403"));
    assert!(first_line(&status(addr, "Authorization: Bearer down\r\n").await).contains("503"));

    let url = format!("ws://{addr}/ws");
    for (builder, who) in [
        (
            ClientBuilder::new(url.clone()).header("Authorization", "Bearer good"),
            "bearer-user|",
        ),
        (
            ClientBuilder::new(url.clone()).header("Authorization", "Basic YW5uOnB3"),
            "ann|",
        ),
        (
            ClientBuilder::new(url.clone()).header("Cookie", "theme=x; s=c00kie"),
            "cookie-user|",
        ),
        (
            ClientBuilder::new(format!("{url}?room=1&token=q")),
            "query-user|",
        ),
        (
            ClientBuilder::new(url.clone()).protocols(["chat.v1", "bearer.t0k"]),
            "browser-user|chat.v1",
        ),
    ] {
        let (mut ws, resp) = builder.no_proxy().connect().await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(who));
        // The token subprotocol is never selected (never echoed).
        let selected = resp
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_ne!(selected.as_deref(), Some("bearer.t0k"));
    }
}

#[tokio::test]
async fn only_upgrades_are_checked_unless_asked() {
    let check = Check::default();
    let page = tower::service_fn(|_req: Request<Incoming>| async {
        Ok::<_, Infallible>(Response::new(sockeye_hyper_body("page")))
    });
    let addr = serve(check.layer().bearer().layer(page)).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");

    let strict = check.layer().bearer().check_all_requests(true);
    let page = tower::service_fn(|_req: Request<Incoming>| async {
        Ok::<_, Infallible>(Response::new(sockeye_hyper_body("page")))
    });
    let addr = serve(strict.layer(page)).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
}

fn sockeye_hyper_body(text: &'static str) -> Body {
    use http_body_util::BodyExt;
    http_body_util::Full::new(bytes_from(text))
        .map_err(|e| match e {})
        .boxed_unsync()
}

fn bytes_from(text: &'static str) -> hyper::body::Bytes {
    hyper::body::Bytes::from_static(text.as_bytes())
}

// ===== socket caps =====

#[tokio::test]
async fn per_identity_cap_and_release_when_the_socket_ends() {
    let check = Check::default();
    let limits = SocketLimitLayer::new().per_identity(2);
    let service = ServiceBuilder::new()
        .layer(check.layer().bearer())
        .layer(limits.clone())
        .service(upgrade());
    let addr = serve(service).await;
    let connect = || async move {
        ClientBuilder::new(format!("ws://{addr}/ws"))
            .header("Authorization", "Bearer good")
            .no_proxy()
            .connect()
            .await
    };
    let (mut a, _) = connect().await.unwrap();
    let (_b, _) = connect().await.unwrap();
    match connect().await {
        Err(Error::Proto(sockeye_proto::Error::Handshake(
            sockeye_proto::HandshakeError::UnexpectedStatus(s),
        ))) => {
            assert_eq!(s, 429)
        }
        other => panic!("expected 429, got {other:?}"),
    }
    assert_eq!(limits.open_for_identity("bearer-user"), 2);
    a.close(sockeye_hyper::CloseCode::NORMAL, "").await.unwrap();
    for _ in 0..100 {
        if limits.open_for_identity("bearer-user") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        limits.open_for_identity("bearer-user"),
        1,
        "released when the socket ended"
    );
    let (_c, _) = connect().await.unwrap();
}

#[tokio::test]
async fn per_ip_cap_trusts_forwarded_only_from_trusted_proxies() {
    let limits = SocketLimitLayer::new()
        .per_ip(1)
        .trusted_proxies(["127.0.0.1".parse().unwrap()]);
    let addr = serve(limits.clone().layer(upgrade())).await;
    // From a trusted proxy: the forwarded address counts.
    let via = |client: &'static str| async move {
        ClientBuilder::new(format!("ws://{addr}/ws"))
            .header("X-Forwarded-For", client)
            .no_proxy()
            .connect()
            .await
    };
    let (_a, _) = via("203.0.113.9").await.unwrap();
    let (_b, _) = via("203.0.113.10").await.unwrap();
    assert!(
        via("203.0.113.9").await.is_err(),
        "same client IP over the cap"
    );
    assert_eq!(limits.open_for_ip("203.0.113.9".parse().unwrap()), 1);
    // The proxies set X-Forwarded-For (the default): a `Forwarded` header
    // is the client's own, ignored, and the proxy's address counts.
    let spoofed = |client: &'static str| async move {
        ClientBuilder::new(format!("ws://{addr}/ws"))
            .header("Forwarded", client)
            .no_proxy()
            .connect()
            .await
    };
    let (_d, _) = spoofed("for=203.0.113.11").await.unwrap();
    assert!(
        spoofed("for=203.0.113.12").await.is_err(),
        "both count as the proxy"
    );
    assert_eq!(limits.open_for_ip("127.0.0.1".parse().unwrap()), 1);

    // An untrusted peer's header is ignored: its own address counts.
    let strict = SocketLimitLayer::new().per_ip(1);
    let addr = serve(strict.clone().layer(upgrade())).await;
    let forged = |client: &'static str| async move {
        ClientBuilder::new(format!("ws://{addr}/ws"))
            .header("X-Forwarded-For", client)
            .no_proxy()
            .connect()
            .await
    };
    let (_c, _) = forged("198.51.100.1").await.unwrap();
    assert!(
        forged("198.51.100.2").await.is_err(),
        "both come from 127.0.0.1"
    );
}

// ===== secrets =====

/// Every log line of the process, for the secrecy test.
fn log_lines() -> &'static Mutex<Vec<String>> {
    static LINES: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    LINES.get_or_init(|| {
        struct Collect;
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!(" {}={value:?}", field.name()));
            }
        }
        impl tracing::Subscriber for Collect {
            fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
                tracing::span::Id::from_u64(1)
            }
            fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
            fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
            fn event(&self, event: &tracing::Event<'_>) {
                let mut fields = Fields(String::new());
                event.record(&mut fields);
                log_lines().lock().unwrap().push(fields.0);
            }
            fn enter(&self, _: &tracing::span::Id) {}
            fn exit(&self, _: &tracing::span::Id) {}
        }
        let _ = tracing::subscriber::set_global_default(Collect);
        Mutex::new(Vec::new())
    })
}

#[tokio::test]
async fn secrets_never_appear_in_logs_errors_or_debug() {
    let lines = log_lines();
    let check = Check::default();
    let layer = check.layer().bearer().query("token").cookie("s");
    assert!(!format!("{layer:?}").contains("good"));
    let addr = serve(layer.layer(upgrade())).await;
    let _ = status(addr, "Authorization: Bearer SUPER-SECRET-1\r\n").await;
    let _ = status(addr, "Cookie: s=SUPER-SECRET-2\r\n").await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        b"GET /ws?room=1&token=SUPER-SECRET-3 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = [0u8; 512];
    let _ = tcp.read(&mut buf).await;
    let logged = lines.lock().unwrap().join("\n");
    assert!(
        logged.contains("token=***"),
        "the query token is logged redacted: {logged}"
    );
    assert!(!logged.contains("SUPER-SECRET"), "{logged}");
    let creds = Credentials::Bearer(sockeye_auth::Secret::new("SUPER-SECRET-4"));
    assert!(!format!("{creds:?}").contains("SUPER-SECRET"));
}

// ===== composition =====

/// A layer that counts the requests reaching it.
#[derive(Clone, Default)]
struct Probe(Arc<AtomicUsize>);

#[derive(Clone)]
struct ProbeService<S>(S, Arc<AtomicUsize>);

impl<S> Layer<S> for Probe {
    type Service = ProbeService<S>;
    fn layer(&self, inner: S) -> ProbeService<S> {
        ProbeService(inner, self.0.clone())
    }
}

impl<S: tower::Service<R>, R> tower::Service<R> for ProbeService<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;
    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }
    fn call(&mut self, req: R) -> S::Future {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.call(req)
    }
}

#[tokio::test]
async fn order_of_decisions_origin_then_auth_then_deflate() {
    let check = Check::default();
    let reached_deflate = Probe::default();
    let service = ServiceBuilder::new()
        .layer(OriginLayer::new(
            OriginPolicy::list(["https://chat.example.com"]).unwrap(),
        ))
        .layer(check.layer().bearer())
        .layer(reached_deflate.clone())
        .layer(DeflateLayer::new(DeflateConfig::new()))
        .service(upgrade());
    let addr = serve(service).await;
    let offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n";
    // Bad Origin: neither the validator nor the deflate layer runs.
    let resp = status(
        addr,
        &format!("Origin: https://evil.example\r\nAuthorization: Bearer good\r\n{offer}"),
    )
    .await;
    assert!(first_line(&resp).contains("403"));
    assert_eq!(
        (check.calls(), reached_deflate.0.load(Ordering::SeqCst)),
        (0, 0)
    );
    // No credentials: 401, deflate never negotiated.
    let resp = status(
        addr,
        &format!("Origin: https://chat.example.com\r\n{offer}"),
    )
    .await;
    assert!(first_line(&resp).contains("401"));
    assert!(
        !resp
            .to_ascii_lowercase()
            .contains("sec-websocket-extensions")
    );
    assert_eq!(reached_deflate.0.load(Ordering::SeqCst), 0);
    // Everything right: 101 with the deflate agreement.
    let resp = status(
        addr,
        &format!("Origin: https://chat.example.com\r\nAuthorization: Bearer good\r\n{offer}"),
    )
    .await;
    assert!(first_line(&resp).contains("101"), "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("sec-websocket-extensions: permessage-deflate")
    );
    assert_eq!(
        (check.calls(), reached_deflate.0.load(Ordering::SeqCst)),
        (1, 1)
    );
}

#[tokio::test]
async fn the_same_layers_on_an_axum_router() {
    use axum::routing::get;
    async fn ws(
        identity: Option<axum::Extension<Identity>>,
        upgrade: sockeye_hyper::axum::WebSocketUpgrade,
    ) -> axum::response::Response {
        let who = identity.map_or("anonymous".to_owned(), |i| i.0.subject().to_owned());
        upgrade.on_upgrade(move |mut socket| async move {
            let compressed = socket.connection().extension().is_some();
            let _ = socket.send(format!("{who} deflate={compressed}")).await;
        })
    }
    let check = Check::default();
    let app = axum::Router::new().route("/ws", get(ws)).layer(
        ServiceBuilder::new()
            .layer(OriginLayer::new(
                OriginPolicy::list(["https://chat.example.com"]).unwrap(),
            ))
            .layer(check.layer().bearer())
            .layer(DeflateLayer::new(DeflateConfig::new())),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let resp = status(
        addr,
        "Origin: https://evil.example\r\nAuthorization: Bearer good\r\n",
    )
    .await;
    assert!(first_line(&resp).contains("403"), "{resp}");
    assert_eq!(check.calls(), 0);
    let resp = status(
        addr,
        "Origin: https://chat.example.com\r\nSec-WebSocket-Extensions: permessage-deflate\r\n",
    )
    .await;
    assert!(first_line(&resp).contains("401"), "{resp}");
    assert!(
        !resp
            .to_ascii_lowercase()
            .contains("sec-websocket-extensions")
    );
    let (mut ws, _) = ClientBuilder::new(format!("ws://{addr}/ws"))
        .header("Origin", "https://chat.example.com")
        .header("Authorization", "Bearer good")
        .deflate(DeflateConfig::new())
        .no_proxy()
        .connect()
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("bearer-user deflate=true")
    );
}
