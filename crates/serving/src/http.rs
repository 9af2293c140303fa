//! The one HTTP/1.1 server (hyper 1) every HTTP port of ours runs: a table of routes, each
//! a method and a path pattern whose `{name}` segments are captured, to a handler. The admin
//! port, the JSON API and the console are each a set of routes on it; adding an endpoint is
//! one `.route(...)` call.
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};

pub type Response = http::Response<Full<Bytes>>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Handler = Arc<dyn Fn(Request) -> BoxFuture<Response> + Send + Sync>;

/// A request as a handler sees it: the body read in full (up to the routes' limit) and the
/// pattern's captured segments.
pub struct Request {
    pub method: Method,
    pub uri: http::Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub params: HashMap<String, String>,
    /// The caller's address, for per-address throttles.
    pub peer: SocketAddr,
}

impl Request {
    /// A captured `{name}` segment of the path (empty when the pattern has none).
    pub fn param(&self, name: &str) -> &str {
        self.params.get(name).map(String::as_str).unwrap_or("")
    }

    /// The query string's pairs, percent-decoded (`+` is a space).
    pub fn query(&self) -> Vec<(String, String)> {
        Self::parse_query(self.uri.query().unwrap_or(""))
    }

    /// `a=1&b=x+y` as pairs, percent-decoded: a query string or a form body.
    pub fn parse_query(query: &str) -> Vec<(String, String)> {
        query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect()
    }

    /// A header's value, when it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Clone)]
enum Segment {
    Literal(String),
    Param(String),
}

#[derive(Clone)]
struct Route {
    method: Method,
    segments: Vec<Segment>,
    handler: Handler,
}

/// The routes of one HTTP port.
#[derive(Clone)]
pub struct Routes {
    routes: Vec<Route>,
    fallback: Handler,
    max_body_bytes: usize,
}

impl Default for Routes {
    fn default() -> Self {
        Routes {
            routes: vec![],
            fallback: Arc::new(|_| Box::pin(async { text(StatusCode::NOT_FOUND, "not found\n") })),
            max_body_bytes: 4 * 1024 * 1024,
        }
    }
}

impl Routes {
    /// Adds `handler` for `method` on `pattern` (`/packages/{id}/installations`).
    pub fn route<F, Fut>(mut self, method: Method, pattern: &str, handler: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        let segments = split(pattern)
            .map(|s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => Segment::Param(name.to_string()),
                None => Segment::Literal(s.to_string()),
            })
            .collect();
        self.routes.push(Route { method, segments, handler: Arc::new(move |req| Box::pin(handler(req))) });
        self
    }

    /// What answers a path no route has (404 text by default).
    pub fn fallback<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        self.fallback = Arc::new(move |req| Box::pin(handler(req)));
        self
    }

    /// The largest request body read; a larger one is answered 413.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// `other`'s routes added to these (these win where both have one).
    pub fn merge(mut self, other: Routes) -> Self {
        self.routes.extend(other.routes);
        self
    }

    /// The handler for `method` and `path` with its captures; `Err(allowed methods)` when
    /// the path matches only under other methods, `Err(empty)` when it matches nothing.
    fn find(&self, method: &Method, path: &str) -> Result<(Handler, HashMap<String, String>), Vec<Method>> {
        let parts: Vec<&str> = split(path).collect();
        let mut allowed = vec![];
        for route in &self.routes {
            let Some(params) = capture(&route.segments, &parts) else { continue };
            // HEAD is GET without the body, which hyper drops for us.
            if route.method == method || (method == Method::HEAD && route.method == Method::GET) {
                return Ok((route.handler.clone(), params));
            }
            allowed.push(route.method.clone());
        }
        Err(allowed)
    }

    async fn respond(&self, req: http::Request<hyper::body::Incoming>, peer: SocketAddr) -> Response {
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, self.max_body_bytes).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                let message = format!("the request body is larger than {} bytes\n", self.max_body_bytes);
                return text(StatusCode::PAYLOAD_TOO_LARGE, &message);
            }
            Err(_) => return text(StatusCode::BAD_REQUEST, "the request body could not be read\n"),
        };
        let found = self.find(&parts.method, parts.uri.path());
        let mut request = Request {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            body,
            params: HashMap::new(),
            peer,
        };
        match found {
            Ok((handler, params)) => {
                request.params = params;
                handler(request).await
            }
            Err(allowed) if !allowed.is_empty() => {
                let mut response = (self.fallback)(request).await;
                *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
                let allow = allowed.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
                if let Ok(value) = http::HeaderValue::from_str(&allow) {
                    response.headers_mut().insert(http::header::ALLOW, value);
                }
                response
            }
            Err(_) => (self.fallback)(request).await,
        }
    }
}

fn split(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

fn capture(segments: &[Segment], parts: &[&str]) -> Option<HashMap<String, String>> {
    if segments.len() != parts.len() {
        return None;
    }
    let mut params = HashMap::new();
    for (segment, part) in segments.iter().zip(parts) {
        match segment {
            Segment::Literal(l) if l == part => {}
            Segment::Literal(_) => return None,
            Segment::Param(name) => {
                params.insert(name.clone(), percent_decode(part));
            }
        }
    }
    Some(params)
}

/// A plain-text response.
pub fn text(status: StatusCode, body: &str) -> Response {
    with_type(status, Bytes::copy_from_slice(body.as_bytes()), "text/plain; charset=utf-8")
}

/// A response with `body` of `content_type`.
pub fn with_type(status: StatusCode, body: Bytes, content_type: &'static str) -> Response {
    let mut response = http::Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    response
}

/// An HTTP port serving a set of routes until stopped.
pub struct HttpServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    /// Binds `addr` and serves `routes` on it; `what` names the port in logs and errors.
    pub async fn start(addr: SocketAddr, what: &'static str, routes: Routes) -> Result<HttpServer, std::io::Error> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("{what} {addr}: {e}")))?;
        Ok(Self::serve(listener, routes))
    }

    /// Serves `routes` on an already bound listener.
    pub fn serve(listener: tokio::net::TcpListener, routes: Routes) -> HttpServer {
        let addr = listener.local_addr().expect("a bound listener has an address");
        let task = tokio::spawn(accept(listener, Arc::new(routes)));
        HttpServer { addr, task }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections.
    pub fn stop(self) {
        self.task.abort();
    }
}

async fn accept(listener: tokio::net::TcpListener, routes: Arc<Routes>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off rather than spin.
                tracing::warn!(error = %e, "HTTP listener cannot accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let routes = routes.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let routes = routes.clone();
                async move { Ok::<_, std::convert::Infallible>(routes.respond(req, peer).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Routes {
        Routes::default()
            .route(Method::GET, "/packages", |_| async { text(StatusCode::OK, "list") })
            .route(Method::GET, "/packages/{id}", |r| async move { text(StatusCode::OK, r.param("id")) })
            .route(Method::DELETE, "/packages/{id}", |_| async { text(StatusCode::OK, "deleted") })
    }

    #[test]
    fn patterns_capture_segments_and_report_other_methods() {
        let routes = routes();
        let (_, params) = routes.find(&Method::GET, "/packages/a%20b/").ok().unwrap();
        assert_eq!(params["id"], "a b");
        assert!(routes.find(&Method::HEAD, "/packages").is_ok(), "HEAD is GET");
        assert_eq!(routes.find(&Method::POST, "/packages/x").err().unwrap(), vec![Method::GET, Method::DELETE]);
        assert!(routes.find(&Method::GET, "/packages/x/y").err().unwrap().is_empty());
    }

    #[test]
    fn percent_decoding_keeps_what_is_not_an_escape() {
        assert_eq!(percent_decode("a%2Fb+c"), "a/b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
