//! The package area's errors: what went wrong, in the domain's terms. The gRPC layer
//! maps each to a status in one place (`grpc::status`).
use promotion_core::identity::Permission;
use promotion_core::package::Status;
use promotion_core::upstream::UpstreamError;
use promotion_core::AccessError;
use promotion_store::StoreError;

#[derive(Debug)]
pub enum PackageError {
    Invalid {
        reason: &'static str,
        field: String,
        message: String,
    },
    NotFound(String),
    VersionNotFound {
        id: String,
        version: i64,
    },
    EnvironmentNotFound(String),
    /// A RecordInstallation report the installation service hosting its destination
    /// does not confirm.
    InstallationNotFound {
        installation_id: String,
        destination: String,
    },
    /// An installation service answered with an error, or did not answer.
    Upstream(UpstreamError),
    PermissionDenied {
        permission: Permission,
        environment: String,
    },
    DefinitionNotReady {
        id: String,
        status: Status,
    },
    InvalidTransition {
        from: Status,
        to: Status,
    },
    NotEditable {
        id: String,
        status: Status,
    },
    EtagMismatch {
        id: String,
        given: String,
    },
    /// Over a documented limit, which `limit` names.
    TooLarge {
        limit: &'static str,
        field: String,
        message: String,
    },
    Store(StoreError),
}

impl From<StoreError> for PackageError {
    fn from(e: StoreError) -> Self {
        PackageError::Store(e)
    }
}

impl From<AccessError> for PackageError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::EnvironmentNotFound(id) => PackageError::EnvironmentNotFound(id),
            AccessError::PermissionDenied { permission, environment } => {
                PackageError::PermissionDenied { permission, environment }
            }
        }
    }
}

impl std::fmt::Display for PackageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PackageError::Invalid { message, .. } | PackageError::TooLarge { message, .. } => f.write_str(message),
            PackageError::NotFound(id) => write!(f, "package {id:?} not found"),
            PackageError::VersionNotFound { id, version } => write!(f, "package {id} has no version {version}"),
            PackageError::EnvironmentNotFound(id) => write!(f, "environment {id:?} not found"),
            PackageError::InstallationNotFound { installation_id, destination } => write!(
                f,
                "the installation service hosting {destination} holds no completed installation {installation_id} \
                 of this package version; nothing was counted"
            ),
            PackageError::Upstream(e) => write!(f, "{e}"),
            PackageError::PermissionDenied { permission, environment } => {
                write!(f, "the caller lacks {} on environment {environment}", permission.as_str())
            }
            PackageError::DefinitionNotReady { id, status } => {
                write!(f, "package {id} has no definition yet (status {})", status.as_str())
            }
            PackageError::InvalidTransition { from, to } => {
                write!(f, "a package cannot go from {} to {}", from.as_str(), to.as_str())
            }
            PackageError::NotEditable { id, status } => write!(
                f,
                "the definition of package {id} can only change in BUILDING or EXTRACTION_FAILED, not {}",
                status.as_str()
            ),
            PackageError::EtagMismatch { id, given } => {
                write!(f, "etag {given:?} is stale: package {id} changed since it was read")
            }
            PackageError::Store(e) => write!(f, "{e}"),
        }
    }
}

pub fn invalid(reason: &'static str, field: impl Into<String>, message: impl Into<String>) -> PackageError {
    PackageError::Invalid { reason, field: field.into(), message: message.into() }
}

pub type Result<T> = std::result::Result<T, PackageError>;
