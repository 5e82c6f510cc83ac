//! Behaviour driven by environment variables: `WEBSOCKETS_DISABLE` on both
//! sides, and `HTTP_PROXY` / `http_proxy` / `NO_PROXY` for the client.
//!
//! The environment is process-wide, so each case runs in a child process of
//! this binary with the variables set (no `set_var` in a threaded test).
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::process::Command;
use std::sync::atomic::Ordering;

use futures_util::StreamExt;
use sockeye_hyper::client::ClientBuilder;
use sockeye_hyper::server::UpgradeService;
use sockeye_hyper::{Error, Message};

use common::{ProxyMode, echo, proxy, raw_exchange, serve, upgrade_request};

const ROLE: &str = "SOCKEYE_ENV_TEST_CHILD";

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    match std::env::var(ROLE).as_deref() {
        Ok("disabled") => rt.block_on(child_disabled()),
        Ok("via-proxy") => rt.block_on(child_connects()),
        Ok("direct") => rt.block_on(child_connects()),
        Ok(other) => panic!("unknown child role {other}"),
        Err(_) => rt.block_on(parent()),
    }
}

fn run_child(role: &str, env: &[(&str, String)]) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(ROLE, role);
    for var in [
        "WEBSOCKETS_DISABLE",
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let status = cmd.status().unwrap();
    assert!(status.success(), "child {role} failed: {status}");
}

async fn parent() {
    for value in ["1", "true", "YES"] {
        let role = "disabled";
        let env = [("WEBSOCKETS_DISABLE", value.to_owned())];
        tokio::task::spawn_blocking(move || run_child(role, &env))
            .await
            .unwrap();
        println!("test websockets_disable={value} ... ok");
    }

    let (proxy_addr, tunnels) = proxy(ProxyMode::Open).await;
    let server = serve(UpgradeService::new(echo)).await;
    let url = format!("ws://{server}/");
    for var in ["HTTP_PROXY", "http_proxy", "ALL_PROXY"] {
        let before = tunnels.load(Ordering::SeqCst);
        let env = [
            (var, format!("http://{proxy_addr}")),
            ("TARGET", url.clone()),
        ];
        tokio::task::spawn_blocking(move || run_child("via-proxy", &env))
            .await
            .unwrap();
        assert_eq!(
            tunnels.load(Ordering::SeqCst),
            before + 1,
            "{var} was not used"
        );
        println!("test {var} ... ok");
    }
    let before = tunnels.load(Ordering::SeqCst);
    let env = [
        ("HTTP_PROXY", format!("http://{proxy_addr}")),
        ("NO_PROXY", "localhost, 127.0.0.0/8".to_owned()),
        ("TARGET", url.clone()),
    ];
    tokio::task::spawn_blocking(move || run_child("direct", &env))
        .await
        .unwrap();
    assert_eq!(
        tunnels.load(Ordering::SeqCst),
        before,
        "NO_PROXY was ignored"
    );
    println!("test no_proxy ... ok");
}

/// With `WEBSOCKETS_DISABLE` set: servers refuse upgrades with 503 (plain
/// requests still served), clients fail at once; builders override.
async fn child_disabled() {
    let page = tower::service_fn(|_req| async {
        Ok::<_, std::convert::Infallible>(http::Response::new("page".to_owned()))
    });
    let addr = serve(UpgradeService::new(echo).fallback(page)).await;
    let resp = raw_exchange(addr, &upgrade_request("/", "")).await;
    assert!(
        resp.starts_with("HTTP/1.1 503") && resp.contains("WEBSOCKETS_DISABLE"),
        "{resp}"
    );
    let resp = raw_exchange(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");

    // The client fails before opening any socket.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    let r = ClientBuilder::new(format!("ws://{target}/"))
        .connect()
        .await;
    assert!(matches!(r, Err(Error::Disabled)), "{r:?}");
    let accepted =
        tokio::time::timeout(std::time::Duration::from_millis(200), listener.accept()).await;
    assert!(accepted.is_err(), "the disabled client opened a connection");

    // Builders override the environment.
    let addr = serve(UpgradeService::new(echo).disabled(Some(false))).await;
    let (mut ws, _) = ClientBuilder::new(format!("ws://{addr}/"))
        .disabled(Some(false))
        .connect()
        .await
        .unwrap();
    ws.send("still works").await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("still works")
    );
}

/// Connects to `TARGET` with the default builder (proxy from the environment).
async fn child_connects() {
    let url = std::env::var("TARGET").unwrap();
    let (mut ws, _) = ClientBuilder::new(url).connect().await.unwrap();
    ws.send("env").await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("env"));
}
