//! Limits the transport enforces, answered as statuses a client can read: a request larger
//! than `limits.max_message_bytes` (tonic says OUT_OF_RANGE without a detail) and request
//! headers larger than [`MAX_HEADER_BYTES`] (HTTP/2 would answer HTTP 431, which gRPC
//! clients see as UNKNOWN) are both RESOURCE_EXHAUSTED `LIMIT_EXCEEDED`, with metadata
//! `limit` naming the limit and `max` its value.
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::{Code, Status};
use tower_layer::Layer;
use tower_service::Service;

use promotion_api::status::status;

/// Request headers (names and values, with HTTP/2's 32 bytes per field) a call may carry.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// What HTTP/2 accepts before a call reaches this layer, so that headers between the two
/// get a gRPC status; only larger ones still meet HTTP 431.
pub const TRANSPORT_HEADER_BYTES: u32 = 256 * 1024;

/// The tower layer every server here applies, inside the metrics layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct LimitsLayer;

impl<S> Layer<S> for LimitsLayer {
    type Service = Limits<S>;

    fn layer(&self, inner: S) -> Limits<S> {
        Limits { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Limits<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Limits<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let header_bytes: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 32).sum();
        if header_bytes > MAX_HEADER_BYTES {
            let refused = limit_exceeded(
                "max_header_bytes",
                MAX_HEADER_BYTES,
                format!("the request headers take {header_bytes} bytes; at most {MAX_HEADER_BYTES} are accepted"),
            );
            return Box::pin(std::future::ready(Ok(refused.into_http())));
        }
        let response = self.inner.call(req);
        Box::pin(async move {
            let mut response = response.await?;
            explain_decode_limit(&mut response);
            Ok(response)
        })
    }
}

fn limit_exceeded(limit: &'static str, max: usize, message: String) -> Status {
    status(Code::ResourceExhausted, "LIMIT_EXCEEDED", message, [("limit", limit.to_string()), ("max", max.to_string())])
}

/// tonic refuses a request over the decoding limit before any handler runs, answering
/// OUT_OF_RANGE "Error, decoded message length too large: found N bytes, the limit is: M
/// bytes" in the response headers; that answer is replaced by one naming the limit.
fn explain_decode_limit<B>(response: &mut http::Response<B>) {
    if response.headers().get("grpc-status").map(|v| v.as_bytes()) != Some(b"11") {
        return;
    }
    let Some(original) = Status::from_header_map(response.headers()) else { return };
    let Some(rest) = original.message().strip_prefix("Error, decoded message length too large: found ") else {
        return;
    };
    let numbers: Vec<usize> = rest.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect();
    let (found, max) = match numbers[..] {
        [found, max, ..] => (found, max),
        _ => return,
    };
    let explained = limit_exceeded(
        "max_message_bytes",
        max,
        format!("the request takes {found} bytes; messages are at most {max} (limits.max_message_bytes)"),
    );
    let headers = response.headers_mut();
    for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        headers.remove(name);
    }
    if explained.add_header(headers).is_err() {
        tracing::warn!("could not explain a refused oversized request");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use promotion_api::status::{metadata_of, reason_of};

    #[test]
    fn tonics_decode_limit_becomes_limit_exceeded() {
        let tonic_says = Status::out_of_range(
            "Error, decoded message length too large: found 20971525 bytes, the limit is: 16777216 bytes",
        );
        let mut response: http::Response<()> = tonic_says.into_http();
        explain_decode_limit(&mut response);
        let status = Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(reason_of(&status).as_deref(), Some("LIMIT_EXCEEDED"));
        let metadata = metadata_of(&status);
        assert_eq!(metadata["limit"], "max_message_bytes");
        assert_eq!(metadata["max"], "16777216");
        // Other OUT_OF_RANGE answers pass unchanged.
        let mut other: http::Response<()> = Status::out_of_range("page 9 of 3").into_http();
        explain_decode_limit(&mut other);
        assert_eq!(Status::from_header_map(other.headers()).unwrap().code(), Code::OutOfRange);
    }
}
