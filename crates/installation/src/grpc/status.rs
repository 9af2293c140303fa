//! The installation service's one error map: every environment, installation and
//! promotion error as a status with ErrorInfo.
use tonic::{Code, Status};

use crate::environments::EnvError;
use crate::error::InstallError;
use crate::policies::PolicyError;
use crate::promotions::{self, PromotionError};
use crate::refusal::Refusal;
use promotion_api::status::{access, listed, status, store_failure, upstream};
use promotion_core::promotion::PromotionStatus;

impl From<Refusal> for Status {
    fn from(r: Refusal) -> Status {
        match r {
            Refusal::Access(e) => access(e),
            Refusal::NotHosted { environment, installation_service } => status(
                Code::FailedPrecondition,
                "ENVIRONMENT_NOT_HOSTED",
                format!("environment {environment} is hosted by the installation service at {installation_service}"),
                [("environment", environment), ("installation_service", installation_service)],
            ),
        }
    }
}

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
            EnvError::Conflict { reason: crate::environments::REVISION_MISMATCH, objects, .. } => {
                status(Code::Aborted, crate::environments::REVISION_MISMATCH, message, [("objects", objects.join(","))])
            }
            EnvError::Conflict { reason, objects, .. } => {
                let (shown, count) = listed(&objects);
                status(Code::FailedPrecondition, reason, message, [("objects", shown), ("count", count)])
            }
            EnvError::TooLarge { limit, field, .. } => status(
                Code::ResourceExhausted,
                "LIMIT_EXCEEDED",
                message,
                [("field", field), ("limit", limit.to_string())],
            ),
            EnvError::Refused(r) => r.into(),
            EnvError::Store(e) => store_failure(e.is_unavailable(), &e.message),
        }
    }
}

impl From<InstallError> for Status {
    fn from(e: InstallError) -> Status {
        match e {
            InstallError::Refused(r) => r.into(),
            InstallError::Upstream(e) => upstream(e),
            InstallError::Invalid { reason, field, message } => {
                status(Code::InvalidArgument, reason, message, [("field", field)])
            }
            InstallError::NotInstallable { status: s, kind } => status(
                Code::FailedPrecondition,
                "PACKAGE_NOT_INSTALLABLE",
                format!("a {s} package cannot be installed into a {kind:?} environment (PREVIEW: sandboxes only; PUBLIC: anywhere)"),
                [("status", s.to_string()), ("kind", format!("{kind:?}").to_uppercase())],
            ),
            InstallError::CrossOrganization => status(
                Code::FailedPrecondition,
                "CROSS_ORGANIZATION",
                "packages never cross organizations",
                [],
            ),
            InstallError::PreRunNotFound(id) => {
                status(Code::NotFound, "PRE_RUN_NOT_FOUND", format!("pre-run {id} not found"), [("pre_run_id", id)])
            }
            InstallError::SubscriptionNotFound(id) => {
                status(Code::NotFound, "SUBSCRIPTION_NOT_FOUND", format!("subscription {id} not found"), [("id", id)])
            }
            InstallError::InstallationNotFound(id) => {
                status(Code::NotFound, "INSTALLATION_NOT_FOUND", format!("installation {id} not found"), [("id", id)])
            }
            InstallError::PreRunMismatch(m) => status(Code::InvalidArgument, "PRE_RUN_MISMATCH", m, [("field", "pre_run_id".into())]),
            InstallError::PreRunExpired(id) => status(
                Code::FailedPrecondition,
                "PRE_RUN_EXPIRED",
                format!("pre-run {id} has expired; run a new one"),
                [("pre_run_id", id)],
            ),
            InstallError::PreRunStale(items) => {
                let (shown, count) = listed(&items);
                status(
                    Code::Aborted,
                    "PRE_RUN_STALE",
                    format!("{count} entries changed since the pre-run; nothing was written; a new pre-run (CreatePreRun) shows the current plan: {shown}"),
                    [("entries", shown), ("count", count)],
                )
            }
            InstallError::InvalidTranslationMap(items) => {
                let (shown, count) = listed(&items);
                status(
                    Code::FailedPrecondition,
                    "INVALID_TRANSLATION_MAP",
                    format!("{count} translation map entries are invalid; nothing was written; GetPreRun shows each entry's reason: {shown}"),
                    [("entries", shown), ("count", count)],
                )
            }
            InstallError::ObjectsModified(items) => {
                let (shown, count) = listed(&items);
                status(
                    Code::FailedPrecondition,
                    "OBJECTS_MODIFIED_SINCE_INSTALL",
                    format!("{count} objects changed since the installation (roll back with force to discard those changes; GetInstallation lists what it wrote): {shown}"),
                    [("objects", shown), ("count", count)],
                )
            }
            InstallError::InvalidState { reason, message } => status(Code::FailedPrecondition, reason, message, []),
            InstallError::NoPackageService => status(
                Code::FailedPrecondition,
                "NO_PACKAGE_SERVICE",
                "this installation service has no package_service configured",
                [],
            ),
            InstallError::OutsideWindow { ref environment, ref reason, opens } => {
                let next = opens.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_default();
                let metadata = [("environment", environment.clone()), ("reason", reason.clone()), ("next_opening", next)];
                status(Code::FailedPrecondition, "OUTSIDE_PROMOTION_WINDOW", e.to_string(), metadata)
            }
            InstallError::Store(e) => store_failure(e.is_unavailable(), &e.message),
        }
    }
}

impl From<PromotionError> for Status {
    fn from(e: PromotionError) -> Status {
        match e {
            PromotionError::Install(e) => e.into(),
            PromotionError::NotFound(id) => {
                status(Code::NotFound, "PROMOTION_REQUEST_NOT_FOUND", format!("promotion request {id} not found"), [("id", id)])
            }
            PromotionError::VersionNotFound { package_id, version } => status(
                Code::NotFound,
                "VERSION_NOT_FOUND",
                format!("package {package_id} has no version {version}"),
                [("package_id", package_id), ("version", version.to_string())],
            ),
            PromotionError::SameEnvironment(env) => status(
                Code::FailedPrecondition,
                "SAME_ENVIRONMENT",
                format!("the package comes from {env}; promote it into another environment"),
                [("target_environment", env)],
            ),
            PromotionError::AlreadyInProgress { existing } => status(
                Code::AlreadyExists,
                "PROMOTION_ALREADY_IN_PROGRESS",
                format!("promotion request {existing} for this package and target is still pending; wait until it is accepted, rejected or cancelled"),
                [("existing_request", existing)],
            ),
            PromotionError::NotPending { id, status: s } => status(
                Code::FailedPrecondition,
                "PROMOTION_NOT_PENDING",
                format!("promotion request {id} is {} and can no longer change", status_name(s)),
                [("id", id), ("status", status_name(s).into())],
            ),
            PromotionError::NotRequester(requester) => status(
                Code::PermissionDenied,
                "NOT_REQUESTER",
                format!("only the requester ({requester}) can cancel a promotion request"),
                [("requested_by", requester)],
            ),
            PromotionError::SelfApproval { id, requester } => status(
                Code::PermissionDenied,
                "SELF_APPROVAL",
                format!("{requester} requested promotion request {id} and may not approve it: the target's policy does not allow self-approval"),
                [("id", id), ("requested_by", requester)],
            ),
            PromotionError::AlreadyApproved { id, approver } => status(
                Code::FailedPrecondition,
                "ALREADY_APPROVED",
                format!("{approver} has approved promotion request {id} already; another approver must accept it"),
                [("id", id), ("approver", approver)],
            ),
            PromotionError::MoreApprovalsNeeded { id, approvals, required } => status(
                Code::FailedPrecondition,
                "MORE_APPROVALS_NEEDED",
                format!(
                    "promotion request {id} has {approvals} of {required} approvals: this accept only approves and installs nothing, \
                     so translation_map, prune_children and replan belong to the accept that reaches the count; accept without them to approve"
                ),
                [("id", id), ("approvals", approvals.to_string()), ("required_approvals", required.to_string())],
            ),
            PromotionError::PlanOutdated { id, pre_run_id, cause } => {
                let message = promotions::outdated_message(&id, &cause);
                let about = [("promotion_request_id", id), ("pre_run_id", pre_run_id)];
                match cause {
                    InstallError::PreRunExpired(_) => status(Code::FailedPrecondition, "PRE_RUN_EXPIRED", message, about),
                    InstallError::PreRunStale(items) => {
                        let [request, pre_run] = about;
                        status(Code::Aborted, "PRE_RUN_STALE", message, [("entries", items.join("; ")), request, pre_run])
                    }
                    other => other.into(),
                }
            }
            PromotionError::Store(e) => store_failure(e.is_unavailable(), &e.message),
        }
    }
}

impl From<PolicyError> for Status {
    fn from(e: PolicyError) -> Status {
        match e {
            PolicyError::Refused(r) => r.into(),
            PolicyError::Invalid(i) => status(Code::InvalidArgument, i.reason, i.message, [("field", i.field)]),
            PolicyError::EtagMismatch { environment } => status(
                Code::Aborted,
                "ETAG_MISMATCH",
                format!("the policy of {environment} changed since it was read; read it again (GetEnvironmentPolicy) and re-apply the change"),
                [("environment", environment)],
            ),
            PolicyError::Install(e) => e.into(),
            PolicyError::Store(e) => store_failure(e.is_unavailable(), &e.message),
        }
    }
}

fn status_name(s: PromotionStatus) -> &'static str {
    match s {
        PromotionStatus::ToBeValidated => "TO_BE_VALIDATED",
        PromotionStatus::Accepted => "ACCEPTED",
        PromotionStatus::Rejected => "REJECTED",
        PromotionStatus::Cancelled => "CANCELLED",
    }
}
