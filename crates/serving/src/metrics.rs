//! Prometheus metrics of a service process and the admin HTTP port that serves them:
//! gRPC calls by RPC and status code with latency histograms (a tower layer on the tonic
//! server), extraction and installation durations and sizes (recorded by the domain in
//! `promotion_core::metrics`), the store's size on disk, and `GET /healthz`.
//!
//! The exposition (OpenMetrics text) is `prometheus-client`'s; the registry is one per
//! process, so in development mode, where both services share a process, it holds both.
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
use http_body_util::Full;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry as Exposition;
use tonic::Code;
use tower_layer::Layer;
use tower_service::Service;

/// Upper bounds (seconds) of the per-RPC latency histogram.
const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Distinct (service, method) label pairs kept; calls to further paths (a client probing
/// made-up methods) are counted under `other` so the exposition cannot grow without bound.
const MAX_RPCS: usize = 256;

/// The process-wide registry the server layer writes to.
static GLOBAL: LazyLock<Registry> = LazyLock::new(Registry::default);

/// A tonic server builder with [`layer`] applied, and the router it builds.
pub type MeteredServer = tonic::transport::Server<tower_layer::Stack<GrpcMetricsLayer, tower_layer::Identity>>;
pub type MeteredRouter = tonic::transport::server::Router<tower_layer::Stack<GrpcMetricsLayer, tower_layer::Identity>>;

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
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Body + Unpin + Send + 'static,
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
        let mut call = Call { registry: self.registry, uri, start: Instant::now(), span: None };
        let response = self.inner.call(req);
        Box::pin(async move {
            // Polled inside the server's per-call span (request id, method): keep it for the
            // access log line, which is written when the body ends, outside the span.
            if tracing::enabled!(tracing::Level::DEBUG) {
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
    /// The call's log span, when debug logging is on.
    span: Option<tracing::Span>,
}

impl Call {
    fn finish(&mut self, code: Code) {
        if let Some(uri) = self.uri.take() {
            let elapsed = self.start.elapsed();
            self.registry.observe_call(uri.path(), code, elapsed);
            if let Some(span) = &self.span {
                let seconds = elapsed.as_secs_f64();
                span.in_scope(|| tracing::debug!(code = code_name(code), seconds, "call finished"));
            }
        }
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

impl<B: Body + Unpin> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
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
    addr: Option<SocketAddr>,
    task: Option<tokio::task::JoinHandle<()>>,
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
            return Ok(Admin { serving, addr: None, task: None });
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("admin_listen {addr}: {e}")))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "admin HTTP serving /metrics and /healthz");
        let routes = AdminRoutes { service, store_size, serving: serving.clone() };
        let task = tokio::spawn(accept(listener, routes));
        Ok(Admin { serving, addr: Some(addr), task: Some(task) })
    }

    /// Where the admin port listens, if it does.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.addr
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
    pub fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[derive(Clone)]
struct AdminRoutes {
    service: &'static str,
    store_size: StoreSizeFn,
    serving: Arc<AtomicBool>,
}

async fn accept(listener: tokio::net::TcpListener, routes: AdminRoutes) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: back off rather than spin.
                tracing::warn!(error = %e, "admin listener cannot accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let routes = routes.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let routes = routes.clone();
                async move { Ok::<_, std::convert::Infallible>(routes.respond(req).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
        });
    }
}

impl AdminRoutes {
    async fn respond<B>(&self, req: http::Request<B>) -> http::Response<Full<Bytes>> {
        let path = req.uri().path();
        if path != "/metrics" && path != "/healthz" {
            return plain(
                http::StatusCode::NOT_FOUND,
                "not found: the admin port serves /metrics and /healthz\n".into(),
            );
        }
        if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
            return plain(http::StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
        }
        if path == "/healthz" {
            return match self.serving.load(Ordering::SeqCst) {
                true => plain(http::StatusCode::OK, "SERVING\n".into()),
                false => plain(http::StatusCode::SERVICE_UNAVAILABLE, "NOT_SERVING\n".into()),
            };
        }
        let read = self.store_size.clone();
        // Reading the size lists the store's files: keep it off the async workers.
        let bytes = tokio::task::spawn_blocking(move || read()).await.unwrap_or(0);
        let text = render(&[StoreSize { service: self.service, bytes }]);
        let mut response = plain(http::StatusCode::OK, text);
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        response
    }
}

fn plain(status: http::StatusCode, text: String) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
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

    impl Service<http::Request<()>> for Answer {
        type Response = http::Response<http_body_util::StreamBody<BoxStream>>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
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
        assert!(admin.task.is_none() && admin.local_addr().is_none());
        admin.stop();
    }
}
