//! A tiny multiplayer game: every player steers a dot on a shared
//! 1000×1000 field; the server moves the dots and sends everyone the whole
//! field 20 times a second, as binary messages.
//!
//! ```text
//! cargo run --example game -- [--addr 127.0.0.1:8082] [--allowed-host HOST]...
//! ```
//! Bound to loopback (the default), only requests naming `localhost`,
//! `127.0.0.1` or `[::1]` on its port reach the socket (DNS rebinding);
//! `--allowed-host NAME[:PORT]` adds names.
//! Open http://127.0.0.1:8082 in a few windows and move the mouse (or a
//! finger). Prints `listening on ADDR` once ready.
//!
//! What it shows, on sockeye-hyper directly (no pub/sub hub):
//!
//! - An [`UpgradeService`] whose handler runs one task per player: it reads
//!   the player's input and writes the snapshots.
//! - One game loop for everyone: a 20 Hz tokio interval moves each dot
//!   toward its target at a capped speed, then frames the snapshot once as
//!   a [`PreparedMessage`]. Every socket writes those same bytes (a
//!   reference-counted clone), so a tick costs one encoding, not one per
//!   player.
//! - Latest-value delivery: snapshots go through a `tokio::sync::watch`
//!   channel, which holds only the newest one. A player whose connection is
//!   slow skips stale snapshots instead of queueing them — what a real-time
//!   game wants.
//! - A strict binary protocol: a text message or a malformed input closes
//!   the socket with 1003 (unsupported data).
//!
//! # Wire format (all integers big-endian)
//!
//! ```text
//! client → server  input     [u8 kind=1][u16 x][u16 y]          the point to head for
//! server → client  welcome   [u8 kind=3][u32 id]                your id, sent first
//! server → client  snapshot  [u8 kind=2][u16 count]             then `count` times:
//!                            [u32 id][u16 x][u16 y][u8 r][u8 g][u8 b]
//! ```
//! Coordinates are world units, 0 to 999 (larger values are clamped); an
//! input is exactly 5 bytes.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http::{Method, Request};
use hyper::body::Incoming;
use sockeye_auth::{OriginLayer, OriginPolicy};
use sockeye_examples::{Caps, html_page, not_found, parse_flags, runtime};
use sockeye_hyper::server::{Drain, Handshake, UpgradeService, WebSocket};
use sockeye_proto::{CloseCode, Config, Message, PreparedMessage};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tower::{ServiceBuilder, ServiceExt};

/// The page, embedded in the binary.
const PAGE: &str = include_str!("index.html");

/// The field is `WORLD` × `WORLD` units.
const WORLD: u16 = 1000;
/// The game loop's period: 20 Hz.
const TICK: Duration = Duration::from_millis(50);
/// How fast a dot moves, in units per second.
const SPEED: f32 = 400.0;
/// Players at once; more are refused with 1013 (try again later).
const MAX_PLAYERS: usize = 100;

/// Message kinds, the first byte of every message.
const INPUT: u8 = 1;
const SNAPSHOT: u8 = 2;
const WELCOME: u8 = 3;

/// A multiplayer game: dots on a shared field, 20 binary snapshots a second.
#[derive(Debug, clap::Parser)]
#[command(name = "game")]
struct Flags {
    /// Listen on this address.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8082")]
    addr: String,
    /// Answer requests naming this host too, beside the loopback names
    /// (repeatable).
    #[arg(long, value_name = "NAME[:PORT]")]
    allowed_host: Vec<String>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let flags: Flags = parse_flags();
    runtime(0)?.block_on(serve(flags.addr, flags.allowed_host))
}

/// One dot.
#[derive(Debug)]
struct Player {
    x: f32,
    y: f32,
    /// Where the player asked it to go.
    target: (f32, f32),
    color: [u8; 3],
}

/// The shared state: the players, and the channel of snapshots.
#[derive(Debug)]
struct Game {
    /// By id; a `BTreeMap` keeps snapshots in a stable order. The lock is
    /// held for microseconds and never across an `.await`.
    players: Mutex<BTreeMap<u32, Player>>,
    next_id: AtomicU32,
    /// The newest snapshot. Each player's task holds a receiver.
    snapshots: watch::Sender<PreparedMessage>,
}

impl Game {
    fn players(&self) -> MutexGuard<'_, BTreeMap<u32, Player>> {
        // A panic elsewhere while holding the lock leaves valid positions.
        self.players.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a player at a random spot with a random colour; `None` when full.
    fn join(&self) -> Option<u32> {
        let mut players = self.players();
        if players.len() >= MAX_PLAYERS {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let r = random();
        let x = (r % u64::from(WORLD)) as f32;
        let y = ((r >> 16) % u64::from(WORLD)) as f32;
        let hue = ((r >> 32) % 360) as f32;
        players.insert(
            id,
            Player {
                x,
                y,
                target: (x, y),
                color: hsl_to_rgb(hue, 0.75, 0.6),
            },
        );
        Some(id)
    }

    fn set_target(&self, id: u32, x: f32, y: f32) {
        if let Some(p) = self.players().get_mut(&id) {
            p.target = (x, y);
        }
    }
}

/// Removes its player from the game when dropped: when the player's task
/// ends, however it ends (including being aborted at shutdown).
struct Seat<'a> {
    game: &'a Game,
    id: u32,
}

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        self.game.players().remove(&self.id);
    }
}

async fn serve(addr: String, hosts: Vec<String>) -> Result<(), Box<dyn std::error::Error>> {
    let empty = PreparedMessage::new(Message::binary(encode_snapshot(&BTreeMap::new())))?;
    let (snapshots, _) = watch::channel(empty);
    let game = Arc::new(Game {
        players: Mutex::new(BTreeMap::new()),
        next_id: AtomicU32::new(1),
        snapshots,
    });
    tokio::spawn(game_loop(Arc::clone(&game)));

    // Inputs are 5 bytes: anything past 1 KiB is closed with 1009. The
    // server pings a silent peer after 30 s and drops it 30 s later.
    let config = Config::builder()
        .max_message_size(1024)
        .max_frame_size(1024)
        .keepalive_interval(Some(Duration::from_secs(30)))
        .build();
    let listener = TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    let drain = Drain::new();
    let player = {
        let game = Arc::clone(&game);
        move |ws: WebSocket, _handshake: Handshake| play(Arc::clone(&game), ws)
    };
    // Pages of other sites may not join (scripts without `Origin` may).
    let socket = ServiceBuilder::new()
        .layer(
            OriginLayer::new(OriginPolicy::same_origin())
                .bound_to(local)
                .allow_hosts(&hosts)?,
        )
        .service(UpgradeService::new(player).config(config).drain(&drain));
    let service = tower::service_fn(move |req: Request<Incoming>| {
        let socket = socket.clone();
        async move {
            match (req.method(), req.uri().path()) {
                (_, "/ws") => socket.oneshot(req).await,
                (&Method::GET, "/") => Ok(html_page(PAGE)),
                _ => Ok(not_found()),
            }
        }
    });

    println!("listening on {local}");
    eprintln!("game: http://{local}/ (20 ticks a second, up to {MAX_PLAYERS} players)");
    sockeye_examples::serve(listener, service, &drain, Caps::default(), || {}).await?;
    Ok(())
}

/// The game loop: 20 times a second, move every dot and publish one
/// snapshot, framed once for all players.
async fn game_loop(game: Arc<Game>) {
    let mut tick = tokio::time::interval(TICK);
    // After a stall, carry on at the normal pace rather than catching up.
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let bytes = {
            let mut players = game.players();
            if players.is_empty() {
                continue;
            }
            step(&mut players, TICK.as_secs_f32());
            encode_snapshot(&players)
        };
        match PreparedMessage::new(Message::binary(bytes)) {
            // Replaces the previous snapshot and wakes every player's task.
            Ok(snapshot) => {
                game.snapshots.send_replace(snapshot);
            }
            Err(e) => eprintln!("game: cannot frame a snapshot: {e}"),
        }
    }
}

/// Moves each dot toward its target, at most `SPEED * dt` units.
fn step(players: &mut BTreeMap<u32, Player>, dt: f32) {
    let max = SPEED * dt;
    for p in players.values_mut() {
        let (dx, dy) = (p.target.0 - p.x, p.target.1 - p.y);
        let distance = dx.hypot(dy);
        if distance <= max {
            (p.x, p.y) = p.target;
        } else {
            p.x += dx / distance * max;
            p.y += dy / distance * max;
        }
    }
}

/// One player's socket: the welcome, then inputs in and snapshots out until
/// either side stops.
async fn play(game: Arc<Game>, mut ws: WebSocket) {
    let Some(id) = game.join() else {
        let _ = ws
            .close(CloseCode::TRY_AGAIN_LATER, "the game is full")
            .await;
        return;
    };
    let _seat = Seat { game: &game, id };
    // A receiver sees snapshots published from now on.
    let mut snapshots = game.snapshots.subscribe();
    if ws.send(Message::binary(encode_welcome(id))).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            // `recv` is cancel safe: losing the race to a snapshot loses no input.
            incoming = ws.recv() => match incoming {
                Some(Ok(Message::Binary(data))) => match parse_input(&data) {
                    Some((x, y)) => game.set_target(id, x, y),
                    None => {
                        let _ = ws.close(CloseCode::UNSUPPORTED_DATA, "malformed input").await;
                        return;
                    }
                },
                Some(Ok(Message::Text(_))) => {
                    let _ = ws.close(CloseCode::UNSUPPORTED_DATA, "binary messages only").await;
                    return;
                }
                // Pings are answered by the socket itself; a close is replied to.
                Some(Ok(_)) => {}
                // The socket failed: reading on finishes the close it started.
                Some(Err(_)) => {
                    while ws.recv().await.is_some() {}
                    return;
                }
                None => return,
            },
            changed = snapshots.changed() => {
                if changed.is_err() {
                    return; // The game loop is gone.
                }
                // Only the newest snapshot is held: while this send waited
                // on a slow connection, older ones were replaced, not queued.
                let snapshot = snapshots.borrow_and_update().clone();
                if ws.send_prepared(&snapshot).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// `[1][u16 x][u16 y]`: the point to head for, clamped to the field.
fn parse_input(data: &[u8]) -> Option<(f32, f32)> {
    let &[INPUT, x0, x1, y0, y1] = data else {
        return None;
    };
    let clamp = |v: u16| f32::from(v.min(WORLD - 1));
    Some((
        clamp(u16::from_be_bytes([x0, x1])),
        clamp(u16::from_be_bytes([y0, y1])),
    ))
}

/// `[3][u32 id]`.
fn encode_welcome(id: u32) -> Vec<u8> {
    let mut out = vec![WELCOME];
    out.extend_from_slice(&id.to_be_bytes());
    out
}

/// `[2][u16 count]`, then `[u32 id][u16 x][u16 y][u8 r][u8 g][u8 b]` per player.
fn encode_snapshot(players: &BTreeMap<u32, Player>) -> Vec<u8> {
    // MAX_PLAYERS keeps the count far below u16::MAX.
    let count = players.len().min(usize::from(u16::MAX));
    let mut out = Vec::with_capacity(3 + 11 * count);
    out.push(SNAPSHOT);
    out.extend_from_slice(&(count as u16).to_be_bytes());
    for (id, p) in players.iter().take(count) {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&(p.x.round() as u16).to_be_bytes());
        out.extend_from_slice(&(p.y.round() as u16).to_be_bytes());
        out.extend_from_slice(&p.color);
    }
    out
}

/// 64 random bits. The standard library's `RandomState` is seeded randomly
/// per process; that is plenty for a spawn point and a colour.
fn random() -> u64 {
    RandomState::new().hash_one(Instant::now())
}

/// A colour from hue (degrees), saturation and lightness (0 to 1).
fn hsl_to_rgb(hue: f32, s: f32, l: f32) -> [u8; 3] {
    let c = (1.0 - (2.0 * l - 1.0).abs()) * s;
    let h = (hue % 360.0) / 60.0;
    let x = c * (1.0 - (h % 2.0 - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = l - c / 2.0;
    [r, g, b].map(|v| ((v + m) * 255.0).round().clamp(0.0, 255.0) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format() {
        assert_eq!(
            parse_input(&[1, 0x01, 0xF4, 0x00, 0x0A]),
            Some((500.0, 10.0))
        );
        assert_eq!(parse_input(&[1, 0xFF, 0xFF, 0, 0]), Some((999.0, 0.0)));
        assert_eq!(parse_input(&[1, 0, 0, 0]), None);
        assert_eq!(parse_input(&[2, 0, 0, 0, 0]), None);
        assert_eq!(encode_welcome(7), [3, 0, 0, 0, 7]);

        let mut players = BTreeMap::new();
        players.insert(
            258,
            Player {
                x: 1.4,
                y: 999.0,
                target: (0.0, 0.0),
                color: [10, 20, 30],
            },
        );
        assert_eq!(
            encode_snapshot(&players),
            [2, 0, 1, 0, 0, 1, 2, 0, 1, 0x03, 0xE7, 10, 20, 30]
        );
    }

    #[test]
    fn dots_move_at_capped_speed() {
        let mut players = BTreeMap::new();
        players.insert(
            1,
            Player {
                x: 0.0,
                y: 0.0,
                target: (300.0, 400.0),
                color: [0; 3],
            },
        );
        step(&mut players, 0.05); // 20 units along the 3:4:5 diagonal
        let p = &players[&1];
        assert!((p.x - 12.0).abs() < 1e-3 && (p.y - 16.0).abs() < 1e-3);
        for _ in 0..30 {
            step(&mut players, 0.05);
        }
        assert_eq!((players[&1].x, players[&1].y), (300.0, 400.0));
    }

    #[test]
    fn colours() {
        assert_eq!(hsl_to_rgb(0.0, 1.0, 0.5), [255, 0, 0]);
        assert_eq!(hsl_to_rgb(120.0, 1.0, 0.5), [0, 255, 0]);
        assert_eq!(hsl_to_rgb(240.0, 1.0, 0.5), [0, 0, 255]);
    }
}
