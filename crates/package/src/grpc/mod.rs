//! gRPC handlers of the package service (validate, convert, call the domain, map errors),
//! and the connection its clients open to installation services.
pub mod auth_service;
pub mod commands;
pub mod convert;
pub mod export_client;
pub mod installation_client;
pub mod package_service;
pub mod status;

use std::sync::Arc;
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Routes;
use tonic::transport::{Channel, Endpoint};

use crate::state::State;
use promotion_api::v1 as pb;

/// Adds PackageService behind the token check.
pub fn add_package_service<I>(routes: Routes, state: Arc<State>, authed: I, limit: usize) -> Routes
where
    I: tonic::service::Interceptor + Clone + Send + Sync + 'static,
{
    routes.add_service(InterceptedService::new(
        pb::package_service_server::PackageServiceServer::new(package_service::PackageApi::new(state))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
        authed,
    ))
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A peer that stops answering pings is given up on, not waited for until the deadline.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// A connection to the installation service at `address` (from the environment
/// directory), or why there is none, naming the address.
pub async fn connect(address: &str) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(address.to_string())
        .map_err(|e| format!("installation service address {address:?} is not valid: {e}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT);
    endpoint.connect().await.map_err(|e| format!("installation service at {address} unreachable: {}", chain(&e)))
}

/// An error and its causes, for messages about transport failures.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// The AuditService both services serve reads this service's own trail.
#[tonic::async_trait]
impl promotion_serving::audit_service::AuditHost for State {
    fn directory(&self) -> &promotion_core::directory::Directory {
        &self.directory
    }

    fn limits(&self) -> &promotion_core::config::Limits {
        &self.config.limits
    }

    fn audit_table(&self) -> &dyn promotion_store::shared::AuditTable {
        self.store.as_ref()
    }

    async fn page_tokens(&self) -> Result<&promotion_core::cursor::PageTokens, promotion_store::StoreError> {
        State::page_tokens(self).await
    }

    async fn audit_denied(&self, caller: &promotion_core::identity::Identity, denial: &promotion_core::AccessError) {
        State::audit_denied(self, caller, denial).await
    }
}
