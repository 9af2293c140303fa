//! gRPC handlers of the package service: validate, convert, call the domain, map errors.
pub mod auth_service;
pub mod package_service;

use std::sync::Arc;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::Router;

use super::state::State;
use crate::proto::v1 as pb;

/// Adds PackageService behind the token check.
pub fn add_package_service<I, L>(router: Router<L>, state: Arc<State>, authed: I, limit: usize) -> Router<L>
where
    I: tonic::service::Interceptor + Clone + Send + Sync + 'static,
{
    router.add_service(InterceptedService::new(
        pb::package_service_server::PackageServiceServer::new(package_service::PackageApi::new(state))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
        authed,
    ))
}
