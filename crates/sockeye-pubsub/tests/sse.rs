//! The SSE + POST fallback over real sockets: the same hub and protocol as
//! the WebSocket, used when WebSockets are disabled or cannot pass.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::{Client, WAIT};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::Value;
use sockeye_proto::CloseCode;
use sockeye_pubsub::{Hub, Namespace, RateLimit};
use tokio::net::{TcpListener, TcpStream};

fn hub() -> Hub {
    Hub::builder()
        .namespace(
            "chat",
            Namespace::new()
                .client_publish(true)
                .history(100, Duration::from_secs(60))
                .presence(true),
        )
        .rate_limit(RateLimit::new(1000.0, 1000))
        .max_strikes(3)
        .linger(Duration::ZERO)
        .build()
}

/// Serves `hub.service()` (optionally with WebSockets disabled) at any path.
async fn serve(hub: &Hub, websockets: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = hub.service().disabled(Some(!websockets));
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let svc = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

async fn http(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// An event-stream reader.
struct Events {
    body: Incoming,
    buf: String,
    /// The connection lives as long as the stream is read.
    _sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Events {
    async fn open(addr: SocketAddr) -> (Self, String) {
        let mut sender = http(addr).await;
        let req = Request::get("/ws")
            .header("host", "x")
            .header("accept", "text/event-stream")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let mut events = Self {
            body: resp.into_body(),
            buf: String::new(),
            _sender: sender,
        };
        let (kind, data) = events.next().await.unwrap();
        assert_eq!(kind, "session");
        let token = serde_json::from_str::<Value>(&data).unwrap()["session"]
            .as_str()
            .unwrap()
            .to_owned();
        (events, token)
    }

    /// The next event (kind, data); comments are skipped. `None` at the end.
    async fn next(&mut self) -> Option<(String, String)> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                // A CR would end a line for an event-stream reader.
                assert!(!block.contains('\r'), "{block:?}");
                let mut kind = "message".to_owned();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        kind = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if data.is_empty() && kind == "message" {
                    continue; // a keep-alive comment
                }
                return Some((kind, data));
            }
            let frame = tokio::time::timeout(WAIT, self.body.frame())
                .await
                .expect("no event in time")?;
            if let Ok(data) = frame.unwrap().into_data() {
                self.buf.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }

    async fn line(&mut self) -> Value {
        let (kind, data) = self.next().await.expect("stream ended");
        assert_eq!(kind, "message", "{data}");
        serde_json::from_str(&data).unwrap()
    }
}

async fn post(addr: SocketAddr, token: &str, body: &str) -> StatusCode {
    let mut sender = http(addr).await;
    let req = Request::post(format!("/ws?session={token}"))
        .header("host", "x")
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    sender.send_request(req).await.unwrap().status()
}

#[tokio::test]
async fn sse_and_post_speak_the_same_protocol_as_websockets() {
    let hub = hub();
    let addr = serve(&hub, true).await;
    let (mut events, token) = Events::open(addr).await;
    assert_eq!(
        post(
            addr,
            &token,
            r#"{"id":1,"op":"subscribe","topic":"chat:s"}"#
        )
        .await,
        StatusCode::ACCEPTED
    );
    let ok = events.line().await;
    assert_eq!(ok["id"], 1);
    assert!(ok["ok"]["epoch"].is_string());
    // A WebSocket client on the same hub publishes; the SSE client gets it.
    let mut ws = Client::connect(&format!("ws://{addr}/ws")).await;
    ws.subscribe("chat:s").await;
    ws.publish("chat:s", r#"{"nick":"ann","text":"multi\nline"}"#)
        .await;
    loop {
        let v = events.line().await;
        if v.get("data").is_some() {
            assert_eq!(v["data"]["text"], "multi\nline");
            assert_eq!(v["offset"], 1);
            break;
        }
    }
    // And the other way, several commands in one body.
    let status = post(
        addr,
        &token,
        "{\"id\":2,\"op\":\"publish\",\"topic\":\"chat:s\",\"data\":{\"text\":\"from sse\"}}\n{\"id\":3,\"op\":\"presence\",\"topic\":\"chat:s\"}",
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let mut replies = Vec::new();
    while replies.len() < 2 {
        let v = events.line().await;
        if v.get("id").is_some() {
            replies.push(v);
        }
    }
    assert_eq!(replies[0]["ok"]["offset"], 2);
    assert_eq!(replies[1]["ok"]["count"], 2);
    loop {
        let v = ws.recv().await;
        if v["data"]["text"] == "from sse" {
            break;
        }
    }
    // A lone CR in a client's data (legal JSON whitespace) reaches the
    // event stream as a space, not as a line break.
    ws.publish("chat:s", "{\"nick\":\"ann\",\"text\":\"cr\",\"n\":[1,\r2]}")
        .await;
    loop {
        let v = events.line().await;
        if v.get("data").is_some_and(|d| d["text"] == "cr") {
            assert_eq!(v["data"]["n"][1], 2);
            break;
        }
    }
    // Server-side publishing with line breaks is compacted to one line.
    hub.publish_raw("chat:s", "{\n  \"pretty\": [1,\n 2]\n}")
        .await
        .unwrap();
    loop {
        let v = events.line().await;
        if v.get("data").is_some_and(|d| d.get("pretty").is_some()) {
            assert_eq!(v["data"]["pretty"][1], 2);
            break;
        }
    }
    assert_eq!(hub.metrics().sessions, 2);
    // The client goes away: its session ends, presence says it left.
    drop(events);
    loop {
        let v = ws.recv().await;
        if v["event"] == "leave" {
            break;
        }
    }
    assert_eq!(hub.metrics().sessions, 1);
    assert_eq!(
        post(addr, &token, r#"{"id":4,"op":"presence","topic":"chat:s"}"#).await,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn with_websockets_disabled_the_fallback_still_serves() {
    let hub = hub();
    let addr = serve(&hub, false).await;
    // The upgrade is refused with 503...
    let err = sockeye_hyper::client::connect(&format!("ws://{addr}/ws"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    // ...and the event stream works.
    let (mut events, token) = Events::open(addr).await;
    post(
        addr,
        &token,
        r#"{"id":1,"op":"subscribe","topic":"chat:d"}"#,
    )
    .await;
    assert_eq!(events.line().await["id"], 1);
    hub.publish("chat:d", &"hello").await.unwrap();
    loop {
        let v = events.line().await;
        if v.get("data").is_some() {
            assert_eq!(v["data"], "hello");
            break;
        }
    }
}

#[tokio::test]
async fn bad_requests_get_http_errors_and_abuse_ends_the_stream() {
    let hub = hub();
    let addr = serve(&hub, true).await;
    let mut sender = http(addr).await;
    for (method, accept, status) in [
        ("GET", "text/html", StatusCode::UPGRADE_REQUIRED),
        ("PUT", "text/event-stream", StatusCode::METHOD_NOT_ALLOWED),
    ] {
        let req = Request::builder()
            .method(method)
            .uri("/ws")
            .header("host", "x")
            .header("accept", accept)
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(sender.send_request(req).await.unwrap().status(), status);
    }
    assert_eq!(post(addr, "nope", "{}").await, StatusCode::NOT_FOUND);
    let (mut events, token) = Events::open(addr).await;
    let big = format!(
        r#"{{"id":1,"op":"publish","topic":"chat:x","data":"{}"}}"#,
        "x".repeat(2 << 20)
    );
    assert_eq!(
        post(addr, &token, &big).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // Strikes: past three bad commands the session closes with 1008.
    assert_eq!(post(addr, &token, "a\nb\nc\nd").await, StatusCode::ACCEPTED);
    loop {
        match events.next().await {
            Some((kind, data)) if kind == "close" => {
                let v: Value = serde_json::from_str(&data).unwrap();
                assert_eq!(v["code"], 1008);
                break;
            }
            Some(_) => {}
            None => panic!("stream ended without a close event"),
        }
    }
    assert!(events.next().await.is_none(), "the stream ends after close");
}

#[tokio::test]
async fn close_all_closes_both_transports() {
    let hub = hub();
    let addr = serve(&hub, true).await;
    let (mut events, _token) = Events::open(addr).await;
    let mut ws = Client::connect(&format!("ws://{addr}/ws")).await;
    ws.subscribe("chat:z").await;
    hub.close_all(CloseCode::GOING_AWAY, "bye");
    assert_eq!(ws.closed().await, Some(CloseCode::GOING_AWAY));
    let (kind, data) = events.next().await.unwrap();
    assert_eq!(kind, "close");
    assert_eq!(serde_json::from_str::<Value>(&data).unwrap()["code"], 1001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_posts_time_out_and_a_thousand_idle_streams_leave_the_hub_serving() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hub = hub();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = hub
        .upgrade_service()
        .fallback(hub.sse_service().body_timeout(Duration::from_millis(300)));
    tokio::spawn(std::future::IntoFuture::into_future(sockeye_hyper::serve(
        listener, service,
    )));

    // An endless POST body, one chunk every 100 ms: 408 at the body
    // timeout, and the session is untouched.
    let (_stream, token) = common::sse_stream(addr, None).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(
        format!(
            "POST /ws?session={token} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut reply = Vec::new();
    let mut buf = [0u8; 512];
    let deadline = tokio::time::Instant::now() + WAIT;
    while !reply.windows(4).any(|w| w == b"\r\n\r\n") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no answer to the endless body"
        );
        let _ = slow.write_all(b"1\r\n \r\n").await;
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(100), slow.read(&mut buf)).await
        {
            assert!(n > 0, "closed without an answer");
            reply.extend_from_slice(&buf[..n]);
        }
    }
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert_eq!(
        post(
            addr,
            &token,
            r#"{"id":1,"op":"subscribe","topic":"chat:a"}"#
        )
        .await,
        StatusCode::ACCEPTED
    );

    // A thousand streams that never send a command.
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(common::sse_stream(addr, None).await.0);
    }
    assert_eq!(hub.metrics().sessions, 1001);
    // The hub keeps serving a WebSocket client.
    let mut c = Client::connect(&format!("ws://{addr}/ws")).await;
    c.subscribe("chat:live").await;
    hub.publish("chat:live", &7).await.unwrap();
    let v = loop {
        let v = c.recv().await;
        if v.get("data").is_some() {
            break v;
        }
    };
    assert_eq!(
        (&v["topic"], &v["data"]),
        (&Value::from("chat:live"), &Value::from(7))
    );
    // Their sessions go with their connections.
    drop(idle);
    let deadline = tokio::time::Instant::now() + WAIT;
    while hub.metrics().sessions > 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            hub.metrics()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
