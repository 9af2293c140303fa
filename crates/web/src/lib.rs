//! The HTTP front door of the services: seed 001's JSON API under
//! `/environment-promotion/v1/` (`api`) and the console at `/` (`console`), served on the HTTP server every port of ours runs
//! (`promotion_serving::http`). It holds no rule of its own: each endpoint calls one RPC
//! through the gRPC server's own layers and handlers (`call`), converts JSON in the seed's
//! shape to and from the messages (`transcode`), and answers errors through one map
//! (`error`).
pub mod api;
mod call;
pub mod console;
pub mod error;
pub mod transcode;

use std::net::SocketAddr;

use promotion_serving::http::{HttpServer, Request, Routes};

pub use api::Upstreams;

/// Every route of the HTTP port: the API for the services `upstreams` reaches, the
/// console, and a JSON 404 for anything else. A further route (a JWKS document) is one
/// more `.route` or `.merge` here.
pub fn routes(upstreams: &Upstreams, max_message_bytes: usize) -> Routes {
    api::routes(upstreams, max_message_bytes).merge(console::routes()).fallback(|req: Request| async move {
        let hint = format!("the JSON API is under {}/", api::PREFIX);
        error::no_endpoint(&format!("{} {}", req.method, req.uri.path()), &hint)
    })
}

/// Serves [`routes`] on `addr` (`what` names the address in logs and errors).
pub async fn start(
    addr: SocketAddr,
    what: &'static str,
    upstreams: &Upstreams,
    max_message_bytes: usize,
) -> Result<HttpServer, std::io::Error> {
    let server = HttpServer::start(addr, what, routes(upstreams, max_message_bytes)).await?;
    tracing::info!(addr = %server.local_addr(), "HTTP serving the console at / and the JSON API under {}/", api::PREFIX);
    Ok(server)
}
