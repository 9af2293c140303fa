//! The per-call log span and its W3C trace: a tower layer that continues the caller's
//! `traceparent` (or starts a trace), hands it to the handler through the request's
//! extensions (where [`crate::credentials`] picks it up to forward), and runs the call
//! inside [`crate::request_span`].
use std::task::{Context, Poll};

use promotion_core::trace::TraceContext;
use tower_layer::Layer;
use tower_service::Service;
use tracing::instrument::{Instrument, Instrumented};

/// The layer; outermost on every server, so that everything a call logs is in its span.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceLayer;

impl<S> Layer<S> for TraceLayer {
    type Service = Traced<S>;

    fn layer(&self, inner: S) -> Traced<S> {
        Traced { inner }
    }
}

/// The service [`TraceLayer`] wraps around the server's routes.
#[derive(Debug, Clone)]
pub struct Traced<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for Traced<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let header = req.headers().get("traceparent").and_then(|v| v.to_str().ok());
        let trace = TraceContext::continue_or_start(header);
        let span = crate::request_span(&req, &trace);
        req.extensions_mut().insert(trace);
        let call = span.in_scope(|| self.inner.call(req));
        call.instrument(span)
    }
}
