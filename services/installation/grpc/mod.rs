//! gRPC handlers of the installation service: validate, convert, call the domain, map
//! errors. Nothing here decides what a call means.
pub mod environment_service;
pub mod installation_service;
pub mod promotion_service;

use std::sync::Arc;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::Router;

use super::state::State;
use crate::proto::v1 as pb;

/// Adds InstallationService and PromotionService behind the token check.
pub fn add_installation_services<I, L>(router: Router<L>, state: Arc<State>, authed: I, limit: usize) -> Router<L>
where
    I: tonic::service::Interceptor + Clone + Send + Sync + 'static,
{
    router
        .add_service(InterceptedService::new(
            pb::installation_service_server::InstallationServiceServer::new(
                installation_service::InstallationApi::new(state.clone()),
            )
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
            authed.clone(),
        ))
        .add_service(InterceptedService::new(
            pb::promotion_service_server::PromotionServiceServer::new(promotion_service::PromotionApi::new(state))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
            authed,
        ))
}

use tonic::{Code, Status};

use super::environments::{self, EnvError};
use crate::shared::errors::status;
use crate::shared::pagination::PageError;

impl From<EnvError> for Status {
    fn from(e: EnvError) -> Status {
        let message = e.to_string();
        match e {
            EnvError::EnvironmentNotFound(id) => {
                status(Code::NotFound, "ENVIRONMENT_NOT_FOUND", message, [("environment", id)])
            }
            EnvError::ObjectNotFound(k) => {
                status(Code::NotFound, "OBJECT_NOT_FOUND", message, [("obj_code", k.obj_code), ("id", k.id)])
            }
            EnvError::Invalid { reason, field, .. } => {
                status(Code::InvalidArgument, reason, message, [("field", field)])
            }
            EnvError::Conflict { reason: environments::REVISION_MISMATCH, objects, .. } => {
                status(Code::Aborted, environments::REVISION_MISMATCH, message, [("objects", objects.join(","))])
            }
            EnvError::Conflict { reason, objects, .. } => {
                status(Code::FailedPrecondition, reason, message, [("objects", objects.join(","))])
            }
            EnvError::TooLarge { field, .. } => {
                status(Code::ResourceExhausted, "LIMIT_EXCEEDED", message, [("field", field)])
            }
            EnvError::Store(e) => {
                tracing::error!(error = %e, "store failure");
                status(Code::Internal, "STORE_FAILURE", "the store failed; nothing was acknowledged", [])
            }
        }
    }
}

/// INVALID_ARGUMENT for a bad page size or token.
pub fn page_error(e: PageError) -> Status {
    match e {
        PageError::NegativeSize => status(
            Code::InvalidArgument,
            "INVALID_PAGE_SIZE",
            "page_size must not be negative",
            [("field", "page_size".into())],
        ),
        PageError::BadToken => status(
            Code::InvalidArgument,
            "INVALID_PAGE_TOKEN",
            "page_token was not returned by this call",
            [("field", "page_token".into())],
        ),
    }
}

/// INVALID_ARGUMENT naming a missing or malformed request field.
pub fn bad_field(reason: &'static str, field: &str, message: impl Into<String>) -> Status {
    status(Code::InvalidArgument, reason, message, [("field", field.to_string())])
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

/// The caller's bearer token, forwarded when this service calls the package service on
/// the caller's behalf.
pub fn forwarded_token<T>(
    req: &tonic::Request<T>,
) -> Result<tonic::metadata::MetadataValue<tonic::metadata::Ascii>, Status> {
    crate::shared::serving::bearer(req.metadata()).ok_or_else(|| Status::unauthenticated("missing bearer token"))
}
