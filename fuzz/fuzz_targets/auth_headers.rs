//! sockeye-auth's parsers of untrusted headers, through its public layers:
//! the Origin / Host check, every credential carrier, and the client IP
//! behind trusted proxies.
//!
//! Input: one flag byte, then lines (`\n`). The first line is the request
//! target; each other line is `name:value`, the value taken byte for byte
//! (lines that are not a valid header are skipped). A one-letter name
//! stands for a header the layers read: `o` Origin, `h` Host, `a`
//! Authorization, `c` Cookie, `p` Sec-WebSocket-Protocol, `f` Forwarded,
//! `x` X-Forwarded-For, `u` Upgrade, `v` Sec-WebSocket-Version.
//! Flags: bit 0 the peer is a trusted proxy, bit 1 the proxies set
//! `Forwarded` (else X-Forwarded-For), bit 2 HTTP/2 CONNECT (else HTTP/1.1
//! GET), bit 3 the trusted peer is seen IPv4-mapped.
//!
//! Oracles: no panic; an allowed Origin is well formed (a name, IPv4, or
//! IPv6) and prints back to itself; the layers pass exactly what their
//! check allows and never check what is not an upgrade; every carrier's
//! credential is non-empty, a query value decodes as a form field, a
//! subprotocol token never reaches the upgrade; the client IP is the peer
//! unless the peer is trusted, ignores the header the proxies do not set,
//! is the hop a trusted proxy appends whatever the client wrote on its
//! left, and is the last address known when a hop does not parse; permits
//! are released.
#![no_main]

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::FutureExt;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use libfuzzer_sys::fuzz_target;
use sockeye_auth::{
    AuthLayer, ClientIp, Credentials, ForwardedHeader, Identity, Origin, OriginLayer, OriginPolicy,
    PeerAddr, SocketLimitLayer,
};
use sockeye_proto::handshake::server::is_websocket_request;
use tower_layer::Layer;
use tower_service::Service;

const PROXY: &str = "10.0.0.1";
const INNER_PROXY: &str = "10.0.0.2";
const CLIENT: &str = "192.0.2.99";
/// What a trusted proxy appends in the oracle.
const APPENDED: &str = "198.51.100.7";

/// The inner service: answers 200 and keeps each request it was given.
#[derive(Clone, Default)]
struct Record(Arc<Mutex<Vec<Request<()>>>>);

impl Record {
    fn take(&self) -> Vec<Request<()>> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Service<Request<()>> for Record {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<()>) -> Self::Future {
        self.0.lock().unwrap().push(req);
        ready(Ok(Response::new(())))
    }
}

/// One request through a layer on a [`Record`]: the status, and the request
/// the inner service saw (if it was called).
fn run<L>(layer: &L, req: Request<()>) -> (StatusCode, Option<Request<()>>)
where
    L: Layer<Record>,
    L::Service: Service<Request<()>, Response = Response<()>, Error = Infallible>,
{
    let record = Record::default();
    let mut service = layer.layer(record.clone());
    let resp = service
        .call(req)
        .now_or_never()
        .expect("every layer answers at once here")
        .unwrap();
    let mut seen = record.take();
    assert!(seen.len() <= 1);
    (resp.status(), seen.pop())
}

struct Input {
    uri: Uri,
    headers: HeaderMap,
    trusted_peer: bool,
    header: ForwardedHeader,
    h2: bool,
    mapped: bool,
}

impl Input {
    fn parse(data: &[u8]) -> Option<Self> {
        let (&flags, rest) = data.split_first()?;
        let mut lines = rest.split(|&b| b == b'\n');
        let uri = Uri::try_from(lines.next().unwrap_or_default()).unwrap_or(Uri::from_static("/"));
        let mut headers = HeaderMap::new();
        for line in lines {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let (name, value) = (&line[..colon], &line[colon + 1..]);
            let name = match name {
                b"o" => http::header::ORIGIN,
                b"h" => http::header::HOST,
                b"a" => http::header::AUTHORIZATION,
                b"c" => http::header::COOKIE,
                b"p" => http::header::SEC_WEBSOCKET_PROTOCOL,
                b"f" => http::header::FORWARDED,
                b"x" => HeaderName::from_static("x-forwarded-for"),
                b"u" => http::header::UPGRADE,
                b"v" => http::header::SEC_WEBSOCKET_VERSION,
                other => match HeaderName::from_bytes(other) {
                    Ok(n) => n,
                    Err(_) => continue,
                },
            };
            if let Ok(value) = HeaderValue::from_bytes(value) {
                headers.append(name, value);
            }
        }
        Some(Self {
            uri,
            headers,
            trusted_peer: flags & 1 != 0,
            header: if flags & 2 != 0 {
                ForwardedHeader::Forwarded
            } else {
                ForwardedHeader::XForwardedFor
            },
            h2: flags & 4 != 0,
            mapped: flags & 8 != 0,
        })
    }

    fn request(&self) -> Request<()> {
        self.request_with(self.headers.clone())
    }

    fn request_with(&self, headers: HeaderMap) -> Request<()> {
        let (method, version) = if self.h2 {
            (Method::CONNECT, Version::HTTP_2)
        } else {
            (Method::GET, Version::HTTP_11)
        };
        let mut req = Request::new(());
        *req.method_mut() = method;
        *req.version_mut() = version;
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = headers;
        req
    }

    /// Whether the layers guard this request: the handshake's own test,
    /// or an HTTP/1.x `Upgrade` line that is not visible ASCII.
    fn guarded(&self) -> bool {
        let version = if self.h2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        let method = if self.h2 {
            Method::CONNECT
        } else {
            Method::GET
        };
        is_websocket_request(&method, version, &self.headers)
            || (!self.h2
                && self
                    .headers
                    .get_all(http::header::UPGRADE)
                    .iter()
                    .any(|v| v.to_str().is_err()))
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

// ===== Origin =====

fn well_formed(origin: &Origin) {
    let host = origin.host();
    if host.contains(':') {
        let v6: std::net::Ipv6Addr = host.parse().expect("only IPv6 has a colon");
        assert_eq!(v6.to_string(), host, "IPv6 in canonical form");
    } else {
        assert!(!host.is_empty());
        assert!(
            host.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b)),
            "{host:?}"
        );
    }
    assert!(matches!(origin.scheme(), "http" | "https"));
    let printed = origin.to_string();
    assert_eq!(Origin::parse(&printed).as_ref(), Some(origin), "{printed}");
}

fn origin(input: &Input) {
    let list = OriginPolicy::list([
        "https://chat.example.com",
        "https://*.example.com",
        "http://[::1]:8080",
    ])
    .unwrap();
    let layers = [
        OriginLayer::new(list.clone()),
        OriginLayer::new(OriginPolicy::same_origin()).bound_to("127.0.0.1:8080".parse().unwrap()),
        OriginLayer::new(OriginPolicy::any()).require_origin(true),
        OriginLayer::new(OriginPolicy::same_origin().or(list))
            .allow_hosts(["chat.test", "[2001:db8::1]:443"])
            .unwrap(),
    ];
    let guarded = input.guarded();
    for (i, layer) in layers.into_iter().enumerate() {
        let decision = layer.check(&input.headers);
        if let Ok(Some(o)) = &decision {
            well_formed(o);
            assert_eq!(
                input.headers.get_all(http::header::ORIGIN).iter().count(),
                1
            );
            if i == 0 {
                let h = o.host();
                assert!(
                    o.scheme() == "https" && o.port() == 443 && h.ends_with(".example.com")
                        || (h, o.port()) == ("::1", 8080),
                    "{o}"
                );
            }
        }
        // The layer passes exactly what the check allows, only on upgrades.
        // (Without a Host header it takes the host from the target's
        // authority, which `check` does not see.)
        let same_host =
            input.headers.contains_key(http::header::HOST) || input.uri.authority().is_none();
        let (status, seen) = run(&layer, input.request());
        let passed = status == StatusCode::OK;
        assert_eq!(passed, seen.is_some());
        if !same_host {
            continue;
        }
        if guarded {
            assert_eq!(passed, decision.is_ok(), "{decision:?}");
            if passed {
                let recorded = seen.as_ref().and_then(|r| r.extensions().get::<Origin>());
                assert_eq!(recorded, decision.as_ref().ok().and_then(Option::as_ref));
            }
        } else {
            assert!(passed, "not an upgrade, yet refused: {status}");
        }
        let all = layer.check_all_requests(true);
        let (status, _) = run(&all, input.request());
        assert_eq!(status == StatusCode::OK, decision.is_ok());
    }
}

// ===== credentials =====

/// The reference: a form field's value (`+` a space, `%XX` a byte).
fn form_decode(v: &[u8]) -> String {
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::new();
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                v.get(i + 1).and_then(|&b| hex(b)),
                v.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn credentials(input: &Input) {
    type Carrier = fn(AuthLayer<Validate>) -> AuthLayer<Validate>;
    let carriers: [Carrier; 5] = [
        |l| l.bearer(),
        |l| l.basic(),
        |l| l.cookie("session"),
        |l| l.query("token"),
        |l| l.subprotocol("bearer."),
    ];
    let guarded = input.guarded();
    for (i, carrier) in carriers.into_iter().enumerate() {
        let found = Arc::new(Mutex::new(None));
        let layer = carrier(AuthLayer::new(Validate(Arc::clone(&found))));
        let (status, seen) = run(&layer.clone().check_all_requests(true), input.request());
        let creds = found.lock().unwrap().take();
        match &creds {
            None => assert_eq!(status, StatusCode::UNAUTHORIZED),
            Some(_) => {
                assert_eq!(status, StatusCode::OK);
                assert!(
                    seen.as_ref()
                        .unwrap()
                        .extensions()
                        .get::<Identity>()
                        .is_some()
                );
            }
        }
        match (i, creds) {
            (_, None) => {}
            (0, Some(Credentials::Bearer(token))) => {
                let t = token.expose();
                assert!(!t.is_empty() && t.trim() == t, "{t:?}");
            }
            (1, Some(Credentials::Basic { user, .. })) => assert!(!user.contains(':')),
            (2, Some(Credentials::Cookie { name, .. })) => assert_eq!(name, "session"),
            (3, Some(Credentials::Query { value, .. })) => {
                let raw = input
                    .uri
                    .query()
                    .unwrap_or_default()
                    .split('&')
                    .find_map(|pair| {
                        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                        (k == "token").then_some(v)
                    });
                let want = form_decode(raw.unwrap_or_default().as_bytes());
                assert!(!want.is_empty());
                assert_eq!(value.expose(), want);
            }
            (4, Some(Credentials::Subprotocol(token))) => {
                assert!(!token.expose().is_empty());
                // No prefixed entry is left for the upgrade to select.
                let seen = seen.unwrap();
                for v in seen.headers().get_all(http::header::SEC_WEBSOCKET_PROTOCOL) {
                    let v = v.to_str().unwrap();
                    assert!(
                        v.split(',').all(|p| !p.trim().starts_with("bearer.")),
                        "{v}"
                    );
                }
            }
            (i, Some(other)) => panic!("carrier {i} gave {other:?}"),
        }
        // Without check_all_requests only upgrades meet the validator.
        let (status, seen) = run(&layer, input.request());
        if !guarded {
            assert_eq!(status, StatusCode::OK);
            assert!(seen.is_some());
            assert!(found.lock().unwrap().is_none(), "validated a non-upgrade");
        }
    }
}

/// Records the credentials and lets them in.
#[derive(Clone)]
struct Validate(Arc<Mutex<Option<Credentials>>>);

impl sockeye_auth::Validator for Validate {
    type Future = Ready<Result<Identity, sockeye_auth::Rejection>>;

    fn validate(&self, credentials: Credentials) -> Self::Future {
        *self.0.lock().unwrap() = Some(credentials);
        ready(Ok(Identity::new("fuzz")))
    }
}

// ===== client IP =====

fn client_ip(input: &Input, layer: &SocketLimitLayer, peer: IpAddr, headers: HeaderMap) -> IpAddr {
    let mut headers = headers;
    // Guarded in either handshake, so the layer always decides.
    headers.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        http::header::SEC_WEBSOCKET_VERSION,
        HeaderValue::from_static("13"),
    );
    let mut req = input.request_with(headers);
    req.extensions_mut()
        .insert(PeerAddr(SocketAddr::new(peer, 40000)));
    let (status, seen) = run(layer, req);
    assert_eq!(status, StatusCode::OK);
    let ip = seen
        .unwrap()
        .extensions()
        .get::<ClientIp>()
        .expect("a client IP")
        .0;
    // The permit went with the request: nothing stays counted.
    assert_eq!(layer.open_for_ip(ip), 0);
    ip
}

fn client_ips(input: &Input) {
    let layer = SocketLimitLayer::new()
        .per_ip(1 << 20)
        .trusted_proxies([ip(PROXY), ip(INNER_PROXY)])
        .forwarded_header(input.header);
    let peer = match (input.trusted_peer, input.mapped) {
        (false, _) => ip(CLIENT),
        (true, false) => ip(PROXY),
        (true, true) => ip("::ffff:10.0.0.1"),
    };
    let got = client_ip(input, &layer, peer, input.headers.clone());
    if !input.trusted_peer {
        assert_eq!(got, peer, "an untrusted peer's headers were believed");
        return;
    }
    let (chosen, other) = match input.header {
        ForwardedHeader::Forwarded => (
            http::header::FORWARDED,
            HeaderName::from_static("x-forwarded-for"),
        ),
        _ => (
            HeaderName::from_static("x-forwarded-for"),
            http::header::FORWARDED,
        ),
    };
    // The header the proxies do not set changes nothing.
    let mut without = input.headers.clone();
    without.remove(&other);
    assert_eq!(client_ip(input, &layer, peer, without), got);
    if !input.headers.contains_key(&chosen) {
        assert_eq!(got, peer);
    }
    // A hop that does not parse ends the walk at the last address known:
    // the peer, or the inner proxy that wrote it.
    let (unknown, inner) = match input.header {
        ForwardedHeader::Forwarded => ("for=unknown", "for=10.0.0.2"),
        _ => ("unknown", INNER_PROXY),
    };
    for (lines, want) in [
        (&[unknown][..], peer),
        (&[unknown, inner][..], ip(INNER_PROXY)),
    ] {
        let mut capped = input.headers.clone();
        for line in lines {
            capped.append(&chosen, HeaderValue::from_static(line));
        }
        assert_eq!(client_ip(input, &layer, peer, capped), want, "{lines:?}");
    }
    // What the client wrote cannot hide the hop its proxy appends, on a
    // line of its own or at the end of the client's last line.
    let hops: &[&str] = match input.header {
        ForwardedHeader::Forwarded => &[
            "for=198.51.100.7",
            "for=\"198.51.100.7:4711\";proto=https",
            "proto=https;for=198.51.100.7;host=\"a\\\"b,for=192.0.2.1\"",
        ],
        _ => &["198.51.100.7", "198.51.100.7:4711"],
    };
    for hop in hops {
        let mut line = input.headers.clone();
        line.append(&chosen, HeaderValue::from_str(hop).unwrap());
        assert_eq!(client_ip(input, &layer, peer, line), ip(APPENDED), "{hop}");
        let mut values: Vec<HeaderValue> = input.headers.get_all(&chosen).iter().cloned().collect();
        if let Some(last) = values.pop() {
            let mut bytes = last.as_bytes().to_vec();
            bytes.extend_from_slice(b", ");
            bytes.extend_from_slice(hop.as_bytes());
            values.push(HeaderValue::from_bytes(&bytes).unwrap());
            let mut appended = input.headers.clone();
            appended.remove(&chosen);
            for v in values {
                appended.append(&chosen, v);
            }
            assert_eq!(
                client_ip(input, &layer, peer, appended),
                ip(APPENDED),
                "{hop} appended"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    origin(&input);
    credentials(&input);
    client_ips(&input);
});
