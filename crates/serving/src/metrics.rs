//! Prometheus metrics of a service process and the admin HTTP port that serves them:
//! gRPC calls by RPC and status code with latency histograms (a tower layer on the tonic
//! server), extraction and installation durations and sizes (recorded by the domain in
//! `promotion_core::metrics`), the store's size on disk, and `GET /healthz`.
//!
//! The exposition (OpenMetrics text) is `prometheus-client`'s; the registry is one per
//! process, so in development mode, where both services share a process, it holds both.
//!
//! The same layer writes the access log of changes: one info line per mutating call with
//! its RPC, actor, environment, status code and duration. Handlers log nothing for it.
use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry as Exposition;
use tonic::Code;
use tower_layer::Layer;
use tower_service::Service;

use crate::http::{text, with_type, HttpServer, Routes};

/// Upper bounds (seconds) of the per-RPC latency histogram.
const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Distinct (service, method) label pairs kept; calls to further paths (a client probing
/// made-up methods) are counted under `other` so the exposition cannot grow without bound.
const MAX_RPCS: usize = 256;

/// The process-wide registry the server layer writes to.
static GLOBAL: LazyLock<Registry> = LazyLock::new(Registry::default);

/// The layer that counts every call of the tonic server it wraps.
pub fn layer() -> GrpcMetricsLayer {
    GrpcMetricsLayer { registry: &GLOBAL }
}

/// The exposition of the process registry plus the store sizes, as `GET /metrics` returns it.
pub fn render(store_size: &[StoreSize]) -> String {
    GLOBAL.render(store_size)
}

/// The store-size gauge of one service, read when scraped.
#[derive(Debug, Clone, Copy)]
pub struct StoreSize {
    pub service: &'static str,
    pub bytes: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    grpc_service: String,
    grpc_method: String,
    grpc_code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    grpc_service: String,
    grpc_method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

type Latencies = Family<MethodLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS.iter().copied())
}

/// Everything the serving layer measures.
#[derive(Debug)]
pub struct Registry {
    handled: Family<CallLabels, Counter>,
    latency: Latencies,
    /// Request paths counted under their own labels (at most [`MAX_RPCS`]).
    seen: Mutex<HashSet<String>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            handled: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            seen: Mutex::new(HashSet::new()),
        }
    }
}

impl Registry {
    fn observe_call(&self, path: &str, code: Code, elapsed: Duration) {
        let (service, method) = {
            // A panic elsewhere while holding this lock must not take metrics down with it.
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            match split_rpc(path) {
                Some(parts) if seen.contains(path) => parts,
                Some(parts) if seen.len() < MAX_RPCS => {
                    seen.insert(path.to_string());
                    parts
                }
                _ => ("other", "other"),
            }
        };
        let method_labels = MethodLabels { grpc_service: service.to_string(), grpc_method: method.to_string() };
        self.handled
            .get_or_create(&CallLabels {
                grpc_service: service.to_string(),
                grpc_method: method.to_string(),
                grpc_code: code_name(code).to_string(),
            })
            .inc();
        self.latency.get_or_create(&method_labels).observe(elapsed.as_secs_f64());
    }

    fn render(&self, store_size: &[StoreSize]) -> String {
        let mut registry = Exposition::default();
        let build = Family::<VersionLabels, Gauge>::default();
        build.get_or_create(&VersionLabels { version: env!("CARGO_PKG_VERSION").into() }).set(1);
        registry.register("promotion_build_info", "The running version of promotion", build);
        registry.register(
            "grpc_server_handled",
            "gRPC calls completed, by service, method and status code",
            self.handled.clone(),
        );
        registry.register(
            "grpc_server_handling_seconds",
            "Time from a call's arrival to its status (the end of a stream)",
            self.latency.clone(),
        );
        for (what, jobs) in [
            ("extraction", &*promotion_core::metrics::EXTRACTIONS),
            ("installation", &*promotion_core::metrics::INSTALLATIONS),
        ] {
            registry.register(
                format!("promotion_{what}_duration_seconds"),
                format!("Time from start to end of each finished {what}"),
                jobs.seconds.clone(),
            );
            registry.register(
                format!("promotion_{what}_objects"),
                format!("Configuration objects in each finished {what}"),
                jobs.objects.clone(),
            );
        }
        let sizes = Family::<ServiceLabels, Gauge>::default();
        for s in store_size {
            sizes.get_or_create(&ServiceLabels { service: s.service.into() }).set(s.bytes.min(i64::MAX as u64) as i64);
        }
        registry.register("promotion_store_size_bytes", "Size on disk of the service's store", sizes);
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("writing to a String cannot fail");
        out
    }
}

/// `/promotion.v1.PackageService/GetPackage` -> ("promotion.v1.PackageService", "GetPackage").
fn split_rpc(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/')).then_some((service, method))
}

fn code_name(code: Code) -> &'static str {
    promotion_api::status::domain_code(code).as_str()
}

/// A tower layer for `tonic::transport::Server::layer` that counts every call by RPC and
/// status code and times it.
///
/// The status comes from the `grpc-status` response header when the server answers
/// "trailers-only" (every error a unary handler returns) and otherwise from the trailers
/// at the end of the body, so streaming calls count with their final status and their
/// latency spans the whole stream. A call whose response body is dropped before its
/// trailers (the client went away) counts as CANCELLED.
#[derive(Debug, Clone, Copy)]
pub struct GrpcMetricsLayer {
    registry: &'static Registry,
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics { inner, registry: self.registry }
    }
}

/// The service [`GrpcMetricsLayer`] wraps around the server's routes.
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    registry: &'static Registry,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for GrpcMetrics<S>
where
    S: Service<http::Request<RequestTap<ReqBody>>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Body + Unpin + Send + 'static,
    ResBody::Data: AsRef<[u8]>,
{
    type Response = http::Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        // A cheap clone (shared bytes): the path is needed when the call ends.
        let uri = Some(req.uri().clone());
        let access = Access::start(&req);
        let request_prefix = access.as_ref().map(|a| a.request.clone());
        let req = req.map(|inner| RequestTap { inner, prefix: request_prefix });
        let mut call = Call { registry: self.registry, uri, start: Instant::now(), span: None, access };
        let response = self.inner.call(req);
        Box::pin(async move {
            // Polled inside the server's per-call span (request id, method): keep it for the
            // log lines, which are written when the body ends, outside the span.
            if call.access.is_some() || tracing::enabled!(tracing::Level::DEBUG) {
                call.span = Some(tracing::Span::current());
            }
            let (parts, body) = response.await?.into_parts();
            if let Some(status) = parts.headers.get("grpc-status") {
                call.finish(Code::from_bytes(status.as_bytes()));
            }
            Ok(http::Response::from_parts(parts, MeteredBody { inner: body, call }))
        })
    }
}

/// One call being measured; records itself exactly once.
struct Call {
    registry: &'static Registry,
    /// `None` once recorded.
    uri: Option<http::Uri>,
    start: Instant,
    /// The call's log span, when a line will be logged for it.
    span: Option<tracing::Span>,
    /// Set for a mutating call while info logging is on.
    access: Option<Access>,
}

impl Call {
    fn finish(&mut self, code: Code) {
        if let Some(uri) = self.uri.take() {
            let elapsed = self.start.elapsed();
            self.registry.observe_call(uri.path(), code, elapsed);
            let seconds = elapsed.as_secs_f64();
            if let Some(span) = &self.span {
                span.in_scope(|| tracing::debug!(code = code_name(code), seconds, "call finished"));
            }
            if let (Some(access), Some(span)) = (self.access.take(), &self.span) {
                // An unauthenticated call's token was not verified: its subject is a claim.
                let actor = if code == Code::Unauthenticated { None } else { access.actor.as_deref() };
                let environment = access.environment(uri.path());
                span.in_scope(|| {
                    tracing::info!(
                        rpc = uri.path(),
                        actor = actor.unwrap_or("-"),
                        environment = environment.as_deref().unwrap_or("-"),
                        code = code_name(code),
                        seconds,
                        "mutating call"
                    )
                });
            }
        }
    }
}

/// What the access line of a mutating call needs beyond the metrics: the caller, and the
/// first bytes of the request and response messages, where the environment field is.
struct Access {
    actor: Option<String>,
    request: Arc<Mutex<Vec<u8>>>,
    response: Vec<u8>,
}

/// How much of each message is kept: the environment fields come first in every message
/// (protobuf writes fields in number order), so a large PutObjects is not copied.
const ACCESS_PREFIX_BYTES: usize = 1024;

/// Methods that only read; every other method of a `promotion.v1` service changes state.
const READ_ONLY_PREFIXES: &[&str] = &["Get", "List", "Watch", "Export", "WhoAmI", "IssueToken", "Diff"];

/// Message fields naming the environment a call is about, most specific first.
const ENVIRONMENT_FIELDS: &[&str] =
    &["environment", "destination_environment", "target_environment", "source_environment"];

impl Access {
    /// Some for a mutating `promotion.v1` call when info logging is on.
    fn start<B>(req: &http::Request<B>) -> Option<Access> {
        let (service, method) = split_rpc(req.uri().path())?;
        let mutating =
            service.starts_with("promotion.v1.") && !READ_ONLY_PREFIXES.iter().any(|p| method.starts_with(p));
        if !mutating || !tracing::enabled!(tracing::Level::INFO) {
            return None;
        }
        let actor = req.headers().get("authorization").and_then(|h| h.to_str().ok()).and_then(token_subject);
        Some(Access { actor, request: Arc::new(Mutex::new(Vec::new())), response: Vec::new() })
    }

    fn capture_response(&mut self, data: &[u8]) {
        capture(&mut self.response, data);
    }

    /// The environment the call named (its request), else the one its answer names (an
    /// accept names only a request id; the promotion request it returns has the target).
    fn environment(&self, path: &str) -> Option<String> {
        let (service, method) = split_rpc(path)?;
        let pool = DESCRIPTORS.as_ref()?;
        let method = pool.get_service_by_name(service)?.methods().find(|m| m.name() == method)?;
        let request = self.request.lock().unwrap_or_else(|p| p.into_inner());
        let from = |message: prost_reflect::MessageDescriptor, bytes: &[u8]| {
            let number = ENVIRONMENT_FIELDS.iter().find_map(|f| message.get_field_by_name(f))?.number();
            grpc_string_field(bytes, number).filter(|e| !e.is_empty())
        };
        from(method.input(), &request).or_else(|| from(method.output(), &self.response))
    }
}

static DESCRIPTORS: LazyLock<Option<prost_reflect::DescriptorPool>> =
    LazyLock::new(|| prost_reflect::DescriptorPool::decode(promotion_api::FILE_DESCRIPTOR_SET).ok());

fn capture(into: &mut Vec<u8>, data: &[u8]) {
    let room = ACCESS_PREFIX_BYTES.saturating_sub(into.len());
    into.extend_from_slice(&data[..data.len().min(room)]);
}

/// The `sub` claim of a bearer token, read without checking it: the line is written after
/// the call, whose outcome says whether the token was valid.
fn token_subject(header: &str) -> Option<String> {
    use base64::Engine;
    let token = header.strip_prefix("Bearer ").or_else(|| header.strip_prefix("bearer "))?;
    let payload = token.trim().split('.').nth(1)?;
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&claims).ok()?;
    claims["sub"].as_str().map(str::to_owned)
}

/// A string field of the first message of a gRPC body (5-byte frame header, then the
/// protobuf message), scanning only what `bytes` holds; None for compressed frames.
fn grpc_string_field(bytes: &[u8], number: u32) -> Option<String> {
    let (&compressed, rest) = bytes.split_first()?;
    let length = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    if compressed != 0 {
        return None;
    }
    let mut message = &rest[4..rest.len().min(4 + length)];
    while !message.is_empty() {
        let key = prost::encoding::decode_varint(&mut message).ok()?;
        let (field, wire_type) = ((key >> 3) as u32, key & 7);
        match wire_type {
            0 => {
                prost::encoding::decode_varint(&mut message).ok()?;
            }
            1 => message = message.get(8..)?,
            2 => {
                let len = usize::try_from(prost::encoding::decode_varint(&mut message).ok()?).ok()?;
                let value = message.get(..len)?;
                if field == number {
                    return String::from_utf8(value.to_vec()).ok();
                }
                message = &message[len..];
            }
            5 => message = message.get(4..)?,
            _ => return None,
        }
    }
    None
}

/// A request body that keeps a copy of its first bytes for the access line of a mutating
/// call; otherwise it only passes frames through.
pub struct RequestTap<B> {
    inner: B,
    prefix: Option<Arc<Mutex<Vec<u8>>>>,
}

impl<B: Body + Unpin> Body for RequestTap<B>
where
    B::Data: AsRef<[u8]>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let (Poll::Ready(Some(Ok(frame))), Some(prefix)) = (&polled, &this.prefix) {
            if let Some(data) = frame.data_ref() {
                capture(&mut prefix.lock().unwrap_or_else(|p| p.into_inner()), data.as_ref());
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

/// A response body that records its call when the trailers go out.
pub struct MeteredBody<B> {
    inner: B,
    call: Call,
}

impl<B: Body + Unpin> Body for MeteredBody<B>
where
    B::Data: AsRef<[u8]>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(access)) = (frame.data_ref(), &mut this.call.access) {
                    access.capture_response(data.as_ref());
                }
                if let Some(status) = frame.trailers_ref().and_then(|t| t.get("grpc-status")) {
                    this.call.finish(Code::from_bytes(status.as_bytes()));
                }
            }
            // The server failed to produce the body: the client sees a reset stream.
            Poll::Ready(Some(Err(_))) => this.call.finish(Code::Internal),
            Poll::Ready(None) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Reads a service's store size for the gauge when `/metrics` is scraped.
pub type StoreSizeFn = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The admin HTTP server of one service: `GET /metrics` and `GET /healthz`.
pub struct Admin {
    serving: Arc<AtomicBool>,
    server: Option<HttpServer>,
}

impl Admin {
    /// Listens on `addr` (nothing when `None`) and serves until [`Admin::stop`]. `/healthz`
    /// answers 503 until [`Admin::set_serving`] marks the service ready.
    pub async fn start(
        addr: Option<SocketAddr>,
        service: &'static str,
        store_size: StoreSizeFn,
    ) -> Result<Admin, std::io::Error> {
        let serving = Arc::new(AtomicBool::new(false));
        let Some(addr) = addr else {
            return Ok(Admin { serving, server: None });
        };
        let server =
            HttpServer::start(addr, "admin_listen", admin_routes(service, store_size, serving.clone())).await?;
        tracing::info!(addr = %server.local_addr(), "admin HTTP serving /metrics and /healthz");
        Ok(Admin { serving, server: Some(server) })
    }

    /// Where the admin port listens, if it does.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(HttpServer::local_addr)
    }

    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::SeqCst);
    }

    /// `shutdown`, which also turns `/healthz` to 503 the moment it resolves, like the
    /// gRPC health service.
    pub fn not_serving_after(
        &self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        let serving = self.serving.clone();
        async move {
            shutdown.await;
            serving.store(false, Ordering::SeqCst);
        }
    }

    /// Stops accepting admin connections.
    pub fn stop(self) {
        if let Some(server) = self.server {
            server.stop();
        }
    }
}

fn admin_routes(service: &'static str, store_size: StoreSizeFn, serving: Arc<AtomicBool>) -> Routes {
    Routes::default()
        .route(http::Method::GET, "/healthz", move |_| {
            let up = serving.load(Ordering::SeqCst);
            async move {
                match up {
                    true => text(http::StatusCode::OK, "SERVING\n"),
                    false => text(http::StatusCode::SERVICE_UNAVAILABLE, "NOT_SERVING\n"),
                }
            }
        })
        .route(http::Method::GET, "/metrics", move |_| {
            let read = store_size.clone();
            async move {
                // Reading the size lists the store's files: keep it off the async workers.
                let bytes = tokio::task::spawn_blocking(move || read()).await.unwrap_or(0);
                let body = Bytes::from(render(&[StoreSize { service, bytes }]));
                with_type(http::StatusCode::OK, body, "application/openmetrics-text; version=1.0.0; charset=utf-8")
            }
        })
        .fallback(|_| async {
            text(http::StatusCode::NOT_FOUND, "not found: the admin port serves /metrics and /healthz\n")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn registry() -> &'static Registry {
        Box::leak(Box::default())
    }

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn paths_become_service_and_method_and_odd_paths_are_other() {
        assert_eq!(
            split_rpc("/promotion.v1.PackageService/GetPackage"),
            Some(("promotion.v1.PackageService", "GetPackage"))
        );
        let r = registry();
        for odd in ["/", "/nomethod", "//x/y", "/a/b/c", "", "x/y"] {
            assert_eq!(split_rpc(odd), None, "{odd}");
            r.observe_call(odd, Code::Unimplemented, Duration::ZERO);
        }
        let text = r.render(&[]);
        let other =
            "grpc_server_handled_total{grpc_service=\"other\",grpc_method=\"other\",grpc_code=\"UNIMPLEMENTED\"}";
        assert_eq!(sample(&text, other), Some(6.0), "{text}");
    }

    #[test]
    fn made_up_methods_beyond_the_cap_are_counted_as_other() {
        let r = registry();
        for i in 0..MAX_RPCS + 10 {
            r.observe_call(&format!("/s/M{i}"), Code::Unimplemented, Duration::ZERO);
        }
        r.observe_call("/s/M0", Code::Ok, Duration::ZERO);
        let text = r.render(&[]);
        let other =
            "grpc_server_handled_total{grpc_service=\"other\",grpc_method=\"other\",grpc_code=\"UNIMPLEMENTED\"}";
        assert_eq!(sample(&text, other), Some(10.0));
        let m0 = "grpc_server_handled_total{grpc_service=\"s\",grpc_method=\"M0\",grpc_code=\"OK\"}";
        assert_eq!(sample(&text, m0), Some(1.0), "methods seen before the cap keep counting");
    }

    #[test]
    fn jobs_and_store_sizes_are_exposed() {
        promotion_core::metrics::record_extraction(Duration::from_millis(300), 42);
        let text = registry().render(&[StoreSize { service: "package", bytes: 1234 }]);
        assert!(sample(&text, "promotion_extraction_duration_seconds_count").is_some_and(|n| n >= 1.0), "{text}");
        assert!(sample(&text, "promotion_extraction_objects_sum").is_some_and(|n| n >= 42.0), "{text}");
        assert!(sample(&text, "promotion_installation_duration_seconds_count").is_some(), "{text}");
        assert_eq!(sample(&text, "promotion_store_size_bytes{service=\"package\"}"), Some(1234.0), "{text}");
        assert!(text.contains("# TYPE grpc_server_handled counter"), "{text}");
    }

    /// A stand-in for tonic's routes: answers with the given headers and trailers.
    #[derive(Clone)]
    struct Answer {
        header_status: Option<&'static str>,
        trailer_status: Option<&'static str>,
    }

    impl<B> Service<http::Request<B>> for Answer {
        type Response = http::Response<http_body_util::StreamBody<BoxStream>>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<B>) -> Self::Future {
            let mut frames = vec![Ok(Frame::data(Bytes::from_static(b"payload")))];
            if let Some(code) = self.trailer_status {
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", http::HeaderValue::from_static(code));
                frames.push(Ok(Frame::trailers(trailers)));
            }
            let mut response =
                http::Response::new(http_body_util::StreamBody::new(Box::pin(tokio_stream::iter(frames)) as BoxStream));
            if let Some(code) = self.header_status {
                response.headers_mut().insert("grpc-status", http::HeaderValue::from_static(code));
            }
            std::future::ready(Ok(response))
        }
    }

    type BoxStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<Frame<Bytes>, std::convert::Infallible>> + Send>>;

    async fn call(r: &'static Registry, path: &str, answer: Answer, read_body: bool) {
        let mut svc = GrpcMetricsLayer { registry: r }.layer(answer);
        let req = http::Request::builder().uri(path).body(()).unwrap();
        let response = svc.call(req).await.unwrap();
        if read_body {
            response.into_body().collect().await.unwrap();
        }
    }

    fn count(r: &Registry, method: &str, code: &str) -> u64 {
        let series = format!(
            "grpc_server_handled_total{{grpc_service=\"promotion.v1.S\",grpc_method=\"{method}\",grpc_code=\"{code}\"}}"
        );
        sample(&r.render(&[]), &series).unwrap_or(0.0) as u64
    }

    #[tokio::test]
    async fn calls_count_by_header_status_trailer_status_or_as_cancelled() {
        let r = registry();
        let ok = Answer { header_status: None, trailer_status: Some("0") };
        call(r, "/promotion.v1.S/Get", ok.clone(), true).await;
        call(r, "/promotion.v1.S/Get", ok.clone(), true).await;
        let not_found = Answer { header_status: Some("5"), trailer_status: None };
        call(r, "/promotion.v1.S/Get", not_found, false).await;
        let stream_fails = Answer { header_status: None, trailer_status: Some("14") };
        call(r, "/promotion.v1.S/Watch", stream_fails, true).await;
        call(r, "/promotion.v1.S/Watch", ok, false).await;
        assert_eq!(count(r, "Get", "OK"), 2);
        assert_eq!(count(r, "Get", "NOT_FOUND"), 1);
        assert_eq!(count(r, "Watch", "UNAVAILABLE"), 1);
        assert_eq!(count(r, "Watch", "CANCELLED"), 1, "a body dropped before its trailers");
        let text = r.render(&[]);
        let latency = "grpc_server_handling_seconds_count{grpc_service=\"promotion.v1.S\",grpc_method=\"Get\"}";
        assert_eq!(sample(&text, latency), Some(3.0), "{text}");
    }

    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    }

    #[tokio::test]
    async fn the_admin_port_serves_metrics_and_health_that_follows_serving() {
        let admin = Admin::start(Some(([127, 0, 0, 1], 0).into()), "installation", Arc::new(|| 777)).await.unwrap();
        let port = admin.local_addr().unwrap();
        assert_eq!(get(port, "/healthz").await, (503, "NOT_SERVING\n".into()));
        admin.set_serving(true);
        assert_eq!(get(port, "/healthz").await, (200, "SERVING\n".into()));
        let (status, body) = get(port, "/metrics").await;
        assert_eq!(status, 200);
        assert_eq!(sample(&body, "promotion_store_size_bytes{service=\"installation\"}"), Some(777.0), "{body}");
        assert_eq!(get(port, "/other").await.0, 404);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let shutdown = admin.not_serving_after(async move {
            let _ = rx.await;
        });
        tx.send(()).unwrap();
        shutdown.await;
        assert_eq!(get(port, "/healthz").await.0, 503);
        admin.stop();
    }

    #[tokio::test]
    async fn no_address_means_no_admin_port() {
        let admin = Admin::start(None, "package", Arc::new(|| 0)).await.unwrap();
        assert!(admin.server.is_none() && admin.local_addr().is_none());
        admin.stop();
    }
}
