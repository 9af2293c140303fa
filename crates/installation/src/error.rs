//! The installation area's errors (pre-runs, installations, rollbacks), in the domain's
//! terms; `grpc::status` maps each to a status in one place.
use promotion_core::config::EnvironmentKind;
use promotion_core::upstream::UpstreamError;
use promotion_core::AccessError;
use promotion_store::StoreError;

use crate::refusal::Refusal;

#[derive(Debug)]
pub enum InstallError {
    Refused(Refusal),
    /// The package service answered with an error, or is unavailable.
    Upstream(UpstreamError),
    Invalid {
        reason: &'static str,
        field: String,
        message: String,
    },
    NotInstallable {
        status: &'static str,
        kind: EnvironmentKind,
    },
    CrossOrganization,
    PreRunNotFound(String),
    InstallationNotFound(String),
    SubscriptionNotFound(String),
    PreRunMismatch(String),
    PreRunExpired(String),
    PreRunStale(Vec<String>),
    InvalidTranslationMap(Vec<String>),
    ObjectsModified(Vec<String>),
    InvalidState {
        reason: &'static str,
        message: String,
    },
    NoPackageService,
    /// The environment's policy closes it now (outside its windows or in a freeze).
    OutsideWindow {
        environment: String,
        reason: String,
        opens: Option<chrono::DateTime<chrono::Utc>>,
    },
    Store(StoreError),
}

impl From<StoreError> for InstallError {
    fn from(e: StoreError) -> Self {
        InstallError::Store(e)
    }
}

impl From<Refusal> for InstallError {
    fn from(e: Refusal) -> Self {
        InstallError::Refused(e)
    }
}

impl From<AccessError> for InstallError {
    fn from(e: AccessError) -> Self {
        InstallError::Refused(Refusal::Access(e))
    }
}

impl From<UpstreamError> for InstallError {
    fn from(e: UpstreamError) -> Self {
        InstallError::Upstream(e)
    }
}

impl std::fmt::Display for InstallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Kept on promotion requests and in audit events: bounded like the statuses.
        let list = |items: &[String]| {
            let mut shown = items.iter().take(20).cloned().collect::<Vec<_>>().join("; ");
            if items.len() > 20 {
                shown.push_str(&format!("; and {} more", items.len() - 20));
            }
            promotion_core::validate::clip_to(&shown, 1024)
        };
        match self {
            InstallError::Refused(r) => write!(f, "{r}"),
            InstallError::Upstream(e) => write!(f, "{}", e.message),
            InstallError::Invalid { message, .. } => f.write_str(message),
            InstallError::NotInstallable { status, kind } => write!(
                f,
                "a {status} package cannot be installed into a {kind:?} environment (PREVIEW: sandboxes only; PUBLIC: anywhere)"
            ),
            InstallError::CrossOrganization => f.write_str("packages never cross organizations"),
            InstallError::PreRunNotFound(id) => write!(f, "pre-run {id} not found"),
            InstallError::InstallationNotFound(id) => write!(f, "installation {id} not found"),
            InstallError::SubscriptionNotFound(id) => write!(f, "subscription {id} not found"),
            InstallError::PreRunMismatch(m) => f.write_str(m),
            InstallError::PreRunExpired(id) => write!(f, "pre-run {id} has expired; run a new one"),
            InstallError::PreRunStale(items) => write!(
                f,
                "the destination or package changed since the pre-run; nothing was written: {}",
                list(items)
            ),
            InstallError::InvalidTranslationMap(items) => {
                write!(f, "the translation map has invalid entries; nothing was written: {}", list(items))
            }
            InstallError::ObjectsModified(items) => write!(
                f,
                "objects changed since the installation (roll back with force to discard those changes): {}",
                list(items)
            ),
            InstallError::InvalidState { message, .. } => f.write_str(message),
            InstallError::NoPackageService => f.write_str("this installation service has no package_service configured"),
            InstallError::OutsideWindow { environment, reason, opens } => {
                let opens = match opens {
                    Some(t) => format!("it opens at {}", t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                    None => "no opening is in sight: change its policy".to_string(),
                };
                write!(
                    f,
                    "{environment} takes no installs, accepts or rollbacks now ({reason}); {opens}. Pre-runs and \
                     promotion requests are allowed; an admin may proceed with a window_override_reason"
                )
            }
            InstallError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl InstallError {
    /// The canonical code this failure is reported with (kept on a promotion request).
    pub fn code(&self) -> promotion_core::Code {
        use promotion_core::Code;
        match self {
            InstallError::Refused(Refusal::Access(AccessError::EnvironmentNotFound(_))) => Code::NotFound,
            InstallError::Refused(Refusal::Access(AccessError::PermissionDenied { .. })) => Code::PermissionDenied,
            InstallError::Refused(Refusal::NotHosted { .. }) => Code::FailedPrecondition,
            InstallError::Upstream(UpstreamError { code, .. }) => *code,
            InstallError::Invalid { .. } | InstallError::PreRunMismatch(_) => Code::InvalidArgument,
            InstallError::PreRunNotFound(_)
            | InstallError::InstallationNotFound(_)
            | InstallError::SubscriptionNotFound(_) => Code::NotFound,
            InstallError::PreRunStale(_) => Code::Aborted,
            InstallError::Store(e) if e.is_unavailable() => Code::Unavailable,
            InstallError::Store(_) => Code::Internal,
            _ => Code::FailedPrecondition,
        }
    }
}
