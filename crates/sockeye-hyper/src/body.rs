//! The response body of the upgrade service: a boxed body, so a fallback
//! service's responses and sockeye's own short texts share one type.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// A boxed error, as bodies report them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response body type of [`UpgradeService`](crate::server::UpgradeService)
/// and [`upgrade`](crate::server::upgrade).
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body holding `text`.
pub(crate) fn text(text: impl Into<Bytes>) -> Body {
    Full::new(text.into())
        .map_err(|e| match e {})
        .boxed_unsync()
}

/// An empty body.
pub(crate) fn empty() -> Body {
    Empty::new().map_err(|e| match e {}).boxed_unsync()
}

/// Boxes any body with `Bytes` chunks.
pub(crate) fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}
