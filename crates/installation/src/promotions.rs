//! Promotion requests and approval tasks (seed 000): requesting, listing, accepting
//! (pre-run + install), rejecting and cancelling, one pending request per package and
//! target environment. Every decision is taken under the target environment's lock, so
//! two decisions on one request never both apply.
use chrono::Utc;
use serde::Serialize;

use promotion_core::audit::AuditEvent;
use promotion_core::cursor::{Page, PageRequest};
use promotion_core::directory::EnvironmentInfo;
use promotion_core::identity::{Credentials, Identity, Permission};
use promotion_core::promotion::{PromotionRecord, PromotionStatus};
use promotion_core::AccessError;
use promotion_store::installation::{EnvWrite, Record};
use promotion_store::StoreError;

use crate::error::InstallError;
use crate::fetch::{info, installable};
use crate::idempotency::{first, RequestUse};
use crate::install::{install_locked, prepare, Companion, InstallRequest};
use crate::plan::Override;
use crate::refusal::Refusal;
use crate::state::{State, SERVICE_NAME};

/// Errors of the promotion area.
#[derive(Debug)]
pub enum PromotionError {
    Install(InstallError),
    NotFound(String),
    VersionNotFound { package_id: String, version: i64 },
    SameEnvironment(String),
    AlreadyInProgress { existing: String },
    NotPending { id: String, status: PromotionStatus },
    NotRequester(String),
    Store(StoreError),
}

impl From<StoreError> for PromotionError {
    fn from(e: StoreError) -> Self {
        PromotionError::Store(e)
    }
}

impl From<InstallError> for PromotionError {
    fn from(e: InstallError) -> Self {
        PromotionError::Install(e)
    }
}

impl From<AccessError> for PromotionError {
    fn from(e: AccessError) -> Self {
        PromotionError::Install(InstallError::Refused(Refusal::Access(e)))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Request {
    pub package_id: String,
    pub package_version: i64,
    pub comment: String,
    #[serde(skip)]
    pub request_id: String,
}

pub async fn request(
    state: &State,
    caller: &Identity,
    credentials: &Credentials,
    target: &EnvironmentInfo,
    req: Request,
) -> Result<PromotionRecord, PromotionError> {
    let use_ = RequestUse::new(caller, &req.request_id, "RequestPromotion", &(&target.id, &req));
    if let Some(id) = first(use_.as_ref(), state.store.as_ref()).await? {
        return get(state, caller, &id).await;
    }
    let info = info(state, credentials, &req.package_id).await?;
    state.require(caller, &info.source_environment, Permission::PromotionRequest).await?;
    if req.package_version > info.version {
        return Err(PromotionError::VersionNotFound { package_id: info.id, version: req.package_version });
    }
    if info.organization != target.organization {
        return Err(InstallError::CrossOrganization.into());
    }
    if info.source_environment == target.id {
        return Err(PromotionError::SameEnvironment(target.id.clone()));
    }
    if !installable(info.status, target.kind) {
        return Err(InstallError::NotInstallable { status: info.status.as_str(), kind: target.kind }.into());
    }
    let tx = state.store.lock(&target.id).await?;
    if let Some(existing) = state.store.pending_promotion(&target.id, &info.id).await? {
        return Err(PromotionError::AlreadyInProgress { existing });
    }
    let now = Utc::now();
    let record = PromotionRecord {
        id: uuid::Uuid::now_v7().to_string(),
        organization: info.organization.clone(),
        package_id: info.id.clone(),
        package_version: if req.package_version == 0 { info.version } else { req.package_version },
        package_name: info.name.clone(),
        source_environment: info.source_environment.clone(),
        target_environment: target.id.clone(),
        status: PromotionStatus::ToBeValidated,
        comment: req.comment,
        requested_by: caller.subject.clone(),
        create_time: now,
        update_time: now,
        is_update: state.store.installed_before(&info.id, &target.id).await?,
        decided_by: String::new(),
        decision_comment: String::new(),
        installation_id: String::new(),
        last_error: String::new(),
    };
    let mut write = EnvWrite::default();
    if let Some(u) = &use_ {
        write.record(u.record(&record.id));
    }
    write.record(Record::audit(event(caller, &record, "PROMOTION_REQUESTED", &req.request_id)));
    write.record(Record::Promotion(Box::new(record.clone())));
    tx.commit(write).await?;
    Ok(record)
}

fn event(caller: &Identity, r: &PromotionRecord, action: &str, request_id: &str) -> AuditEvent {
    AuditEvent::new(SERVICE_NAME, caller, &r.target_environment, action, ("promotion_request", &r.id))
        .request_id(request_id)
        .detail("package_id", r.package_id.clone())
        .detail("package_version", r.package_version)
        .detail("source_environment", r.source_environment.clone())
}

/// Who may see a request: its requester, and anyone who may read installations of its
/// target or request promotions from its source.
fn visible_to(caller: &Identity, r: &PromotionRecord) -> bool {
    r.organization == caller.organization
        && (r.requested_by == caller.subject
            || caller.allows(Permission::InstallationRead, &r.target_environment)
            || caller.allows(Permission::PromotionRequest, &r.source_environment))
}

/// The request as the caller may see it: another organization's does not exist for it;
/// one of its own organization it may not see is refused (and the denial audited).
pub async fn get(state: &State, caller: &Identity, id: &str) -> Result<PromotionRecord, PromotionError> {
    let r = state
        .store
        .promotion(id)
        .await?
        .filter(|r| r.organization == caller.organization)
        .ok_or_else(|| PromotionError::NotFound(id.to_string()))?;
    if !visible_to(caller, &r) {
        let denial = AccessError::PermissionDenied {
            permission: Permission::InstallationRead,
            environment: r.target_environment,
        };
        state.audit_denied(caller, &denial).await;
        return Err(denial.into());
    }
    Ok(r)
}

/// Requests the caller may see, newest first, filtered; `tasks_only` keeps the pending
/// requests of environments where the caller holds promotion.approve.
pub async fn list(
    state: &State,
    caller: &Identity,
    filter: impl Fn(&PromotionRecord) -> bool + Send + Sync,
    tasks_only: bool,
    page: &PageRequest,
) -> Result<Page<PromotionRecord>, PromotionError> {
    let keep = |r: &PromotionRecord| {
        let visible = if tasks_only {
            r.status == PromotionStatus::ToBeValidated
                && caller.allows(Permission::PromotionApprove, &r.target_environment)
        } else {
            visible_to(caller, r)
        };
        visible && filter(r)
    };
    Ok(state.store.list_promotions(&caller.organization, &keep, page).await?)
}

/// A pending request the caller may decide on (promotion.approve on its target).
async fn pending_for_decision(state: &State, caller: &Identity, id: &str) -> Result<PromotionRecord, PromotionError> {
    let r = get(state, caller, id).await?;
    state.require(caller, &r.target_environment, Permission::PromotionApprove).await?;
    if r.status != PromotionStatus::ToBeValidated {
        return Err(PromotionError::NotPending { id: r.id, status: r.status });
    }
    Ok(r)
}

#[derive(Serialize)]
struct DecisionBody<'a> {
    id: &'a str,
    decision: &'a str,
    comment: &'a str,
}

pub struct Decision {
    pub comment: String,
    pub request_id: String,
    pub overrides: Vec<Override>,
    pub prune_children: bool,
}

/// Runs a pre-run and installs; the request becomes ACCEPTED with the installation id.
/// When the installation fails the request stays pending with `last_error`.
pub async fn accept(
    state: &State,
    caller: &Identity,
    credentials: &Credentials,
    id: &str,
    d: Decision,
) -> Result<PromotionRecord, PromotionError> {
    let body = DecisionBody { id, decision: "accept", comment: &d.comment };
    let use_ = RequestUse::new(caller, &d.request_id, "AcceptPromotionRequest", &body);
    if first(use_.as_ref(), state.store.as_ref()).await?.is_some() {
        return get(state, caller, id).await;
    }
    let r = pending_for_decision(state, caller, id).await?;
    let target = state.directory.get(&r.target_environment).ok_or_else(|| PromotionError::NotFound(id.to_string()))?;
    let install = InstallRequest {
        package_id: r.package_id.clone(),
        package_version: r.package_version,
        pre_run_id: String::new(),
        overrides: d.overrides,
        prune_children: d.prune_children,
        request_id: String::new(),
        companion: None,
    };
    let outcome = match prepare(state, caller, credentials, &target, &install).await {
        Ok(prepared) => {
            let tx = state.store.lock(&target.id).await?;
            // Decided on under the lock: a concurrent decision may have come first.
            let r = match pending_for_decision(state, caller, id).await {
                Ok(r) => r,
                Err(e) => return Err(e),
            };
            let companion = accepted_records(caller, r, d.comment.clone(), use_.clone(), d.request_id.clone());
            let install = InstallRequest { companion: Some(companion), ..install };
            install_locked(state, caller, &target, install, None, prepared, tx).await
        }
        Err(e) => Err(e),
    };
    match outcome {
        Ok(_) => get(state, caller, id).await,
        Err(e) => {
            record_failed_accept(state, caller, id, &d.request_id, &e).await?;
            Err(PromotionError::Install(e))
        }
    }
}

/// The ACCEPTED request and its audit event, written in the installation's own atomic
/// step: a crash can never leave an installed package behind a request still pending.
fn accepted_records(
    caller: &Identity,
    mut r: PromotionRecord,
    comment: String,
    use_: Option<RequestUse>,
    request_id: String,
) -> Companion {
    let decider = caller.clone();
    Box::new(move |installation| {
        r.status = PromotionStatus::Accepted;
        r.decided_by = decider.subject.clone();
        r.decision_comment = comment;
        r.last_error.clear();
        r.update_time = Utc::now();
        r.installation_id = installation.id.clone();
        let mut records = Vec::new();
        if let Some(u) = &use_ {
            records.push(u.record(&r.id));
        }
        let e =
            event(&decider, &r, "PROMOTION_ACCEPTED", &request_id).detail("installation_id", installation.id.clone());
        records.push(Record::audit(e));
        records.push(Record::Promotion(Box::new(r)));
        records
    })
}

/// A failed accept leaves the request pending, with the failure on it and in the trail.
async fn record_failed_accept(
    state: &State,
    caller: &Identity,
    id: &str,
    request_id: &str,
    e: &InstallError,
) -> Result<(), PromotionError> {
    let Some(mut r) = state.store.promotion(id).await? else { return Ok(()) };
    if r.status != PromotionStatus::ToBeValidated {
        return Ok(());
    }
    let code = e.code();
    r.last_error = format!("{code:?}: {e}");
    r.update_time = Utc::now();
    let event =
        event(caller, &r, "PROMOTION_ACCEPT_FAILED", request_id).outcome(code).detail("error", r.last_error.clone());
    state.store.append(vec![Record::audit(event), Record::Promotion(Box::new(r))]).await?;
    Ok(())
}

/// Rejects (approver) or cancels (requester) a pending request.
pub async fn close(
    state: &State,
    caller: &Identity,
    id: &str,
    cancel: bool,
    comment: String,
    request_id: &str,
) -> Result<PromotionRecord, PromotionError> {
    let decision = if cancel { "cancel" } else { "reject" };
    let method = if cancel { "CancelPromotionRequest" } else { "RejectPromotionRequest" };
    let use_ = RequestUse::new(caller, request_id, method, &DecisionBody { id, decision, comment: &comment });
    let current = get(state, caller, id).await?;
    let tx = state.store.lock(&current.target_environment).await?;
    if first(use_.as_ref(), state.store.as_ref()).await?.is_some() {
        drop(tx);
        return get(state, caller, id).await;
    }
    let mut r = if cancel {
        let r = get(state, caller, id).await?;
        if r.requested_by != caller.subject {
            return Err(PromotionError::NotRequester(r.requested_by));
        }
        if r.status != PromotionStatus::ToBeValidated {
            return Err(PromotionError::NotPending { id: r.id, status: r.status });
        }
        r
    } else {
        pending_for_decision(state, caller, id).await?
    };
    r.status = if cancel { PromotionStatus::Cancelled } else { PromotionStatus::Rejected };
    r.decided_by = caller.subject.clone();
    r.decision_comment = comment;
    r.update_time = Utc::now();
    let mut write = EnvWrite::default();
    if let Some(u) = &use_ {
        write.record(u.record(&r.id));
    }
    let action = if cancel { "PROMOTION_CANCELLED" } else { "PROMOTION_REJECTED" };
    write.record(Record::audit(event(caller, &r, action, request_id)));
    write.record(Record::Promotion(Box::new(r.clone())));
    tx.commit(write).await?;
    Ok(r)
}
