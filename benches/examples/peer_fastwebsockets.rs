//! Echo server on fastwebsockets through hyper's upgrade (its documented
//! server path), current-thread runtime; one write per frame (vectored).

use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

async fn handle(
    mut req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, fastwebsockets::WebSocketError> {
    let (response, fut) = fastwebsockets::upgrade::upgrade(&mut req)?;
    tokio::task::spawn_local(async move {
        let Ok(ws) = fut.await else { return };
        let mut ws = fastwebsockets::FragmentCollector::new(ws);
        loop {
            let Ok(frame) = ws.read_frame().await else {
                return;
            };
            match frame.opcode {
                fastwebsockets::OpCode::Close => return,
                fastwebsockets::OpCode::Text | fastwebsockets::OpCode::Binary => {}
                _ => continue,
            }
            if ws.write_frame(frame).await.is_err() {
                return;
            }
        }
    });
    Ok(response)
}

fn main() -> std::io::Result<()> {
    sockeye_benches::serve(|tcp| async move {
        let service = hyper::service::service_fn(handle);
        let conn = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(tcp), service)
            .with_upgrades();
        let _ = conn.await;
    })
}
