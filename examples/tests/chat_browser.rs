//! The chat example in a real browser: headless Chromium driven through
//! chromedriver (WebDriver, the fantoccini crate), against the real `chat`
//! binary. Two chat processes share rooms through a real redis-server.
//!
//! One scenario, in order: two windows join, send and receive, see each
//! other online; the server of one window stops (SIGTERM), the other window
//! keeps talking, the server starts again on the same port and the first
//! window reconnects by itself and shows what it missed; a third chat process with `WEBSOCKETS_DISABLE`
//! set serves a window over the SSE + POST fallback that talks with the
//! others. `cargo xtask test` installs Debian's chromium, chromium-driver
//! and redis-server when missing; without them this test fails, never skips.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// A child process killed on drop.
struct Proc(Child);

impl Proc {
    /// Stops the process as a deploy would: SIGTERM (the chat closes its
    /// sockets with 1001 and leaves presence), then waits for it.
    fn terminate(mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + WAIT;
        while self.0.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "chat did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16, what: &str) {
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `chat` example binary, built next to this test by `cargo test`.
fn chat_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().and_then(Path::parent).unwrap();
    let bin = debug.join("examples").join("chat");
    assert!(
        bin.is_file(),
        "{} is missing: build the examples (cargo test builds them)",
        bin.display()
    );
    bin
}

fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).is_file(),
        "{path} is missing: this test needs Debian's {package} (`cargo xtask test` installs it as root)"
    );
}

/// A chat process on `port`, sharing rooms through `redis`.
fn chat(port: u16, redis: &str, websockets: bool) -> Proc {
    let mut cmd = Command::new(chat_binary());
    cmd.args([
        "--addr",
        &format!("127.0.0.1:{port}"),
        "--redis",
        redis,
        "--threads",
        "2",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if websockets {
        cmd.env_remove("WEBSOCKETS_DISABLE");
    } else {
        cmd.env("WEBSOCKETS_DISABLE", "1");
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with("listening on"),
        "chat did not start: {line:?}"
    );
    Proc(child)
}

/// The shared test Redis of `cargo xtask test`, or a private one.
fn redis() -> (Option<Proc>, String) {
    if let Ok(url) = std::env::var("SOCKEYE_TEST_REDIS_URL")
        && !url.is_empty()
    {
        return (None, url);
    }
    require("/usr/bin/redis-server", "redis-server");
    let port = free_port();
    let child = Command::new("/usr/bin/redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_port(port, "redis-server");
    (Some(Proc(child)), format!("redis://127.0.0.1:{port}"))
}

async fn browser(driver: &str) -> Client {
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,800"]
        }
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(driver)
        .await
        .unwrap_or_else(|e| panic!("the browser did not start through chromedriver: {e}"))
}

/// Waits until `script` (a JS expression) is truthy; panics with `what`.
async fn until(c: &Client, script: &str, what: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = c
            .execute(&format!("return !!({script});"), vec![])
            .await
            .unwrap();
        if v == json!(true) {
            return;
        }
        if Instant::now() > deadline {
            let status = c
                .execute(
                    "return document.getElementById('status')?.textContent",
                    vec![],
                )
                .await
                .ok();
            let banner = c
                .execute(
                    "return document.getElementById('banner')?.textContent",
                    vec![],
                )
                .await
                .ok();
            panic!("timed out waiting for {what} (status {status:?}, banner {banner:?})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn status_is(text: &str) -> String {
    format!(
        "document.getElementById('status').textContent.trim() === {}",
        json!(text)
    )
}

fn has_message(nick: &str, text: &str) -> String {
    format!(
        "[...document.querySelectorAll('#messages .message')].some(m => \
           m.querySelector('.nick')?.textContent.includes({}) && m.querySelector('.text')?.textContent === {})",
        json!(nick),
        json!(text)
    )
}

fn online(nick: &str) -> String {
    format!(
        "[...document.querySelectorAll('#online .member')].some(m => m.textContent.includes({}))",
        json!(nick)
    )
}

async fn send(c: &Client, text: &str) {
    let input = c.find(Locator::Id("message-input")).await.unwrap();
    input.send_keys(text).await.unwrap();
    input.send_keys("\u{E007}").await.unwrap(); // Enter
}

async fn count(c: &Client, text: &str) -> u64 {
    let script = format!(
        "return [...document.querySelectorAll('#messages .message .text')].filter(t => t.textContent === {}).length",
        json!(text)
    );
    c.execute(&script, vec![]).await.unwrap().as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_windows_chat_reconnect_and_fall_back_to_sse() {
    require("/usr/bin/chromium", "chromium");
    require("/usr/bin/chromedriver", "chromium-driver");
    let (_redis, redis_url) = redis();
    // Each run its own room, so a shared Redis's old history stays out
    // (SOCKEYE_CHAT_ROOM=lobby with a fresh Redis makes the README's
    // screenshot, docs/chat.png, from target/chat-screenshot.png).
    let room =
        std::env::var("SOCKEYE_CHAT_ROOM").unwrap_or_else(|_| format!("t{}", std::process::id()));

    let driver_port = free_port();
    let _driver = Proc(
        Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(driver_port, "chromedriver");
    let driver = format!("http://127.0.0.1:{driver_port}");

    let (port_a, port_b, port_c) = (free_port(), free_port(), free_port());
    let mut node_a = chat(port_a, &redis_url, true);
    let _node_b = chat(port_b, &redis_url, true);

    let ann = browser(&driver).await;
    let bob = browser(&driver).await;
    for (c, port, nick) in [(&ann, port_a, "ann"), (&bob, port_b, "bob")] {
        c.goto(&format!("http://127.0.0.1:{port}/?nick={nick}"))
            .await
            .unwrap();
        until(
            c,
            &status_is("connected · WebSocket"),
            &format!("{nick} connected"),
        )
        .await;
        let input = c.find(Locator::Id("room-input")).await.unwrap();
        input.send_keys(&room).await.unwrap();
        input.send_keys("\u{E007}").await.unwrap();
        until(
            c,
            &format!(
                "document.querySelector('#rooms .room.active')?.dataset.room === {}",
                json!(room)
            ),
            &format!("{nick} in the room"),
        )
        .await;
    }

    // Send, receive, presence (across the two processes, through Redis).
    send(&ann, "hello from ann").await;
    until(
        &bob,
        &has_message("ann", "hello from ann"),
        "bob gets ann's message",
    )
    .await;
    send(&bob, "hi ann <b>not bold</b>").await;
    until(
        &ann,
        &has_message("bob", "hi ann <b>not bold</b>"),
        "ann gets bob's message",
    )
    .await;
    let bold = ann
        .execute(
            "return document.querySelectorAll('#messages b').length",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(bold, json!(0), "message text must not be rendered as HTML");
    until(
        &ann,
        &format!("{} && {}", online("ann"), online("bob")),
        "both online in ann's window",
    )
    .await;
    until(
        &bob,
        &format!("{} && {}", online("ann"), online("bob")),
        "both online in bob's window",
    )
    .await;

    // Ann's server restarts; bob keeps talking meanwhile.
    node_a.terminate();
    until(
        &ann,
        "document.getElementById('status').textContent.includes('reconnecting')",
        "ann sees the drop",
    )
    .await;
    until(
        &bob,
        &format!("!({})", online("ann")),
        "ann leaves bob's online list",
    )
    .await;
    for i in 1..=3 {
        send(&bob, &format!("while you were away {i}")).await;
    }
    until(
        &bob,
        &has_message("bob", "while you were away 3"),
        "bob's own messages shown",
    )
    .await;
    node_a = chat(port_a, &redis_url, true);
    until(&ann, &status_is("connected · WebSocket"), "ann reconnected").await;
    for i in 1..=3 {
        until(
            &ann,
            &has_message("bob", &format!("while you were away {i}")),
            "ann recovers what she missed",
        )
        .await;
    }
    assert_eq!(
        count(&ann, "hello from ann").await,
        1,
        "no duplicates after recovery"
    );
    assert_eq!(
        count(&ann, "while you were away 2").await,
        1,
        "no duplicates after recovery"
    );
    until(&bob, &online("ann"), "ann is back in bob's online list").await;

    // A third process with WebSockets disabled: the page falls back to SSE.
    let _node_c = chat(port_c, &redis_url, false);
    let cid = browser(&driver).await;
    cid.goto(&format!("http://127.0.0.1:{port_c}/?nick=cid"))
        .await
        .unwrap();
    until(
        &cid,
        &status_is("connected · SSE fallback"),
        "cid on the SSE fallback",
    )
    .await;
    let input = cid.find(Locator::Id("room-input")).await.unwrap();
    input.send_keys(&room).await.unwrap();
    input.send_keys("\u{E007}").await.unwrap();
    until(
        &cid,
        &has_message("ann", "hello from ann"),
        "cid sees the room's history",
    )
    .await;
    send(&cid, "hello over SSE").await;
    until(
        &ann,
        &has_message("cid", "hello over SSE"),
        "ann gets cid's message",
    )
    .await;
    send(&ann, "hello back").await;
    until(
        &cid,
        &has_message("ann", "hello back"),
        "cid gets ann's reply over SSE",
    )
    .await;
    until(&cid, &online("ann"), "presence over SSE").await;

    // A screenshot of the page for the README, refreshed by every run.
    let png = ann.screenshot().await.unwrap();
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/chat-screenshot.png");
    std::fs::write(&out, png).unwrap();

    for c in [ann, bob, cid] {
        c.close().await.unwrap();
    }
    drop(node_a);
}
