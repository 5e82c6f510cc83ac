//! WebSockets over HTTP/2 (RFC 8441) on real sockets: hyper-util's auto
//! server with `enable_connect_protocol` in front of `UpgradeService`, and
//! hyper's HTTP/2 client sending extended CONNECT requests (h2c, prior
//! knowledge), built here by hand for the server tests and by
//! `ClientBuilder::connect_on` for the client's. Several sockets share one
//! connection; the layers guard these requests as they guard HTTP/1.1
//! upgrades.
#![cfg(feature = "http2")]
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper::ext::Protocol;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use sockeye_auth::{OriginLayer, OriginPolicy};
use sockeye_deflate::{DeflateConfig, DeflateLayer};
use sockeye_hyper::client::ClientBuilder;
use sockeye_hyper::server::UpgradeService;
use sockeye_hyper::{Body, Error, Message};
use sockeye_proto::extension::ExtensionItem;
use sockeye_proto::{CloseCode, Config, Role, WebSocket};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceBuilder;

/// Serves `service` with hyper-util's auto builder: HTTP/1.1, or HTTP/2
/// with the extended CONNECT setting (SETTINGS_ENABLE_CONNECT_PROTOCOL).
async fn serve_auto<S, B>(service: S) -> SocketAddr
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(serve_conn(TokioIo::new(tcp), service.clone()));
        }
    });
    addr
}

/// One connection through the auto builder, extended CONNECT on.
async fn serve_conn<I, S, B>(io: I, service: S)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http2().enable_connect_protocol();
    let _ = builder
        .serve_connection_with_upgrades(io, TowerToHyperService::new(service))
        .await;
}

/// An HTTP/2 client connection (prior knowledge).
async fn h2_client(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// An extended CONNECT for a WebSocket at `/ws`, plus `headers`.
fn connect_request(addr: SocketAddr, headers: &[(&str, &str)]) -> Request<Empty<Bytes>> {
    let mut req = Request::builder()
        .method(Method::CONNECT)
        .version(Version::HTTP_2)
        .uri(format!("http://{addr}/ws"))
        .extension(Protocol::from_static("websocket"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(Empty::new()).unwrap()
}

type H2Socket = WebSocket<TokioIo<hyper::upgrade::Upgraded>>;

/// Opens a WebSocket on a new stream; returns it with the response head.
async fn open(
    sender: &mut SendRequest<Empty<Bytes>>,
    req: Request<Empty<Bytes>>,
) -> (H2Socket, http::response::Parts) {
    sender.ready().await.unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{:?}", resp.headers());
    let (parts, body) = resp.into_parts();
    let upgraded = hyper::upgrade::on(Response::from_parts(parts.clone(), body))
        .await
        .unwrap();
    let ws = WebSocket::from_raw_socket(TokioIo::new(upgraded), Role::Client, Config::default());
    (ws, parts)
}

/// The status of a request that must not open a socket.
async fn refused(sender: &mut SendRequest<Empty<Bytes>>, req: Request<Empty<Bytes>>) -> u16 {
    sender.ready().await.unwrap();
    let resp = sender.send_request(req).await.unwrap();
    resp.status().as_u16()
}

fn echo_service() -> UpgradeService<
    fn(
        sockeye_hyper::server::WebSocket,
        sockeye_hyper::server::Handshake,
    ) -> futures_util::future::BoxFuture<'static, ()>,
> {
    fn boxed(
        ws: sockeye_hyper::server::WebSocket,
        hs: sockeye_hyper::server::Handshake,
    ) -> futures_util::future::BoxFuture<'static, ()> {
        Box::pin(common::echo(ws, hs))
    }
    UpgradeService::new(boxed as fn(_, _) -> _).protocols(["chat.v1"])
}

#[tokio::test]
async fn sockets_share_one_http2_connection() {
    let addr = serve_auto(echo_service()).await;
    let mut sender = h2_client(addr).await;
    let (mut a, head) = open(
        &mut sender,
        connect_request(
            addr,
            &[
                ("sec-websocket-version", "13"),
                ("sec-websocket-protocol", "x, chat.v1"),
            ],
        ),
    )
    .await;
    // RFC 8441 §5: no Upgrade, Connection or Sec-WebSocket-Accept.
    assert_eq!(head.headers["sec-websocket-protocol"], "chat.v1");
    for name in ["upgrade", "connection", "sec-websocket-accept"] {
        assert!(!head.headers.contains_key(name), "{name}");
    }
    let (mut b, _) = open(
        &mut sender,
        connect_request(addr, &[("sec-websocket-version", "13")]),
    )
    .await;

    // Interleaved traffic on the two streams, each echoed on its own.
    for i in 0..50u32 {
        a.send(Message::text(format!("a{i}"))).await.unwrap();
        b.send(Message::binary(vec![i as u8; 3000 + i as usize]))
            .await
            .unwrap();
    }
    for i in 0..50u32 {
        assert_eq!(
            a.next().await.unwrap().unwrap(),
            Message::text(format!("a{i}"))
        );
        assert_eq!(
            b.next().await.unwrap().unwrap(),
            Message::binary(vec![i as u8; 3000 + i as usize])
        );
    }
    // A large message spans many DATA frames and flow-control windows.
    let big = vec![0x5a; 3 << 20];
    a.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(a.next().await.unwrap().unwrap(), Message::binary(big));

    // Closing one socket ends its stream (the close handshake completes
    // over it); the other goes on.
    tokio::time::timeout(Duration::from_secs(5), a.close(CloseCode::NORMAL, "bye"))
        .await
        .unwrap()
        .unwrap();
    assert!(a.next().await.is_none());
    b.send(Message::text("still here")).await.unwrap();
    assert_eq!(
        b.next().await.unwrap().unwrap(),
        Message::text("still here")
    );

    // A plain request on the same connection is not a socket: 426 without a fallback.
    sender.ready().await.unwrap();
    let plain = Request::get(format!("http://{addr}/"))
        .version(Version::HTTP_2)
        .body(Empty::new())
        .unwrap();
    let resp = sender.send_request(plain).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UPGRADE_REQUIRED);
    assert!(!resp.headers().contains_key("upgrade"));
}

#[tokio::test]
async fn bad_extended_connects_get_their_status() {
    let addr = serve_auto(echo_service()).await;
    let mut sender = h2_client(addr).await;
    // Wrong WebSocket version: 426 naming 13.
    assert_eq!(
        refused(
            &mut sender,
            connect_request(addr, &[("sec-websocket-version", "8")])
        )
        .await,
        426
    );
    // Another protocol than websocket.
    let mut other = connect_request(addr, &[("sec-websocket-version", "13")]);
    other
        .extensions_mut()
        .insert(Protocol::from_static("connect-udp"));
    assert_eq!(refused(&mut sender, other).await, 426);
    // A malformed subprotocol list.
    let bad = connect_request(
        addr,
        &[
            ("sec-websocket-version", "13"),
            ("sec-websocket-protocol", "a b"),
        ],
    );
    assert_eq!(refused(&mut sender, bad).await, 400);
    // The connection survives its refused streams.
    let (mut ws, _) = open(
        &mut sender,
        connect_request(addr, &[("sec-websocket-version", "13")]),
    )
    .await;
    ws.send(Message::text("ok")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("ok"));
}

#[tokio::test]
async fn layers_guard_and_negotiate_over_http2() {
    let service = ServiceBuilder::new()
        .layer(OriginLayer::new(
            OriginPolicy::list(["https://good.example"]).unwrap(),
        ))
        .layer(DeflateLayer::new(DeflateConfig::new()))
        .service(echo_service());
    let addr = serve_auto(service).await;
    let mut sender = h2_client(addr).await;
    // The Origin check applies to an extended CONNECT: no way around it.
    let evil = connect_request(
        addr,
        &[
            ("sec-websocket-version", "13"),
            ("origin", "https://evil.example"),
        ],
    );
    assert_eq!(refused(&mut sender, evil).await, 403);

    // permessage-deflate is agreed in the 200 and used on the stream.
    let req = connect_request(
        addr,
        &[
            ("sec-websocket-version", "13"),
            ("origin", "https://good.example"),
            (
                "sec-websocket-extensions",
                "permessage-deflate; client_max_window_bits",
            ),
        ],
    );
    sender.ready().await.unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let agreed = resp.headers()["sec-websocket-extensions"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(agreed.starts_with("permessage-deflate"), "{agreed}");
    let upgraded = hyper::upgrade::on(resp).await.unwrap();
    let deflate = DeflateConfig::new();
    let items = ExtensionItem::parse_list(&agreed).unwrap();
    let agreement = deflate.accept_response(&items[0]).unwrap();
    let mut conn = sockeye_proto::Connection::new(Role::Client, Config::default());
    conn.set_extension(Box::new(deflate.extension(Role::Client, agreement)));
    let mut ws = WebSocket::from_connection(TokioIo::new(upgraded), conn, bytes::BytesMut::new());
    let json = "{\"k\":\"v\"}".repeat(200);
    ws.send(Message::text(json.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(json));
}

#[tokio::test]
async fn http1_upgrades_still_work_on_the_auto_server() {
    let addr = serve_auto(echo_service()).await;
    let (mut ws, _) = sockeye_hyper::client::connect(&format!("ws://{addr}/ws"))
        .await
        .unwrap();
    ws.send(Message::text("over 1.1")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("over 1.1"));
}

/// A request with a body is not a socket: it reaches the fallback.
#[tokio::test]
async fn a_plain_post_goes_to_the_fallback() {
    let fallback = tower::service_fn(|req: Request<Incoming>| async move {
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let body: Body = Full::new(body).map_err(|e| match e {}).boxed_unsync();
        Ok::<_, Infallible>(Response::new(body))
    });
    let addr = serve_auto(echo_service().fallback(fallback)).await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::post(format!("http://{addr}/"))
        .version(Version::HTTP_2)
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.into_body().collect().await.unwrap().to_bytes(),
        "hello"
    );
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn the_axum_extractor_accepts_extended_connect() {
    use axum::routing::any;
    use sockeye_hyper::axum::WebSocketUpgrade;

    async fn ws(upgrade: WebSocketUpgrade) -> axum::response::Response {
        upgrade
            .protocols(["chat.v1"])
            .on_upgrade(|mut socket| async move {
                while let Some(Ok(msg)) = socket.recv().await {
                    if msg.is_text() {
                        let _ = socket.send(msg).await;
                    }
                }
            })
    }
    let app = axum::Router::new().route("/ws", any(ws));
    let addr = serve_auto(app).await;
    let mut sender = h2_client(addr).await;
    let (mut socket, head) = open(
        &mut sender,
        connect_request(
            addr,
            &[
                ("sec-websocket-version", "13"),
                ("sec-websocket-protocol", "chat.v1"),
            ],
        ),
    )
    .await;
    assert_eq!(head.headers["sec-websocket-protocol"], "chat.v1");
    socket.send(Message::text("from axum")).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::text("from axum")
    );
}

#[tokio::test]
async fn the_client_opens_sockets_on_one_connection() {
    let service = ServiceBuilder::new()
        .layer(DeflateLayer::new(DeflateConfig::new()))
        .service(echo_service());
    let addr = serve_auto(service).await;
    let mut sender = h2_client(addr).await;
    let builder = ClientBuilder::new(format!("ws://{addr}/ws"))
        .protocols(["x", "chat.v1"])
        .header("origin", format!("http://{addr}"));
    let (mut plain, head) = builder.connect_on(&mut sender).await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["sec-websocket-protocol"], "chat.v1");
    // With permessage-deflate offered and agreed on a second stream.
    let (mut deflated, head) = builder
        .clone()
        .deflate(DeflateConfig::new())
        .connect_on(&mut sender)
        .await
        .unwrap();
    assert!(
        head.headers()["sec-websocket-extensions"]
            .to_str()
            .unwrap()
            .starts_with("permessage-deflate")
    );
    let json = "{\"n\":[1,2,3]}".repeat(300);
    plain.send(Message::text("plain")).await.unwrap();
    deflated.send(Message::text(json.clone())).await.unwrap();
    assert_eq!(plain.next().await.unwrap().unwrap(), Message::text("plain"));
    assert_eq!(deflated.next().await.unwrap().unwrap(), Message::text(json));
    tokio::time::timeout(
        Duration::from_secs(5),
        deflated.close(CloseCode::NORMAL, ""),
    )
    .await
    .unwrap()
    .unwrap();
    plain.send(Message::text("after")).await.unwrap();
    assert_eq!(plain.next().await.unwrap().unwrap(), Message::text("after"));
}

#[tokio::test]
async fn the_client_reports_refusals() {
    let addr = serve_auto(echo_service()).await;
    let mut sender = h2_client(addr).await;
    // The server offers no subprotocol the client asked for: the socket
    // still opens, without one.
    let builder = ClientBuilder::new(format!("ws://{addr}/ws")).protocol("other");
    let (_, head) = builder.connect_on(&mut sender).await.unwrap();
    assert!(!head.headers().contains_key("sec-websocket-protocol"));
    // Switched off: fails before sending anything.
    let off = ClientBuilder::new(format!("ws://{addr}/ws")).disabled(Some(true));
    assert!(matches!(
        off.connect_on(&mut sender).await,
        Err(Error::Disabled)
    ));

    // A server that refuses (here: WebSockets disabled on it) -> its status.
    let refusing = serve_auto(echo_service().disabled(Some(true))).await;
    let mut sender = h2_client(refusing).await;
    let err = ClientBuilder::new(format!("ws://{refusing}/ws"))
        .connect_on(&mut sender)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("503"), "{err}");

    // A server without extended CONNECT: hyper will not send the request.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_h2 = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let svc = TowerToHyperService::new(echo_service());
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc),
            );
        }
    });
    let mut sender = h2_client(plain_h2).await;
    let err = ClientBuilder::new(format!("ws://{plain_h2}/ws"))
        .connect_on(&mut sender)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::Hyper(_)), "{err:?}");
}

#[tokio::test]
async fn the_client_dials_http2_by_prior_knowledge() {
    let addr = serve_auto(echo_service()).await;
    let builder = ClientBuilder::new(format!("ws://{addr}/ws")).no_proxy();
    let mut connection = builder.connect_http2().await.unwrap();
    let (mut a, _) = builder.connect_on(&mut connection).await.unwrap();
    let (mut b, _) = builder.connect_on(&mut connection).await.unwrap();
    a.send(Message::text("a")).await.unwrap();
    b.send(Message::text("b")).await.unwrap();
    assert_eq!(b.next().await.unwrap().unwrap(), Message::text("b"));
    assert_eq!(a.next().await.unwrap().unwrap(), Message::text("a"));
}

/// A TLS server for `localhost` offering `alpn`, serving HTTP/1.1 and
/// HTTP/2 with extended CONNECT; returns its port and a root store
/// trusting it.
#[cfg(feature = "tls")]
async fn tls_server(alpn: &[&[u8]]) -> (u16, rustls::RootCertStore) {
    let (acceptor, roots) = common::localhost_tls(alpn);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(serve_tls(acceptor.clone(), tcp, echo_service()));
        }
    });
    (port, roots)
}

#[cfg(feature = "tls")]
async fn serve_tls<S>(acceptor: tokio_rustls::TlsAcceptor, tcp: TcpStream, service: S)
where
    S: tower::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    if let Ok(tls) = acceptor.accept(tcp).await {
        serve_conn(TokioIo::new(tls), service).await;
    }
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn the_client_dials_http2_over_tls_by_alpn() {
    let (port, roots) = tls_server(&[b"h2", b"http/1.1"]).await;
    let builder = ClientBuilder::new(format!("wss://localhost:{port}/ws"))
        .no_proxy()
        .root_certificates(roots)
        .unwrap();
    let mut connection = builder.connect_http2().await.unwrap();
    let (mut ws, head) = builder.connect_on(&mut connection).await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    ws.send(Message::text("over h2 and TLS")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("over h2 and TLS")
    );
    // The same server still upgrades HTTP/1.1 clients (ALPN http/1.1).
    let (mut old, _) = builder.connect().await.unwrap();
    old.send(Message::text("1.1")).await.unwrap();
    assert_eq!(old.next().await.unwrap().unwrap(), Message::text("1.1"));

    // Servers that do not agree to h2: a clear error, no HTTP/2 attempt.
    // One that speaks no ALPN at all (the client checks what was agreed),
    // and one that offers only http/1.1 (TLS itself refuses).
    for (alpn, expected) in [
        (&[][..], "ALPN h2"),
        (&[&b"http/1.1"[..]][..], "NoApplicationProtocol"),
    ] {
        let (port, roots) = tls_server(alpn).await;
        let err = ClientBuilder::new(format!("wss://localhost:{port}/ws"))
            .no_proxy()
            .root_certificates(roots)
            .unwrap()
            .connect_http2()
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains(expected), "{err}");
    }
}
