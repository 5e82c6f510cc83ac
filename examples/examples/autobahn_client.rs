//! Plays the Autobahn TestSuite fuzzing server's protocol: asks for the case
//! count, runs every case (echoing each message), then asks for the report.
//!
//! ```text
//! cargo run --release --example autobahn_client -- --url ws://127.0.0.1:9001 [--agent NAME] [--cases PATTERN]
//! ```
//! `PATTERN` selects case ids (e.g. `6.4.*`, `9.1.6`); `*` matches anything.

use futures_util::{SinkExt, StreamExt};
use sockeye_deflate::DeflateConfig;
use sockeye_examples::{parse_flags, runtime};
use sockeye_hyper::client::{ClientBuilder, WebSocket};
use sockeye_hyper::{Config, Error, Message};

/// Runs the Autobahn TestSuite fuzzing server's cases, echoing each
/// message, then asks for the report.
#[derive(Debug, clap::Parser)]
#[command(name = "autobahn_client")]
struct Flags {
    /// The fuzzing server.
    #[arg(
        long,
        value_name = "ws://HOST:PORT",
        default_value = "ws://127.0.0.1:9001"
    )]
    url: String,
    /// The agent name the report files the results under.
    #[arg(long, value_name = "NAME", default_value = "sockeye")]
    agent: String,
    /// Run only the case ids this matches (* matches anything, e.g. 6.4.*).
    #[arg(long, value_name = "PATTERN")]
    cases: Option<String>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let flags: Flags = parse_flags();
    let url = flags.url.trim_end_matches('/').to_owned();
    runtime(1)?.block_on(run(url, flags.agent, flags.cases))
}

async fn run(
    url: String,
    agent: String,
    pattern: Option<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    let count: u32 = fetch_text(&format!("{url}/getCaseCount"))
        .await?
        .trim()
        .parse()?;
    println!("{count} cases");
    for case in 1..=count {
        if let Some(p) = &pattern {
            let info = fetch_text(&format!("{url}/getCaseInfo?case={case}")).await?;
            let info: serde_json::Value = serde_json::from_str(&info)?;
            let id = info["id"].as_str().unwrap_or_default();
            if !glob(p, id) {
                continue;
            }
        }
        let target = format!("{url}/runCase?case={case}&agent={agent}");
        match echo_case(&target).await {
            Ok(()) => {}
            Err(e) => println!("case {case}: {e}"),
        }
    }
    let mut ws = connect(&format!("{url}/updateReports?agent={agent}")).await?;
    ws.close(sockeye_hyper::CloseCode::NORMAL, "").await?;
    println!("reports updated");
    Ok(())
}

/// Connects with the sockeye-hyper client (no proxy: the suite is local),
/// offering permessage-deflate (cases 12.* and 13.*; the other cases decline it).
async fn connect(url: &str) -> Result<WebSocket, Error> {
    let config = Config::builder()
        .max_message_size(64 << 20)
        .max_frame_size(64 << 20)
        .build();
    // Keep our context (the server may still ask us not to) and compress
    // everything: the cases check compression of every size.
    let deflate = DeflateConfig::new()
        .server_no_context_takeover(false)
        .threshold(0);
    let (ws, _) = ClientBuilder::new(url)
        .no_proxy()
        .config(config)
        .deflate(deflate)
        .connect()
        .await?;
    Ok(ws)
}

async fn fetch_text(url: &str) -> Result<String, Box<dyn std::error::Error>> {
    let mut ws = connect(url).await?;
    let mut text = String::new();
    while let Some(msg) = ws.next().await {
        if let Message::Text(t) = msg? {
            text = t.to_string();
        }
    }
    Ok(text)
}

async fn echo_case(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut ws = connect(url).await?;
    let mut first_error = None;
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                let _ = ws.feed(m).await;
            }
            Ok(_) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), |e| Err(e.into()))
}

/// `*` matches any run of characters; everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(tail) = text.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len()).any(|i| tail.is_char_boundary(i) && glob(rest, &tail[i..]))
        }
    }
}
