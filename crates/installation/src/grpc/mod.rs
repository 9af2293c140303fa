//! gRPC handlers of the installation service: validate, convert, call the domain, map
//! errors. Nothing here decides what a call means.
pub mod commands;
pub mod convert;
pub mod environment_service;
pub mod installation_service;
pub mod notification_service;
pub mod package_client;
pub mod promotion_service;
pub mod status;

use std::sync::Arc;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Routes;

use crate::environments::EnvError;
use crate::state::State;
use promotion_api::status::{bad_field, page};
use promotion_api::v1 as pb;
use promotion_core::cursor::{PageRequest, Position, Scope};
use tonic::Status;

/// Adds InstallationService and PromotionService behind the token check.
pub fn add_installation_services<I>(routes: Routes, state: Arc<State>, authed: I, limit: usize) -> Routes
where
    I: tonic::service::Interceptor + Clone + Send + Sync + 'static,
{
    routes
        .add_service(InterceptedService::new(
            pb::installation_service_server::InstallationServiceServer::new(
                installation_service::InstallationApi::new(state.clone()),
            )
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
            authed.clone(),
        ))
        .add_service(InterceptedService::new(
            pb::promotion_service_server::PromotionServiceServer::new(promotion_service::PromotionApi::new(
                state.clone(),
            ))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
            authed.clone(),
        ))
        .add_service(InterceptedService::new(
            pb::notification_service_server::NotificationServiceServer::new(
                notification_service::NotificationApi::new(state),
            )
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
            authed,
        ))
}

/// A required UUID field (package, pre-run, installation, promotion request ids).
pub fn require_uuid(field: &str, id: &str) -> Result<(), Status> {
    if id.is_empty() {
        return Err(bad_field("MISSING_FIELD", field, format!("{field} is required")));
    }
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(bad_field("INVALID_ID", field, format!("{field} {id:?} is not a UUID")));
    }
    Ok(())
}

/// An optional `request_id`: empty, or a UUID.
pub fn check_request_id(id: &str) -> Result<(), Status> {
    if !id.is_empty() && uuid::Uuid::parse_str(id).is_err() {
        return Err(bad_field("INVALID_REQUEST_ID", "request_id", "request_id must be a UUID"));
    }
    Ok(())
}

/// A list call's page request, its token checked against `scope`.
pub async fn page_request(state: &State, scope: &Scope, size: i32, token: &str) -> Result<PageRequest, Status> {
    let tokens = state.page_tokens().await.map_err(EnvError::from)?;
    let l = &state.config.limits;
    PageRequest::parse(tokens, scope, size, token, l.default_page_size, l.max_page_size).map_err(page)
}

/// The token of the page after `next` in `scope` (empty at the end).
pub async fn next_page_token(state: &State, scope: &Scope, next: Option<&Position>) -> Result<String, Status> {
    Ok(state.page_tokens().await.map_err(EnvError::from)?.token(scope, next))
}

/// A listing's store failure; a position a verified token carried that the store cannot
/// resume from (it holds other data now) is the caller's stale token, not a failure.
pub fn list_failure(e: promotion_store::StoreError, page_request: &PageRequest) -> Status {
    if e.kind == promotion_store::StoreErrorKind::Corrupt && page_request.after.is_some() {
        page(promotion_core::cursor::PageError::BadToken)
    } else {
        EnvError::from(e).into()
    }
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
