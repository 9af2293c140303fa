//! A plain HTTP/1.1 request to a gRPC port (curl, a browser) is answered in words: which
//! port this is and where the HTTP API is, instead of an HTTP/2 frame that curl reports
//! as "Received HTTP/0.9 when not allowed". gRPC calls pass untouched.
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

/// What a plain HTTP request to the gRPC port is told.
const EXPLANATION: &str = "This is a gRPC port of promotion: call it with a gRPC client (grpcurl, the \
promotion CLI). The HTTP/JSON API (/environment-promotion/v1/) and the console (/) are on the HTTP \
port: development mode's --http-addr (default http://127.0.0.1:50080/), a service's http_listen.\n";

/// The innermost layer of the gRPC server, next to its routes.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainHttpLayer;

impl<S> Layer<S> for PlainHttpLayer {
    type Service = PlainHttp<S>;

    fn layer(&self, inner: S) -> PlainHttp<S> {
        PlainHttp { inner }
    }
}

#[derive(Debug, Clone)]
pub struct PlainHttp<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody> Service<http::Request<ReqBody>> for PlainHttp<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        if is_grpc(&req) {
            return Box::pin(self.inner.call(req));
        }
        let body = tonic::body::Body::new(http_body_util::Full::new(bytes::Bytes::from_static(EXPLANATION.as_bytes())));
        let mut response = http::Response::new(body);
        *response.status_mut() = http::StatusCode::BAD_REQUEST;
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
        Box::pin(std::future::ready(Ok(response)))
    }
}

/// HTTP/2 with a gRPC content type; anything over HTTP/1 that does not say gRPC is a person.
fn is_grpc<B>(req: &http::Request<B>) -> bool {
    let grpc_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/grpc"));
    grpc_type || req.version() == http::Version::HTTP_2
}
