//! The physical ceiling: a raw TCP echo of the same bytes, no WebSocket
//! processing at all (current-thread runtime).

use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn main() -> std::io::Result<()> {
    sockeye_benches::serve(|mut tcp| async move {
        let mut buf = vec![0u8; 256 << 10];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tcp.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
}
