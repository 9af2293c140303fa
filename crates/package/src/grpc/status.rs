//! The package service's one error map: every `PackageError` as a status with ErrorInfo.
use tonic::{Code, Status};

use crate::error::PackageError;
use promotion_api::status::{access, status, store_failure, upstream};
use promotion_core::AccessError;

fn status_name(s: promotion_core::package::Status) -> String {
    super::convert::status_to_proto(s).as_str_name().to_string()
}

impl From<PackageError> for Status {
    fn from(e: PackageError) -> Status {
        let message = e.to_string();
        match e {
            PackageError::Invalid { reason, field, .. } => {
                status(Code::InvalidArgument, reason, message, [("field", field)])
            }
            PackageError::NotFound(id) => status(Code::NotFound, "PACKAGE_NOT_FOUND", message, [("package_id", id)]),
            PackageError::VersionNotFound { id, version } => status(
                Code::NotFound,
                "VERSION_NOT_FOUND",
                message,
                [("package_id", id), ("version", version.to_string())],
            ),
            PackageError::EnvironmentNotFound(id) => access(AccessError::EnvironmentNotFound(id)),
            PackageError::InstallationNotFound { installation_id, destination } => status(
                Code::NotFound,
                "INSTALLATION_NOT_FOUND",
                message,
                [("installation_id", installation_id), ("destination_environment", destination)],
            ),
            PackageError::Upstream(e) => upstream(e),
            PackageError::PermissionDenied { permission, environment } => {
                access(AccessError::PermissionDenied { permission, environment })
            }
            PackageError::DefinitionNotReady { id, status: s } => status(
                Code::FailedPrecondition,
                "DEFINITION_NOT_READY",
                message,
                [("package_id", id), ("status", status_name(s))],
            ),
            PackageError::InvalidTransition { from, to } => status(
                Code::FailedPrecondition,
                "INVALID_STATUS_TRANSITION",
                message,
                [("from", status_name(from)), ("to", status_name(to))],
            ),
            PackageError::NotEditable { id, status: s } => status(
                Code::FailedPrecondition,
                "PACKAGE_NOT_EDITABLE",
                message,
                [("package_id", id), ("status", status_name(s))],
            ),
            PackageError::EtagMismatch { id, .. } => {
                status(Code::Aborted, "ETAG_MISMATCH", message, [("package_id", id)])
            }
            PackageError::TooLarge { limit, field, .. } => status(
                Code::ResourceExhausted,
                "LIMIT_EXCEEDED",
                message,
                [("field", field), ("limit", limit.to_string())],
            ),
            PackageError::Store(e) => store_failure(e.is_unavailable(), &e.message),
        }
    }
}
