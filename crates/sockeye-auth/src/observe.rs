//! Decisions through the `metrics` facade (feature `metrics`):
//! `sockeye_auth_decisions_total{layer, outcome, status}`, listed in the
//! [crate docs](crate#metrics). Labels name the layer and the status only:
//! never a credential, an origin, a host, a user or an address.

use http::StatusCode;

/// A request the layer checked and let through.
pub(crate) fn allowed(layer: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(
        "sockeye_auth_decisions_total",
        "layer" => layer,
        "outcome" => "allowed"
    )
    .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = layer;
}

/// A request the layer answered with `status`.
pub(crate) fn refused(layer: &'static str, status: StatusCode) {
    #[cfg(feature = "metrics")]
    metrics::counter!(
        "sockeye_auth_decisions_total",
        "layer" => layer,
        "outcome" => "refused",
        "status" => status.as_str().to_owned()
    )
    .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (layer, status);
}
