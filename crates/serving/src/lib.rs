//! Plumbing every gRPC server here shares: token verification and the caller's identity,
//! health and reflection, logging, metrics and the admin port, the AuditService both
//! services serve, shutdown on SIGINT/SIGTERM, the HTTP server every HTTP port runs, and
//! a server's gRPC services called in process (what the HTTP front doors call).
pub mod audit_service;
pub mod http;
pub mod limits;
pub mod memory;
pub mod metrics;
pub mod plain_http;
pub mod trace;

use std::sync::Arc;
use tonic::{metadata::MetadataMap, Code, Request, Status};

use promotion_api::status::status;
use promotion_core::config::LogFormat;
use promotion_core::identity::{Credentials, Identity};
use promotion_core::tokens::{TokenError, TokenSigner};
use promotion_core::trace::TraceContext;

/// Verifies the bearer token in `metadata`.
pub fn authenticate(signer: &TokenSigner, metadata: &MetadataMap) -> Result<Identity, Status> {
    let Some(header) = metadata.get("authorization") else {
        return Err(status(
            Code::Unauthenticated,
            "TOKEN_MISSING",
            "missing bearer token: send `authorization: Bearer <token>` (AuthService/IssueToken issues one)",
            [],
        ));
    };
    let token =
        header.to_str().ok().and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer "))).ok_or_else(
            || status(Code::Unauthenticated, "TOKEN_MALFORMED", "the authorization header is not `Bearer <token>`", []),
        )?;
    signer
        .verify(token.trim(), chrono::Utc::now())
        .map_err(|e: TokenError| status(Code::Unauthenticated, e.reason(), e.to_string(), []))
}

/// A tonic interceptor that rejects calls without a valid token and hands the caller's
/// identity to the handler through the request extensions.
pub fn auth_interceptor(signer: Arc<TokenSigner>) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut req: Request<()>| {
        let identity = authenticate(&signer, req.metadata())?;
        req.extensions_mut().insert(identity);
        Ok(req)
    }
}

/// The caller's identity, put there by [`auth_interceptor`].
pub fn caller<T>(req: &Request<T>) -> Result<Identity, Status> {
    req.extensions()
        .get::<Identity>()
        .cloned()
        .ok_or_else(|| status(Code::Unauthenticated, "TOKEN_MISSING", "missing bearer token", []))
}

/// The caller's bearer token and the call's trace (put there by [`trace::TraceLayer`]),
/// forwarded when this service calls the other on the caller's behalf.
pub fn credentials<T>(req: &Request<T>) -> Result<Credentials, Status> {
    let credentials = req
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(|t| Credentials::bearer(t.trim()))
        .ok_or_else(|| status(Code::Unauthenticated, "TOKEN_MISSING", "missing bearer token", []))?;
    Ok(match req.extensions().get::<TraceContext>() {
        Some(trace) => credentials.in_trace(trace.clone()),
        None => credentials,
    })
}

/// Puts `credentials` on a call made on the caller's behalf: the bearer token and, when
/// the call is part of a trace, its `traceparent`. Err when the token cannot be sent as a
/// header.
pub fn forward(metadata: &mut MetadataMap, credentials: &Credentials) -> Result<(), InvalidToken> {
    let token = format!("Bearer {}", credentials.token()).parse().map_err(|_| InvalidToken)?;
    metadata.insert("authorization", token);
    if let Some(trace) = credentials.trace() {
        let header = trace.traceparent().parse().expect("a traceparent is ASCII hex and dashes");
        metadata.insert("traceparent", header);
    }
    Ok(())
}

/// A token that cannot travel in a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidToken;

/// Reflection v1 and v1alpha (grpcurl 1.8 speaks only v1alpha), advertising exactly the
/// services this server serves, with our contracts, the health service's and the
/// google.rpc error details (so grpcurl can print ErrorInfo).
pub fn reflection(
    services: &[&str],
) -> (
    tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>,
    tonic_reflection::server::v1alpha::ServerReflectionServer<impl tonic_reflection::server::v1alpha::ServerReflection>,
) {
    let builder = || {
        let mut b = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(promotion_api::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health");
        for s in services {
            b = b.with_service_name(*s);
        }
        b
    };
    let v1 = builder().build_v1().expect("the descriptor sets are valid");
    let v1alpha = builder().build_v1alpha().expect("the descriptor sets are valid");
    (v1, v1alpha)
}

/// Installs the global tracing subscriber once (text or JSON), filtered by RUST_LOG. Text
/// is coloured only on a terminal (and without NO_COLOR): journald, `docker logs` and
/// files get no escape codes.
pub fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sled=warn,h2=warn,tower=warn,hyper=warn"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    let _ = match format {
        LogFormat::Json => {
            let json = tracing_subscriber::fmt::format().json().flatten_event(true);
            builder.json().event_format(ArraysAsArrays(json)).try_init()
        }
        LogFormat::Text => builder.try_init(),
    };
}

/// JSON lines whose list-valued fields are JSON arrays: tracing hands a `?list` field to the
/// formatter as its Debug text, which the JSON formatter would write as one string.
struct ArraysAsArrays<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for ArraysAsArrays<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.0.format_event(ctx, tracing_subscriber::fmt::format::Writer::new(&mut line), event)?;
        writer.write_str(&arrays_as_arrays(line))
    }
}

/// Rewrites the string fields of a JSON log line that hold a list's Debug text (`["dev",
/// "qa"]`, which is valid JSON) as the array itself; any other line is left as it is.
fn arrays_as_arrays(line: String) -> String {
    use serde_json::Value;
    fn fix(object: &mut serde_json::Map<String, Value>) -> bool {
        let mut changed = false;
        for (key, value) in object.iter_mut() {
            match value {
                Value::String(text) if key != "message" && text.starts_with('[') && text.ends_with(']') => {
                    if let Ok(array @ Value::Array(_)) = serde_json::from_str(text) {
                        *value = array;
                        changed = true;
                    }
                }
                Value::Object(inner) => changed |= fix(inner),
                _ => {}
            }
        }
        changed
    }
    // Most lines have no list: they keep their bytes (and their field order).
    if !line.contains("\"[") {
        return line;
    }
    let Ok(Value::Object(mut object)) = serde_json::from_str::<Value>(&line) else {
        return line;
    };
    if !fix(&mut object) {
        return line;
    }
    let mut fixed = Value::Object(object).to_string();
    fixed.push('\n');
    fixed
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown signal received; draining calls");
}

/// A log span per call carrying the method, the caller's request id (or a new one) and
/// the call's W3C trace id and span id.
pub fn request_span<B>(req: &::http::Request<B>, trace: &TraceContext) -> tracing::Span {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    tracing::info_span!(
        "rpc",
        method = %req.uri().path(),
        request_id = %request_id,
        trace_id = %trace.trace_id(),
        span_id = %trace.span_id()
    )
}

/// Health of a server's services: NOT_SERVING until [`Health::serving`] and again from
/// the moment shutdown starts.
#[derive(Clone)]
pub struct Health {
    reporter: tonic_health::server::HealthReporter,
    names: Vec<&'static str>,
}

impl Health {
    pub async fn new(
        names: Vec<&'static str>,
    ) -> (Health, tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>) {
        let (reporter, service) = tonic_health::server::health_reporter();
        let health = Health { reporter, names };
        health.set(tonic_health::ServingStatus::NotServing).await;
        (health, service)
    }

    async fn set(&self, status: tonic_health::ServingStatus) {
        self.reporter.set_service_status("", status).await;
        for name in &self.names {
            self.reporter.set_service_status(*name, status).await;
        }
    }

    pub async fn serving(&self) {
        self.set(tonic_health::ServingStatus::Serving).await;
    }

    pub async fn not_serving(&self) {
        self.set(tonic_health::ServingStatus::NotServing).await;
    }
}

/// A tonic server with this crate's layers (trace and log span outermost, then metrics),
/// and the router it builds.
pub type Server = tonic::transport::Server<Layers>;
pub type Router = tonic::transport::server::Router<Layers>;
/// Trace outermost, then metrics, then the transport limits (so metrics count what the
/// limits answer).
/// Innermost, plain HTTP/1.1 requests are answered in words.
type Layers = tower_layer::Stack<
    plain_http::PlainHttpLayer,
    tower_layer::Stack<
        limits::LimitsLayer,
        tower_layer::Stack<metrics::GrpcMetricsLayer, tower_layer::Stack<trace::TraceLayer, tower_layer::Identity>>,
    >,
>;

/// A server builder with the settings every service here uses: every call runs in its log
/// span, continuing the caller's trace, and is counted in the process's metrics.
pub fn server_builder() -> Server {
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .tcp_nodelay(true)
        .http2_max_header_list_size(limits::TRANSPORT_HEADER_BYTES)
        // So that curl or a browser at this port is told where it is (`plain_http`).
        .accept_http1(true)
        .layer(trace::TraceLayer)
        .layer(metrics::layer())
        .layer(limits::LimitsLayer)
        .layer(plain_http::PlainHttpLayer)
}

/// A gRPC server's services as a client calls them: in process ([`in_process`]) or over a
/// connection ([`remote`]). The HTTP front doors call every RPC through one of these.
pub type GrpcHandle = tower::util::BoxCloneSyncService<
    ::http::Request<tonic::body::Body>,
    ::http::Response<tonic::body::Body>,
    TransportError,
>;

/// Why a call through a [`GrpcHandle`] never reached the server (its connection failed).
/// A concrete type, not a boxed error: futures holding boxed trait objects trip the
/// compiler's Send checks in generic client code.
#[derive(Debug)]
pub struct TransportError(pub String);

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TransportError {}

/// `routes` behind the same layers [`server_builder`] puts in front of them (trace and log
/// span, metrics and the access log, transport limits), called without a socket: a call
/// through it is a gRPC call in every respect but the connection.
pub fn in_process(routes: tonic::service::Routes) -> GrpcHandle {
    use tower::ServiceExt;
    use tower_layer::Layer;
    let layered = trace::TraceLayer.layer(metrics::layer().layer(limits::LimitsLayer.layer(routes.prepare())));
    let boxed = |r: ::http::Response<metrics::MeteredBody<tonic::body::Body>>| r.map(tonic::body::Body::new);
    let service = ServiceExt::<::http::Request<tonic::body::Body>>::map_response(layered, boxed);
    let service = ServiceExt::<::http::Request<tonic::body::Body>>::map_err(service, |e| match e {});
    GrpcHandle::new(service)
}

/// The gRPC services at `address` (`http://host:port`), connected on first use.
pub fn remote(address: &str) -> Result<GrpcHandle, tonic::transport::Error> {
    use tower::ServiceExt;
    let channel = tonic::transport::Endpoint::from_shared(address.to_string())?.connect_lazy();
    Ok(GrpcHandle::new(channel.map_err(|e| TransportError(e.to_string()))))
}

/// Serves `router` on `listener` until `shutdown` resolves, then reports NOT_SERVING and
/// drains in-flight calls.
pub async fn serve(
    router: Router,
    listener: tokio::net::TcpListener,
    health: Health,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    // Our own listener (bound before the store opens) loses the builder's socket options:
    // without TCP_NODELAY every small response waits out Nagle + delayed ACK (~40 ms).
    let incoming = tonic::transport::server::TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(std::time::Duration::from_secs(60)));
    memory::spawn_trimmer();
    let (draining, drain_started) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        health.not_serving().await;
        let _ = draining.send(());
    };
    let server = router.serve_with_incoming_shutdown(incoming, signal);
    tokio::pin!(server);
    // A client that never lets its connection go must not hold shutdown hostage.
    let grace_over = async move {
        if drain_started.await.is_ok() {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = &mut server => result,
        _ = grace_over => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "calls still open after the shutdown grace period; closing them");
            Ok(())
        }
    }
}

/// How long shutdown waits for in-flight calls and open connections to finish.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

#[cfg(test)]
mod tests {
    #[test]
    fn list_fields_of_json_log_lines_are_arrays() {
        let line = r#"{"level":"INFO","message":"[not] a list","environments":"[\"dev\", \"qa\"]","n":"[x"}"#;
        let fixed: serde_json::Value = serde_json::from_str(&super::arrays_as_arrays(line.into())).unwrap();
        assert_eq!(fixed["environments"], serde_json::json!(["dev", "qa"]));
        assert_eq!(fixed["message"], "[not] a list");
        assert_eq!(fixed["n"], "[x");
        assert_eq!(super::arrays_as_arrays("not json\n".into()), "not json\n");
    }
}
