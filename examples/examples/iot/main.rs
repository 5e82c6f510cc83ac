//! IoT: simulated devices report telemetry to a pub/sub hub and take
//! commands from a dashboard page. One binary runs the hub and the devices;
//! each device is a real client over loopback.
//!
//! ```text
//! cargo run --example iot -- [--addr 127.0.0.1:8083] [--devices 5]
//! ```
//! Open http://127.0.0.1:8083: one tile per device with its latest reading
//! and a sparkline; the buttons change a device's reporting interval or
//! reboot it, and the tile shows when the device applied the command. Prints
//! `listening on ADDR` once ready.
//!
//! What it shows:
//!
//! - Identity from a query parameter with sockeye-auth's `AuthLayer`:
//!   `/ws?device=dev-03` becomes the identity `device:dev-03` (known ids
//!   only), `/ws?dashboard=1` the identity `dashboard`. This demo takes the
//!   parameter at its word; real devices would present a per-device secret
//!   (a token checked here), and the dashboard a login.
//! - An `Authorizer` closure that scopes every topic: a device publishes
//!   only to `telemetry:<its id>` and subscribes only to `commands:<its
//!   id>`; the dashboard subscribes to `telemetry:*` and publishes to
//!   `commands:*`, and only well-formed commands.
//! - Two namespaces: `telemetry` (history of 60 readings, so a dashboard
//!   that opens draws its sparklines at once; a slow dashboard gets the
//!   latest reading, `SlowConsumer::KeepLatest`) and `commands` (history of
//!   10, so a device whose link dropped gets the commands it missed when its
//!   client reconnects and recovers).
//! - The reconnecting Rust client, `sockeye_pubsub::client::PubSubClient`,
//!   as the devices' firmware.
//!
//! The dashboard learns the device ids from `GET /devices`
//! (`{"devices":["dev-01",...]}`): the server started the devices, so it
//! knows the fleet, including devices that are offline at the moment — which
//! presence (who is connected now) would not tell.
//!
//! Messages (the data of publications, see `crates/sockeye-pubsub/PROTOCOL.md`):
//!
//! ```text
//! telemetry:<id>  {"temp":21.7,"battery":88.4,"interval_ms":1000,"uptime_s":42}
//! commands:<id>   {"cmd":"set_interval","ms":2000}    200 ≤ ms ≤ 60000
//!                 {"cmd":"reboot"}                     reconnects; uptime restarts at 0
//! ```

use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use serde_json::{Value, json};
use sockeye_auth::{AuthLayer, Credentials, Identity, OriginLayer, OriginPolicy, Rejection};
use sockeye_examples::{Caps, html_page, not_found, parse_flags, runtime, serve_hub};
use sockeye_hyper::Body;
use sockeye_hyper::client::ClientBuilder;
use sockeye_hyper::server::Drain;
use sockeye_pubsub::client::{Item, PubSubClient};
use sockeye_pubsub::{Access, Action, Hub, Namespace, SlowConsumer};
use tokio::net::TcpListener;
use tokio::time::{Instant, MissedTickBehavior};
use tower::{ServiceBuilder, ServiceExt};

/// The dashboard, embedded in the binary.
const PAGE: &str = include_str!("index.html");

/// The reporting interval a device starts with, and the bounds a command
/// may set.
const DEFAULT_INTERVAL_MS: u64 = 1000;
const MIN_INTERVAL_MS: u64 = 200;
const MAX_INTERVAL_MS: u64 = 60_000;

/// How long a simulated reboot keeps a device offline.
const BOOT_TIME: Duration = Duration::from_secs(3);

/// IoT: simulated devices report telemetry to a pub/sub hub and take
/// commands from a dashboard.
#[derive(Debug, clap::Parser)]
#[command(name = "iot")]
struct Flags {
    /// Listen on this address.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8083")]
    addr: String,
    /// Simulated devices, 1 to 99.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 5,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=99)
    )]
    devices: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let flags: Flags = parse_flags();
    runtime(0)?.block_on(serve(flags.addr, flags.devices))
}

async fn serve(addr: String, devices: usize) -> Result<(), Box<dyn std::error::Error>> {
    let ids: Arc<[String]> = (1..=devices).map(|i| format!("dev-{i:02}")).collect();

    let telemetry = Namespace::new()
        .client_publish(true)
        .history(60, Duration::from_secs(3600))
        .slow_consumer(SlowConsumer::KeepLatest);
    let commands = Namespace::new()
        .client_publish(true)
        .history(10, Duration::from_secs(600));
    let hub = Hub::builder()
        .namespace("telemetry", telemetry)
        .namespace("commands", commands)
        .authorizer(authorize)
        .build();

    // Who is asking, from `?device=` or `?dashboard=`, for the upgrade and
    // for the SSE fallback's requests alike.
    let known = Arc::clone(&ids);
    let identities =
        AuthLayer::new(move |creds: Credentials| std::future::ready(identify(&known, creds)))
            .query("device")
            .query("dashboard")
            .check_all_requests(true);
    // Pages of other sites may not connect (the devices send no `Origin`).
    let origins = OriginLayer::new(OriginPolicy::same_origin()).check_all_requests(true);
    let drain = Drain::new();
    let socket = ServiceBuilder::new()
        .layer(origins)
        .layer(identities)
        .service(hub.service().drain(&drain));
    let device_list = Bytes::from(json!({ "devices": &*ids }).to_string());
    let service = tower::service_fn(move |req: Request<Incoming>| {
        let socket = socket.clone();
        let device_list = device_list.clone();
        async move {
            match (req.method(), req.uri().path()) {
                (_, "/ws") => socket.oneshot(req).await,
                (&Method::GET, "/") => Ok(html_page(PAGE)),
                (&Method::GET, "/devices") => Ok(json_response(device_list)),
                _ => Ok(not_found()),
            }
        }
    });

    let listener = TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    println!("listening on {local}");
    eprintln!("iot: http://{local}/ with {devices} simulated devices");

    // The devices connect over loopback, like any client would. They start
    // now; their connections wait in the listen queue until the loop below
    // accepts them.
    let loopback = match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), local.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), local.port())
        }
        _ => local,
    };
    for id in ids.iter() {
        let url = format!("ws://{loopback}/ws?device={id}");
        tokio::spawn(run_device(id.clone(), url));
    }

    // On Ctrl-C or SIGTERM: every session (WebSocket, or SSE fallback) is
    // closed with 1001, then the sockets drain.
    serve_hub(listener, service, &drain, Caps::default(), &hub).await?;
    Ok(())
}

/// The identity of a request: a known device, or the dashboard.
fn identify(devices: &[String], creds: Credentials) -> Result<Identity, Rejection> {
    match creds {
        Credentials::Query { name, value } if name == "device" => {
            let id = value.expose();
            if devices.iter().any(|d| d == id) {
                Ok(Identity::new(format!("device:{id}")))
            } else {
                Err(Rejection::Invalid)
            }
        }
        Credentials::Query { name, value } if name == "dashboard" && value.expose() == "1" => {
            Ok(Identity::new("dashboard"))
        }
        _ => Err(Rejection::Invalid),
    }
}

/// Who may do what. The namespaces already allow clients to publish; this
/// decides per identity and topic (and, for commands, per content).
fn authorize(access: Access<'_>) -> bool {
    let Some(who) = access.identity.map(Identity::subject) else {
        return false;
    };
    let topic = access.topic;
    if who == "dashboard" {
        return match access.action {
            Action::Subscribe => topic.starts_with("telemetry:"),
            Action::Publish => {
                topic.starts_with("commands:") && access.data.and_then(Command::parse).is_some()
            }
            _ => false,
        };
    }
    let Some(device) = who.strip_prefix("device:") else {
        return false;
    };
    match access.action {
        Action::Subscribe => topic.strip_prefix("commands:") == Some(device),
        Action::Publish => topic.strip_prefix("telemetry:") == Some(device),
        _ => false,
    }
}

/// A command to a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Command {
    /// `{"cmd":"set_interval","ms":N}`: report every N ms.
    SetInterval(u64),
    /// `{"cmd":"reboot"}`: disconnect, wait, reconnect; uptime restarts.
    Reboot,
}

impl Command {
    /// Parses a command's JSON; `None` for anything else (unknown command,
    /// extra fields, an interval out of bounds).
    fn parse(json: &str) -> Option<Self> {
        let Ok(Value::Object(map)) = serde_json::from_str::<Value>(json) else {
            return None;
        };
        match (map.get("cmd")?.as_str()?, map.len()) {
            ("reboot", 1) => Some(Self::Reboot),
            ("set_interval", 2) => {
                let ms = map.get("ms")?.as_u64()?;
                (MIN_INTERVAL_MS..=MAX_INTERVAL_MS)
                    .contains(&ms)
                    .then_some(Self::SetInterval(ms))
            }
            _ => None,
        }
    }
}

// ---- The simulated devices ----

/// One device, forever: boot (connect, subscribe to its commands), report
/// telemetry until told to reboot, go dark for [`BOOT_TIME`], boot again.
/// The interval is a setting and survives a reboot, like flash memory; the
/// uptime and the connection do not.
async fn run_device(id: String, url: String) {
    let mut sim = Sim::new(&id);
    let mut interval_ms = DEFAULT_INTERVAL_MS;
    loop {
        let booted = Instant::now();
        // The client reconnects by itself (with backoff) when the link drops,
        // resubscribes, and recovers missed commands from their history.
        let client = match PubSubClient::with_client(ClientBuilder::new(url.as_str()).no_proxy())
            .request_timeout(Duration::from_secs(5))
            .connect()
            .await
        {
            Ok(client) => client,
            Err(e) => {
                eprintln!("{id}: cannot connect ({e}); retrying");
                tokio::time::sleep(BOOT_TIME).await;
                continue;
            }
        };
        report_until_reboot(&id, &client, &mut sim, &mut interval_ms, booted).await;
        client.close().await;
        tokio::time::sleep(BOOT_TIME).await;
    }
}

/// Publishes telemetry every `interval_ms` and applies commands; returns
/// on a reboot command (or when the client can no longer go on).
async fn report_until_reboot(
    id: &str,
    client: &PubSubClient,
    sim: &mut Sim,
    interval_ms: &mut u64,
    booted: Instant,
) {
    let mut commands = match client.subscribe(&format!("commands:{id}")).await {
        Ok(subscription) => subscription,
        Err(e) => {
            eprintln!("{id}: cannot subscribe to its commands: {e}");
            return;
        }
    };
    let topic = format!("telemetry:{id}");
    // The first tick is at once: a device reports as soon as it is up.
    let mut ticker = reporting(*interval_ms);
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let now = Instant::now();
                let reading = sim.step(now.duration_since(last).as_secs_f64());
                last = now;
                let telemetry = json!({
                    "temp": reading.temp,
                    "battery": reading.battery,
                    "interval_ms": *interval_ms,
                    "uptime_s": booted.elapsed().as_secs(),
                });
                if let Err(e) = client.publish(&topic, &telemetry).await {
                    // Down links lose readings, as on real devices.
                    eprintln!("{id}: telemetry not sent: {e}");
                }
            }
            item = commands.recv() => match item {
                Some(Item::Publication { data, .. }) => match Command::parse(data.get()) {
                    Some(Command::SetInterval(ms)) => {
                        eprintln!("{id}: reporting every {ms} ms");
                        *interval_ms = ms;
                        // Reports at once, so the dashboard sees the change.
                        ticker = reporting(ms);
                    }
                    Some(Command::Reboot) => {
                        eprintln!("{id}: rebooting");
                        return;
                    }
                    None => eprintln!("{id}: ignoring a command it does not know: {}", data.get()),
                },
                // Link events: the client reconnects and recovers by itself.
                Some(_) => {}
                // The client stopped: start over as after a reboot.
                None => return,
            },
        }
    }
}

fn reporting(interval_ms: u64) -> tokio::time::Interval {
    let mut ticker = tokio::time::interval(Duration::from_millis(interval_ms));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker
}

/// A device's sensors: a temperature that drifts around its own base and
/// a battery that drains (faster when reporting often) and recharges.
#[derive(Debug)]
struct Sim {
    rng: u64,
    base: f64,
    temp: f64,
    battery: f64,
    charging: bool,
    /// Seconds simulated, for the slow daily-like swing.
    clock: f64,
}

/// One reading, rounded for display.
#[derive(Debug)]
struct Reading {
    temp: f64,
    battery: f64,
}

impl Sim {
    fn new(id: &str) -> Self {
        // Seeded differently per device and per run.
        let mut sim = Self {
            rng: RandomState::new().hash_one(id) | 1,
            base: 0.0,
            temp: 0.0,
            battery: 0.0,
            charging: false,
            clock: 0.0,
        };
        sim.base = 18.0 + 7.0 * sim.uniform();
        sim.temp = sim.base;
        sim.battery = 40.0 + 60.0 * sim.uniform();
        sim
    }

    /// A uniform number in [0, 1) (xorshift64*).
    fn uniform(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Advances `dt` seconds and takes a reading (one report's worth of
    /// radio use included).
    fn step(&mut self, dt: f64) -> Reading {
        self.clock += dt;
        // A five-minute swing of ±1.5 °C, approached gradually, plus noise.
        let swing = 1.5 * (self.clock * std::f64::consts::TAU / 300.0).sin();
        let noise = (self.uniform() - 0.5) * 0.3 * dt.sqrt().min(2.0);
        self.temp += (self.base + swing - self.temp) * (0.2 * dt).min(1.0) + noise;
        // 0.02 %/s idle, 0.02 % per report; charges at 1 %/s below 10 %.
        if self.charging {
            self.battery += dt;
            self.charging = self.battery < 100.0;
        } else {
            self.battery -= 0.02 * dt + 0.02;
            self.charging = self.battery <= 10.0;
        }
        self.battery = self.battery.clamp(0.0, 100.0);
        Reading {
            temp: (self.temp * 10.0).round() / 10.0,
            battery: (self.battery * 10.0).round() / 10.0,
        }
    }
}

// ---- HTTP ----

fn json_response(json: Bytes) -> Response<Body> {
    let body = Full::new(json).map_err(|e| match e {}).boxed_unsync();
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(Command::parse(r#"{"cmd":"reboot"}"#), Some(Command::Reboot));
        assert_eq!(
            Command::parse(r#"{"cmd":"set_interval","ms":2000}"#),
            Some(Command::SetInterval(2000))
        );
        assert_eq!(Command::parse(r#"{"cmd":"set_interval","ms":10}"#), None);
        assert_eq!(
            Command::parse(r#"{"cmd":"set_interval","ms":"2000"}"#),
            None
        );
        assert_eq!(Command::parse(r#"{"cmd":"reboot","now":true}"#), None);
        assert_eq!(Command::parse(r#"{"cmd":"selfdestruct"}"#), None);
        assert_eq!(Command::parse("[1]"), None);
    }

    #[test]
    fn identities() {
        let known = ["dev-01".to_owned()];
        let query = |name: &str, value: &str| Credentials::Query {
            name: name.to_owned(),
            value: sockeye_auth::Secret::new(value),
        };
        let subject = |c| identify(&known, c).map(|i| i.subject().to_owned());
        assert_eq!(
            subject(query("device", "dev-01")).ok().as_deref(),
            Some("device:dev-01")
        );
        assert_eq!(
            subject(query("dashboard", "1")).ok().as_deref(),
            Some("dashboard")
        );
        assert!(subject(query("device", "dev-02")).is_err());
        assert!(subject(query("dashboard", "0")).is_err());
    }

    #[test]
    fn rules() {
        let dev = Identity::new("device:dev-01");
        let dash = Identity::new("dashboard");
        let can = |who: &Identity, action, topic, data| {
            authorize(Access {
                identity: Some(who),
                topic,
                action,
                data,
            })
        };
        let reboot = Some(r#"{"cmd":"reboot"}"#);
        assert!(can(&dev, Action::Publish, "telemetry:dev-01", Some("{}")));
        assert!(!can(&dev, Action::Publish, "telemetry:dev-02", Some("{}")));
        assert!(!can(&dev, Action::Publish, "commands:dev-01", reboot));
        assert!(can(&dev, Action::Subscribe, "commands:dev-01", None));
        assert!(!can(&dev, Action::Subscribe, "commands:dev-02", None));
        assert!(!can(&dev, Action::Subscribe, "telemetry:dev-01", None));
        assert!(can(&dash, Action::Subscribe, "telemetry:dev-02", None));
        assert!(!can(&dash, Action::Subscribe, "commands:dev-02", None));
        assert!(can(&dash, Action::Publish, "commands:dev-02", reboot));
        assert!(!can(
            &dash,
            Action::Publish,
            "commands:dev-02",
            Some(r#"{"cmd":"x"}"#)
        ));
        assert!(!can(&dash, Action::Publish, "telemetry:dev-02", Some("{}")));
        assert!(!authorize(Access {
            identity: None,
            topic: "telemetry:dev-01",
            action: Action::Subscribe,
            data: None,
        }));
    }

    #[test]
    fn simulation_stays_in_range() {
        let mut sim = Sim::new("dev-01");
        for _ in 0..10_000 {
            let r = sim.step(1.0);
            assert!((10.0..=35.0).contains(&r.temp), "{r:?}");
            assert!((0.0..=100.0).contains(&r.battery), "{r:?}");
        }
    }
}
