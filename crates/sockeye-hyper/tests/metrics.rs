//! With feature `metrics`: a drain counts the sockets it closed and those
//! it forced, and the feature turns on sockeye-proto's counters (closes by
//! code and initiator, messages) for the sockets behind hyper. One thread
//! (tokio's current-thread runtime: the server's tasks run here too) under
//! a local debugging recorder, over loopback.
#![cfg(feature = "metrics")]
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::cell::RefCell;
use std::time::Duration;

use futures_util::StreamExt;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use sockeye_hyper::client::ClientBuilder;
use sockeye_hyper::server::{Drain, Handshake, UpgradeService, WebSocket};
use sockeye_hyper::{CloseCode, CloseFrame, Message};

use common::{echo, serve};

/// What the recorder saw so far (snapshots drain counters; they add up
/// here).
struct Totals {
    snapshotter: Snapshotter,
    seen: RefCell<Vec<(metrics::Key, f64)>>,
}

impl Totals {
    /// `name` summed over the label sets that include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut seen = self.seen.borrow_mut();
        for (key, .., v) in self.snapshotter.snapshot().into_vec() {
            let v = match v {
                DebugValue::Counter(c) => c as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(h) => h.len() as f64,
            };
            let key = key.key().clone();
            match seen.iter_mut().find(|(k, _)| *k == key) {
                Some((_, total)) => *total += v,
                None => seen.push((key, v)),
            }
        }
        seen.iter()
            .filter(|(key, _)| {
                key.name() == name
                    && labels
                        .iter()
                        .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v))
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// Waits (bounded) until `name{labels}` reaches `want`.
    async fn wait_for(&self, name: &str, labels: &[(&str, &str)], want: f64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let got = self.value(name, labels);
            if got == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} {labels:?}: {got}, expected {want}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test]
async fn a_drain_counts_the_sockets_it_closed_and_forced() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let totals = Totals {
        snapshotter: recorder.snapshotter(),
        seen: RefCell::default(),
    };

    let drain = Drain::new().with_timeout(Duration::from_millis(300));
    // `/stubborn` never reads: its close request is never acted on.
    let handler = |ws: WebSocket, hs: Handshake| async move {
        if hs.uri().path() == "/stubborn" {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(ws);
        } else {
            echo(ws, hs).await;
        }
    };
    let addr = serve(UpgradeService::new(handler).drain(&drain)).await;
    let connect = |path: &'static str| async move {
        let builder = ClientBuilder::new(format!("ws://{addr}{path}")).no_proxy();
        builder.connect().await.unwrap().0
    };
    let mut polite = connect("/").await;
    let mut stubborn = connect("/stubborn").await;
    polite.send(Message::text("hello")).await.unwrap();
    assert_eq!(
        polite.next().await.unwrap().unwrap(),
        Message::text("hello")
    );
    for _ in 0..200 {
        if drain.open_sockets() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(drain.open_sockets(), 2);

    let polite = tokio::spawn(async move {
        let first = polite.next().await.unwrap().unwrap();
        while polite.next().await.is_some() {}
        first
    });
    let stubborn = tokio::spawn(async move { while stubborn.next().await.is_some() {} });
    let report = drain.shutdown().await;
    assert_eq!((report.closed, report.forced), (1, 1));
    assert_eq!(
        totals.value("sockeye_drain_sockets_total", &[("outcome", "closed")]),
        1.0
    );
    assert_eq!(
        totals.value("sockeye_drain_sockets_total", &[("outcome", "forced")]),
        1.0
    );
    assert_eq!(
        polite.await.unwrap(),
        Message::Close(Some(CloseFrame::new(
            CloseCode::GOING_AWAY,
            "server shutting down"
        )))
    );
    tokio::time::timeout(Duration::from_secs(5), stubborn)
        .await
        .unwrap()
        .unwrap();

    // sockeye-proto's counters, on through this crate's feature: the
    // drained socket closed by the server with 1001, the aborted one
    // dropped without a close frame, and their clients' view of both.
    let closes = "sockeye_socket_closes_total";
    let server_1001 = [("role", "server"), ("code", "1001"), ("initiator", "local")];
    let client_1001 = [
        ("role", "client"),
        ("code", "1001"),
        ("initiator", "remote"),
    ];
    let server_none = [("role", "server"), ("code", "1006"), ("initiator", "none")];
    let client_none = [("role", "client"), ("code", "1006"), ("initiator", "none")];
    for labels in [server_1001, client_1001, server_none, client_none] {
        totals.wait_for(closes, &labels, 1.0).await;
    }
    assert_eq!(totals.value(closes, &[]), 4.0);
    assert_eq!(
        totals.value("sockeye_sockets_opened_total", &[("role", "server")]),
        2.0
    );
    assert_eq!(totals.value("sockeye_sockets_open", &[]), 0.0);
    let messages = |role, direction| {
        totals.value(
            "sockeye_messages_total",
            &[("role", role), ("direction", direction), ("kind", "text")],
        )
    };
    assert_eq!(messages("client", "out"), 1.0);
    assert_eq!(messages("server", "in"), 1.0);
    assert_eq!(messages("server", "out"), 1.0);
    assert_eq!(messages("client", "in"), 1.0);
    assert_eq!(
        totals.value("sockeye_payload_bytes_total", &[("direction", "in")]),
        10.0
    );
}

/// The axum extractor counts like the upgrade service: sockets opened and
/// open, and a plain GET to its route as a rejection.
#[cfg(feature = "axum")]
#[tokio::test]
async fn the_extractor_counts_its_sockets_and_rejections() {
    use sockeye_hyper::axum::WebSocketUpgrade;

    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let totals = Totals {
        snapshotter: recorder.snapshotter(),
        seen: RefCell::default(),
    };
    let router = axum::Router::new().route(
        "/ws",
        axum::routing::get(|upgrade: WebSocketUpgrade| async move {
            upgrade.on_upgrade(|mut socket| async move { while socket.next().await.is_some() {} })
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let (mut ws, _) = ClientBuilder::new(format!("ws://{addr}/ws"))
        .no_proxy()
        .connect()
        .await
        .unwrap();
    let opened = [("role", "server"), ("transport", "http1")];
    totals
        .wait_for("sockeye_sockets_opened_total", &opened, 1.0)
        .await;
    totals.wait_for("sockeye_sockets_open", &[], 1.0).await;
    ws.close(CloseCode::NORMAL, "").await.unwrap();
    while ws.next().await.is_some() {}
    totals.wait_for("sockeye_sockets_open", &[], 0.0).await;

    let reply = common::raw_exchange(
        addr,
        &format!("GET /ws HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    let status = reply.split(' ').nth(1).unwrap().to_owned();
    assert!(status.starts_with('4'), "{reply}");
    totals
        .wait_for(
            "sockeye_handshake_rejections_total",
            &[("status", status.as_str()), ("reason", "invalid_upgrade")],
            1.0,
        )
        .await;
}
