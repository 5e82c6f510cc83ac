//! Test servers on 127.0.0.1:0: hyper serving a tower service, a CONNECT
//! proxy, and raw-socket helpers.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;

use futures_util::StreamExt;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use sockeye_hyper::Body;
use sockeye_hyper::server::{Handshake, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::Service;

/// Serves `service` with hyper's HTTP/1 server (upgrades on).
pub async fn serve<S>(service: S) -> SocketAddr
where
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .with_upgrades();
                let _ = conn.await;
            });
        }
    });
    addr
}

/// Echoes text and binary messages until the socket ends.
pub async fn echo(mut ws: WebSocket, _hs: Handshake) {
    while let Some(msg) = ws.next().await {
        if let Ok(m) = msg
            && (m.is_text() || m.is_binary())
        {
            let _ = futures_util::SinkExt::feed(&mut ws, m).await;
        }
    }
}

/// Sends a raw HTTP request and returns the whole raw response.
pub async fn raw_exchange(addr: SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the peer closes or a complete head with its body arrived.
    loop {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= len {
                break;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

pub fn masked_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let key = [9u8, 8, 7, 6];
    let mut out = vec![first, 0x80 | payload.len() as u8];
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// What a test proxy does with a CONNECT.
#[derive(Clone, Copy, Debug)]
pub enum ProxyMode {
    /// Tunnel everything.
    Open,
    /// Answer 403.
    Refuse,
    /// Require `Proxy-Authorization: Basic` for user:pass, else 407.
    Auth(&'static str, &'static str),
}

/// A CONNECT proxy on loopback; returns its address and a counter of
/// tunnels opened.
pub async fn proxy(
    mode: ProxyMode,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use base64::Engine;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tunnels = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = tunnels.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let mut b = [0u8; 1];
                    if client.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let target = head.split_whitespace().nth(1).unwrap().to_owned();
                assert!(head.starts_with("CONNECT "), "{head}");
                let refuse =
                    |status: &str| format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                match mode {
                    ProxyMode::Refuse => {
                        let _ = client.write_all(refuse("403 Forbidden").as_bytes()).await;
                        return;
                    }
                    ProxyMode::Auth(user, pass) => {
                        let expected = base64::engine::general_purpose::STANDARD
                            .encode(format!("{user}:{pass}"));
                        let ok = head.lines().any(|l| {
                            l.to_ascii_lowercase().starts_with("proxy-authorization:")
                                && l.ends_with(&format!("Basic {expected}"))
                        });
                        if !ok {
                            let _ = client
                                .write_all(refuse("407 Proxy Authentication Required").as_bytes())
                                .await;
                            return;
                        }
                    }
                    ProxyMode::Open => {}
                }
                let Ok(mut upstream) = TcpStream::connect(&target).await else {
                    let _ = client.write_all(refuse("502 Bad Gateway").as_bytes()).await;
                    return;
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                client
                    .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (addr, tunnels)
}

/// A TLS acceptor with a fresh self-signed certificate for `localhost`,
/// offering `alpn` (none when empty), and a root store trusting it.
#[cfg(feature = "tls")]
pub fn localhost_tls(alpn: &[&[u8]]) -> (tokio_rustls::TlsAcceptor, rustls::RootCertStore) {
    let (config, roots) = localhost_tls_config(alpn);
    (tokio_rustls::TlsAcceptor::from(config), roots)
}

/// The server configuration behind [`localhost_tls`].
#[cfg(feature = "tls")]
pub fn localhost_tls_config(
    alpn: &[&[u8]],
) -> (std::sync::Arc<rustls::ServerConfig>, rustls::RootCertStore) {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    (std::sync::Arc::new(config), roots)
}
