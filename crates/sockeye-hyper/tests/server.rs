//! The upgrade service inside hyper: echo, fallback, rejections, layers'
//! extensions, callbacks, drain, the disable switch, pipelined bytes.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use http::{Request, Response};
use sockeye_hyper::client::ClientBuilder;
use sockeye_hyper::server::{
    Callbacks, Drain, Handshake, UpgradeService, Upgrader, WebSocket, upgrade,
};
use sockeye_hyper::{Body, CloseCode, CloseFrame, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{echo, masked_frame, raw_exchange, serve, upgrade_request};

type PageFuture = std::future::Ready<Result<Response<String>, Infallible>>;

/// A plain page service for the fallback.
fn page() -> tower::util::ServiceFn<impl FnMut(Request<hyper::body::Incoming>) -> PageFuture + Clone>
{
    tower::service_fn(|_req| std::future::ready(Ok(Response::new("<h1>page</h1>".to_owned()))))
}

#[tokio::test]
async fn echo_through_hyper() {
    let addr = serve(UpgradeService::new(echo)).await;
    let (mut ws, resp) = ClientBuilder::new(format!("ws://{addr}/"))
        .no_proxy()
        .connect()
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    for len in [0usize, 125, 70_000, 1 << 20] {
        let data = vec![b'z'; len];
        ws.send(Message::binary(data.clone())).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(data));
    }
    ws.close(CloseCode::NORMAL, "").await.unwrap();
}

#[tokio::test]
async fn plain_requests_get_426_or_the_fallback() {
    let addr = serve(UpgradeService::new(echo)).await;
    let resp = raw_exchange(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 426"), "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("sec-websocket-version: 13")
    );

    let addr = serve(UpgradeService::new(echo).fallback(page())).await;
    let resp = raw_exchange(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("<h1>page</h1>"));
    // The same port still upgrades.
    let (ws, _) = ClientBuilder::new(format!("ws://{addr}/ws"))
        .no_proxy()
        .connect()
        .await
        .unwrap();
    drop(ws);
}

#[tokio::test]
async fn rejections_are_proper_responses() {
    let addr = serve(UpgradeService::new(echo)).await;
    let bad_version = upgrade_request("/", "").replace("Version: 13", "Version: 7");
    let resp = raw_exchange(addr, &bad_version).await;
    assert!(resp.starts_with("HTTP/1.1 426"), "{resp}");
    let post = upgrade_request("/", "").replacen("GET", "POST", 1);
    let resp = raw_exchange(addr, &post).await;
    assert!(resp.starts_with("HTTP/1.1 405"), "{resp}");
    let bad_key = upgrade_request("/", "").replace("dGhlIHNhbXBsZSBub25jZQ==", "x");
    let resp = raw_exchange(addr, &bad_key).await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(
        resp.contains("Sec-WebSocket-Key"),
        "a short body says why: {resp}"
    );
}

#[tokio::test]
async fn subprotocol_by_server_preference() {
    let service = UpgradeService::new(|mut ws: WebSocket, hs: Handshake| async move {
        let _ = ws.send(hs.protocol.unwrap_or_default()).await;
    })
    .protocols(["v3", "v2"]);
    let addr = serve(service).await;
    let (mut ws, resp) = ClientBuilder::new(format!("ws://{addr}/"))
        .no_proxy()
        .protocols(["v1", "v2", "v3"])
        .connect()
        .await
        .unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "v3");
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("v3"));
}

#[derive(Clone, Debug, PartialEq)]
struct Identity(&'static str);

#[tokio::test]
async fn handler_sees_what_layers_put_in_the_extensions() {
    let service = UpgradeService::new(|mut ws: WebSocket, hs: Handshake| async move {
        let who = hs.extension::<Identity>().map_or("nobody", |i| i.0);
        let _ = ws.send(format!("{who} at {}", hs.uri().path())).await;
    });
    let layered = tower::ServiceBuilder::new()
        .map_request(|mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(Identity("alice"));
            req
        })
        .service(service);
    let addr = serve(layered).await;
    let (mut ws, _) = ClientBuilder::new(format!("ws://{addr}/room/1"))
        .no_proxy()
        .connect()
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("alice at /room/1")
    );
}

#[tokio::test]
async fn bytes_pipelined_after_the_request_reach_the_socket() {
    let addr = serve(UpgradeService::new(echo)).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut wire = upgrade_request("/", "").into_bytes();
    wire.extend(masked_frame(0x81, b"early bird"));
    tcp.write_all(&wire).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    let mut frame = [0u8; 12];
    tcp.read_exact(&mut frame).await.unwrap();
    assert_eq!(&frame, b"\x81\x0aearly bird");
}

#[tokio::test]
async fn callbacks_open_message_close() {
    let closed = Arc::new(Mutex::new(None));
    let seen = closed.clone();
    let callbacks = Callbacks::new()
        .on_open(|s| {
            s.send("welcome").unwrap();
        })
        .on_message(|s, m| {
            let text = m.as_text().unwrap_or_default().to_uppercase();
            s.send(text).unwrap();
        })
        .on_close(move |_s, ev| {
            *seen.lock().unwrap() = Some(ev.clone());
        });
    let addr = serve(UpgradeService::new(callbacks)).await;
    let (mut ws, _) = ClientBuilder::new(format!("ws://{addr}/"))
        .no_proxy()
        .connect()
        .await
        .unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("welcome"));
    ws.send("shout").await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("SHOUT"));
    ws.close(CloseCode::from_u16_unchecked(4001), "bye")
        .await
        .unwrap();
    for _ in 0..100 {
        if closed.lock().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ev = closed.lock().unwrap().clone().unwrap();
    assert_eq!(
        (ev.code.as_u16(), ev.reason.as_str(), ev.was_clean),
        (4001, "bye", true)
    );
}

#[tokio::test]
async fn drain_closes_a_hundred_sockets_with_1001() {
    let drain = Drain::new().with_timeout(Duration::from_secs(10));
    let addr = serve(UpgradeService::new(echo).drain(&drain)).await;
    let mut clients = Vec::new();
    for _ in 0..100 {
        let (ws, _) = ClientBuilder::new(format!("ws://{addr}/"))
            .no_proxy()
            .connect()
            .await
            .unwrap();
        clients.push(ws);
    }
    // Every socket is registered once its handler runs.
    for _ in 0..200 {
        if drain.open_sockets() == 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(drain.open_sockets(), 100);
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut ws| tokio::spawn(async move { ws.next().await.unwrap().unwrap() }))
        .collect();
    let report = drain.shutdown().await;
    assert_eq!((report.closed, report.forced), (100, 0));
    for r in readers {
        assert_eq!(
            r.await.unwrap(),
            Message::Close(Some(CloseFrame::new(
                CloseCode::GOING_AWAY,
                "server shutting down"
            )))
        );
    }
    // New upgrades are refused while draining.
    let resp = raw_exchange(addr, &upgrade_request("/", "")).await;
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
}

#[tokio::test]
async fn drain_drops_sockets_that_never_close() {
    let drain = Drain::new().with_timeout(Duration::from_millis(300));
    // A handler that never reads: the close request is never acted on.
    let stubborn = |ws: WebSocket, _: Handshake| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(ws);
    };
    let addr = serve(UpgradeService::new(stubborn).drain(&drain)).await;
    let (mut ws, _) = ClientBuilder::new(format!("ws://{addr}/"))
        .no_proxy()
        .connect()
        .await
        .unwrap();
    for _ in 0..200 {
        if drain.open_sockets() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let report = drain.restart().await;
    assert_eq!((report.closed, report.forced), (0, 1));
    // The task was aborted: the client sees the connection drop.
    let end = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap();
    assert!(matches!(end, Some(Err(_)) | None), "{end:?}");
}

#[tokio::test]
async fn disabled_switch_refuses_upgrades_but_serves_pages() {
    let service = UpgradeService::new(echo)
        .disabled(Some(true))
        .fallback(page());
    let addr = serve(service).await;
    let resp = raw_exchange(addr, &upgrade_request("/", "")).await;
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
    assert!(resp.contains("WEBSOCKETS_DISABLE"), "{resp}");
    let resp = raw_exchange(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    // The override works the other way too.
    let addr = serve(UpgradeService::new(echo).disabled(Some(false))).await;
    assert!(
        raw_exchange(addr, &upgrade_request("/", ""))
            .await
            .starts_with("HTTP/1.1 101")
    );
}

#[tokio::test]
async fn hand_written_hyper_service_with_upgrade() {
    let service = tower::service_fn(|mut req: Request<hyper::body::Incoming>| async move {
        let resp: Response<Body> = match upgrade(&mut req) {
            Ok((resp, upgrading)) => {
                tokio::spawn(async move {
                    let mut ws = upgrading.await.unwrap();
                    ws.send("hand-made").await.unwrap();
                    let _ = ws.close(CloseCode::NORMAL, "").await;
                });
                resp
            }
            Err(e) => sockeye_hyper::server::rejection(&e),
        };
        Ok::<_, Infallible>(resp)
    });
    let addr = serve(service).await;
    let (mut ws, _) = ClientBuilder::new(format!("ws://{addr}/"))
        .no_proxy()
        .connect()
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("hand-made")
    );
    assert!(ws.next().await.unwrap().unwrap().is_close());
}

#[tokio::test]
async fn hyper_util_auto_builder_serves_upgrades() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = UpgradeService::new(echo);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let svc = hyper_util::service::TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    let (mut ws, _) = ClientBuilder::new(format!("ws://{addr}/"))
        .no_proxy()
        .connect()
        .await
        .unwrap();
    ws.send("auto").await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("auto"));
}

#[tokio::test]
async fn keepalive_from_the_builder_reaches_the_socket() {
    let config = sockeye_hyper::Config::builder()
        .keepalive_interval(Some(Duration::from_millis(50)))
        .build();
    let service = UpgradeService::new(echo).config(config);
    assert_eq!(
        service.upgrader().connection_config().keepalive_interval(),
        Some(Duration::from_millis(50))
    );
    let addr = serve(service).await;
    let (mut ws, _) = ClientBuilder::new(format!("ws://{addr}/"))
        .no_proxy()
        .connect()
        .await
        .unwrap();
    // The server pings after 50 ms of silence; the client answers by itself.
    let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap();
    assert!(matches!(msg, Some(Ok(Message::Ping(_)))), "{msg:?}");
    assert!(
        Upgrader::new()
            .connection_config()
            .keepalive_interval()
            .is_some()
    );
}
