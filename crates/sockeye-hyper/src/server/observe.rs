//! What the upgrade paths (the service and the axum extractor) report: the
//! per-socket `websocket` span, and through the `metrics` facade (feature
//! `metrics`) `sockeye_handshake_rejections_total{status, reason}`,
//! `sockeye_sockets_opened_total{role, transport}` and
//! `sockeye_sockets_open{role}`.

/// The span a server socket's task runs in (sockeye-proto's, see
/// [`sockeye_proto::socket_span`]): the peer from the request's
/// [`PeerAddr`](sockeye_proto::handshake::PeerAddr) (which `serve`
/// records), the agreed extension as its response header value (the
/// deflate layer adds the header to the 101 itself, on the way out).
pub(crate) fn socket_span(
    transport: &'static str,
    protocol: Option<&str>,
    extensions: &http::Extensions,
) -> tracing::Span {
    let peer = extensions
        .get::<sockeye_proto::handshake::PeerAddr>()
        .map(|p| p.0);
    let agreed = extensions.get::<sockeye_proto::extension::AgreedExtension>();
    sockeye_proto::socket_span(
        transport,
        peer,
        protocol,
        agreed.map(|a| a.response() as &dyn std::fmt::Display),
    )
}

/// `http1`, or `http2` for an RFC 8441 extended CONNECT.
pub(crate) fn transport(version: http::Version) -> &'static str {
    if version == http::Version::HTTP_2 {
        "http2"
    } else {
        "http1"
    }
}

/// An upgrade answered with `status` instead of 101.
pub(crate) fn rejected(status: http::StatusCode, reason: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(
        "sockeye_handshake_rejections_total",
        "status" => status.as_str().to_owned(),
        "reason" => reason
    )
    .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (status, reason);
}

/// A server socket, open while this lives.
pub(crate) struct SocketOpen;

impl SocketOpen {
    pub(crate) fn new(transport: &'static str) -> Self {
        #[cfg(feature = "metrics")]
        {
            metrics::counter!(
                "sockeye_sockets_opened_total",
                "role" => "server",
                "transport" => transport
            )
            .increment(1);
            metrics::gauge!("sockeye_sockets_open", "role" => "server").increment(1.0);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = transport;
        Self
    }
}

impl Drop for SocketOpen {
    fn drop(&mut self) {
        #[cfg(feature = "metrics")]
        metrics::gauge!("sockeye_sockets_open", "role" => "server").decrement(1.0);
    }
}
