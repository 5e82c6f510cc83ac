//! With feature `metrics`, each layer counts its decisions, allowed or
//! refused with the status, and never labels them with what the request
//! carried. The layers run in memory (tower `oneshot`) on one thread under
//! a local debugging recorder.
#![cfg(feature = "metrics")]
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::convert::Infallible;

use http::{Request, Response, StatusCode};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use sockeye_auth::{
    AuthLayer, Credentials, Identity, OriginLayer, OriginPolicy, Rejection, SocketLimitLayer,
};
use tower::{Layer, Service, ServiceExt};

/// Every counter seen so far (snapshots drain them), with its labels.
struct Totals {
    snapshotter: Snapshotter,
    seen: Vec<(metrics::Key, u64)>,
}

impl Totals {
    fn new(recorder: &DebuggingRecorder) -> Self {
        Self {
            snapshotter: recorder.snapshotter(),
            seen: Vec::new(),
        }
    }

    fn update(&mut self) {
        for (key, .., v) in self.snapshotter.snapshot().into_vec() {
            let DebugValue::Counter(v) = v else { continue };
            let key = key.key().clone();
            match self.seen.iter_mut().find(|(k, _)| *k == key) {
                Some((_, total)) => *total += v,
                None => self.seen.push((key, v)),
            }
        }
    }

    /// `sockeye_auth_decisions_total` with exactly these labels.
    fn decisions(&mut self, labels: &[(&str, &str)]) -> u64 {
        self.update();
        self.seen
            .iter()
            .filter(|(key, _)| {
                let mut have: Vec<_> = key.labels().map(|l| (l.key(), l.value())).collect();
                let mut want = labels.to_vec();
                have.sort_unstable();
                want.sort_unstable();
                key.name() == "sockeye_auth_decisions_total" && have == want
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// Every label value recorded, of every counter.
    fn label_values(&mut self) -> Vec<String> {
        self.update();
        self.seen
            .iter()
            .flat_map(|(key, _)| key.labels().map(|l| l.value().to_owned()))
            .collect()
    }
}

fn upgrade(origin: Option<&str>, token: Option<&str>) -> Request<()> {
    let mut req = Request::get("/ws")
        .header("host", "chat.example.com")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    if let Some(origin) = origin {
        req = req.header("origin", origin);
    }
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    req.body(()).unwrap()
}

type Ready = std::future::Ready<Result<Response<String>, Infallible>>;

/// The service behind the layer: 200 to everything.
fn inner() -> tower::util::ServiceFn<impl FnMut(Request<()>) -> Ready + Clone> {
    tower::service_fn(|_req| std::future::ready(Ok(Response::new(String::new()))))
}

#[tokio::test]
async fn origin_decisions_are_counted() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let mut totals = Totals::new(&recorder);

    let layer = OriginLayer::new(OriginPolicy::list(["https://chat.example.com"]).unwrap());
    let status = |req| async { layer.layer(inner()).oneshot(req).await.unwrap().status() };
    assert_eq!(
        status(upgrade(Some("https://chat.example.com"), None)).await,
        200
    );
    assert_eq!(
        status(upgrade(Some("https://evil.example"), None)).await,
        403
    );
    assert_eq!(status(upgrade(Some("null"), None)).await, 403);
    // Not an upgrade: not checked, not counted.
    let page = Request::get("/").body(()).unwrap();
    assert_eq!(status(page).await, 200);

    assert_eq!(
        totals.decisions(&[("layer", "origin"), ("outcome", "allowed")]),
        1
    );
    assert_eq!(
        totals.decisions(&[
            ("layer", "origin"),
            ("outcome", "refused"),
            ("status", "403")
        ]),
        2
    );
    let values = totals.label_values();
    assert!(
        !values.iter().any(|v| v.contains("example")),
        "an origin reached a label: {values:?}"
    );
}

#[tokio::test]
async fn auth_decisions_are_counted_with_the_refusal_status() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let mut totals = Totals::new(&recorder);

    let layer = AuthLayer::new(|creds: Credentials| async move {
        match creds {
            Credentials::Bearer(t) if t.matches("good-token") => Ok(Identity::new("alice")),
            Credentials::Bearer(t) if t.matches("store-down") => Err(Rejection::Unavailable),
            _ => Err(Rejection::Invalid),
        }
    })
    .bearer();
    let status = |req| async { layer.layer(inner()).oneshot(req).await.unwrap().status() };
    assert_eq!(status(upgrade(None, Some("good-token"))).await, 200);
    assert_eq!(status(upgrade(None, Some("good-token"))).await, 200);
    assert_eq!(status(upgrade(None, Some("bad-token"))).await, 403);
    assert_eq!(status(upgrade(None, None)).await, 401);
    assert_eq!(status(upgrade(None, Some("store-down"))).await, 503);

    assert_eq!(
        totals.decisions(&[("layer", "auth"), ("outcome", "allowed")]),
        2
    );
    for code in ["401", "403", "503"] {
        assert_eq!(
            totals.decisions(&[("layer", "auth"), ("outcome", "refused"), ("status", code)]),
            1,
            "{code}"
        );
    }
    let values = totals.label_values();
    assert!(
        !values
            .iter()
            .any(|v| v.contains("token") || v.contains("alice") || v.contains("down")),
        "a credential or a user reached a label: {values:?}"
    );
}

#[tokio::test]
async fn socket_limit_decisions_are_counted() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let mut totals = Totals::new(&recorder);

    let layer = SocketLimitLayer::new().per_identity(1);
    let with_identity = || {
        let mut req = upgrade(None, None);
        req.extensions_mut().insert(Identity::new("bob"));
        req
    };
    // The first socket's permit travels with its request; keep it.
    let mut service = layer.layer(tower::service_fn(|req: Request<()>| async move {
        let mut resp = Response::new(String::new());
        *resp.extensions_mut() = req.extensions().clone();
        Ok::<_, Infallible>(resp)
    }));
    let first = service
        .ready()
        .await
        .unwrap()
        .call(with_identity())
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let second = service
        .ready()
        .await
        .unwrap()
        .call(with_identity())
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    drop(first);

    assert_eq!(
        totals.decisions(&[("layer", "limit"), ("outcome", "allowed")]),
        1
    );
    assert_eq!(
        totals.decisions(&[
            ("layer", "limit"),
            ("outcome", "refused"),
            ("status", "429")
        ]),
        1
    );
}
