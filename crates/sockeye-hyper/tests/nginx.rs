//! Behind a real reverse proxy: Debian's nginx configured for WebSocket
//! pass-through (installed by `cargo xtask test` when missing). A location
//! that strips the upgrade headers must give the client a clear error, not
//! a hang.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use sockeye_hyper::client::ClientBuilder;
use sockeye_hyper::server::UpgradeService;
use sockeye_hyper::{Error, Message};
use sockeye_proto::HandshakeError;

use common::{echo, serve};

const NGINX: &str = "/usr/sbin/nginx";

struct Nginx {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_nginx(backend: u16) -> Nginx {
    assert!(
        Path::new(NGINX).is_file(),
        "{NGINX} is missing: `cargo xtask test` installs Debian's nginx-light (as root)"
    );
    let dir = std::env::temp_dir().join(format!("sockeye-nginx-{}-{backend}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display();
    let port = free_port();
    let conf = format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen 127.0.0.1:{port};
        location /ws {{
            proxy_pass http://127.0.0.1:{backend};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_read_timeout 60s;
        }}
        location /stripped {{
            proxy_pass http://127.0.0.1:{backend};
            proxy_http_version 1.1;
        }}
    }}
}}
"#
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new(NGINX)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut nginx = Nginx {
        child,
        port,
        _dir: TempDir(dir.clone()),
    };
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return nginx;
        }
        if let Some(status) = nginx.child.try_wait().unwrap() {
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            panic!("nginx exited ({status}): {log}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nginx did not start listening on port {port}");
}

#[tokio::test]
async fn echo_through_nginx_and_a_clear_error_when_it_strips_upgrades() {
    let backend = serve(UpgradeService::new(echo)).await;
    let nginx = start_nginx(backend.port()).await;

    let (mut ws, _) = ClientBuilder::new(format!("ws://127.0.0.1:{}/ws", nginx.port))
        .no_proxy()
        .connect()
        .await
        .unwrap();
    for i in 0..50 {
        let text = format!("through nginx {i}");
        ws.send(text.as_str()).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(text));
    }
    let big = vec![3u8; 2 << 20];
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(big));
    ws.close(sockeye_hyper::CloseCode::NORMAL, "")
        .await
        .unwrap();

    let r = tokio::time::timeout(
        Duration::from_secs(10),
        ClientBuilder::new(format!("ws://127.0.0.1:{}/stripped", nginx.port))
            .no_proxy()
            .connect(),
    )
    .await
    .expect("the client must not hang behind a proxy that strips upgrades");
    match r {
        Err(Error::Proto(sockeye_proto::Error::Handshake(HandshakeError::UnexpectedStatus(s)))) => {
            assert_eq!(s, 426)
        }
        other => panic!("expected a 426 from the backend through nginx, got {other:?}"),
    }
}
