//! gRPC handlers of the package service: validate, convert, call the domain, map errors.
pub mod auth_service;
pub mod commands;
pub mod convert;
pub mod export_client;
pub mod package_service;
pub mod status;

use std::sync::Arc;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Routes;

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
