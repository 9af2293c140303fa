//! Promotion requests and approval tasks (seed 000): requesting, listing, accepting
//! (pre-run + install), rejecting and cancelling, one pending request per package and
//! target environment.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tonic::metadata::{Ascii, MetadataValue};

use super::installer::{self, InstallError, InstallRequest};
use super::plan::Override;
use super::records::{request_key, InstallationRecord, InstallationStatus, INSTALLATION_PREFIX};
use super::state::{State, SERVICE_NAME};
use super::store::{Changes, StoreError};
use crate::shared::audit::AuditEvent;
use crate::shared::auth::{Identity, Permission};
use crate::shared::directory::EnvironmentInfo;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PromotionStatus {
    ToBeValidated,
    Accepted,
    Rejected,
    Cancelled,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PromotionRecord {
    pub id: String,
    pub organization: String,
    pub package_id: String,
    pub package_version: i64,
    pub package_name: String,
    pub source_environment: String,
    pub target_environment: String,
    pub status: PromotionStatus,
    pub comment: String,
    pub requested_by: String,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    pub is_update: bool,
    pub decided_by: String,
    pub decision_comment: String,
    pub installation_id: String,
    pub last_error: String,
}

pub const PROMOTION_PREFIX: &[u8] = b"promo/";

impl PromotionRecord {
    /// Ids are UUID v7: key order is request order.
    pub fn key(id: &str) -> Vec<u8> {
        format!("promo/{id}").into_bytes()
    }

    fn pending_key(&self) -> Vec<u8> {
        pending_key(&self.target_environment, &self.package_id)
    }
}

fn pending_key(target: &str, package_id: &str) -> Vec<u8> {
    format!("promopending/{target}\0{package_id}").into_bytes()
}

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
    PermissionDenied { permission: Permission, environment: String },
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

pub struct Request {
    pub package_id: String,
    pub package_version: i64,
    pub comment: String,
    pub request_id: String,
}

/// Whether any installation of `package_id` into `target` succeeded before.
fn installed_before(state: &State, package_id: &str, target: &str) -> Result<bool, StoreError> {
    for item in state.store.scan_records(INSTALLATION_PREFIX, false) {
        let (_, v) = item?;
        let r: InstallationRecord = serde_json::from_slice(&v)?;
        if r.package_id == package_id && r.destination == target && r.status == InstallationStatus::Installed {
            return Ok(true);
        }
    }
    Ok(false)
}

async fn deny(state: &State, caller: &Identity, env: &str, p: Permission) -> PromotionError {
    state.audit_denied(caller, env, p).await;
    PromotionError::PermissionDenied { permission: p, environment: env.to_string() }
}

pub async fn request(
    state: &State,
    caller: &Identity,
    token: &MetadataValue<Ascii>,
    target: &EnvironmentInfo,
    req: Request,
) -> Result<PromotionRecord, PromotionError> {
    if !req.request_id.is_empty() {
        if let Some(id) =
            state.store.get_record::<String>(&request_key("promotion", &caller.subject, &req.request_id))?
        {
            return get(state, caller, &id).await;
        }
    }
    let client = state.package_client.as_ref().ok_or(InstallError::NoPackageService)?;
    let info = client.info(&req.package_id, token).await.map_err(InstallError::Upstream)?;
    if !caller.allows(Permission::PromotionRequest, &info.source_environment) {
        return Err(deny(state, caller, &info.source_environment, Permission::PromotionRequest).await);
    }
    if req.package_version > info.version {
        return Err(PromotionError::VersionNotFound { package_id: info.id, version: req.package_version });
    }
    if info.organization != target.organization {
        return Err(InstallError::CrossOrganization.into());
    }
    if info.source_environment == target.id {
        return Err(PromotionError::SameEnvironment(target.id.clone()));
    }
    if !installer::installable(info.status, target.kind) {
        return Err(InstallError::NotInstallable { status: info.status.name(), kind: target.kind }.into());
    }
    let _guard = state.lock(&target.id).await;
    if let Some(existing) = state.store.get_record::<String>(&pending_key(&target.id, &info.id))? {
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
        is_update: installed_before(state, &info.id, &target.id)?,
        decided_by: String::new(),
        decision_comment: String::new(),
        installation_id: String::new(),
        last_error: String::new(),
    };
    let mut changes = Changes::default();
    changes.record(PromotionRecord::key(&record.id), &record);
    changes.record(record.pending_key(), &record.id);
    if !req.request_id.is_empty() {
        changes.record(request_key("promotion", &caller.subject, &req.request_id), &record.id);
    }
    let event = event(caller, &record, "PROMOTION_REQUESTED", &req.request_id);
    changes.record(event.record_key(), &event);
    state.store.write(&target.id, changes, now).await?;
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
        .get_record::<PromotionRecord>(&PromotionRecord::key(id))?
        .filter(|r| r.organization == caller.organization)
        .ok_or_else(|| PromotionError::NotFound(id.to_string()))?;
    if !visible_to(caller, &r) {
        return Err(deny(state, caller, &r.target_environment, Permission::InstallationRead).await);
    }
    Ok(r)
}

/// Requests the caller may see, newest first, filtered; `tasks_only` keeps the pending
/// requests of environments where the caller holds promotion.approve.
pub fn list(
    state: &State,
    caller: &Identity,
    filter: impl Fn(&PromotionRecord) -> bool,
    tasks_only: bool,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<(Vec<PromotionRecord>, Option<Vec<u8>>), PromotionError> {
    let mut out: Vec<PromotionRecord> = Vec::new();
    for item in state.store.scan_records(PROMOTION_PREFIX, true) {
        let (key, v) = item?;
        if after.is_some_and(|a| key.as_slice() >= a) {
            continue;
        }
        let r: PromotionRecord = serde_json::from_slice(&v).map_err(StoreError::from)?;
        let keep = if tasks_only {
            r.organization == caller.organization
                && r.status == PromotionStatus::ToBeValidated
                && caller.allows(Permission::PromotionApprove, &r.target_environment)
        } else {
            visible_to(caller, &r)
        };
        if !keep || !filter(&r) {
            continue;
        }
        if out.len() == limit {
            let last = out.last().map(|r| PromotionRecord::key(&r.id));
            return Ok((out, last));
        }
        out.push(r);
    }
    Ok((out, None))
}

/// A pending request the caller may decide on (promotion.approve on its target).
async fn pending_for_decision(state: &State, caller: &Identity, id: &str) -> Result<PromotionRecord, PromotionError> {
    let r = get(state, caller, id).await?;
    if !caller.allows(Permission::PromotionApprove, &r.target_environment) {
        return Err(deny(state, caller, &r.target_environment, Permission::PromotionApprove).await);
    }
    if r.status != PromotionStatus::ToBeValidated {
        return Err(PromotionError::NotPending { id: r.id, status: r.status });
    }
    Ok(r)
}

/// The request as an earlier call of this caller with the same request id decided it, so
/// that a retried accept, reject or cancel returns the first response.
async fn decided_before(
    state: &State,
    caller: &Identity,
    id: &str,
    request_id: &str,
) -> Result<Option<PromotionRecord>, PromotionError> {
    if request_id.is_empty() {
        return Ok(None);
    }
    match state.store.get_record::<String>(&decision_key(caller, request_id))? {
        Some(decided) if decided == id => Ok(Some(get(state, caller, id).await?)),
        _ => Ok(None),
    }
}

fn decision_key(caller: &Identity, request_id: &str) -> Vec<u8> {
    request_key("promotion-decision", &caller.subject, request_id)
}

/// Records the decision's request id in the same write as the decision.
fn remember_decision(changes: &mut Changes, caller: &Identity, r: &PromotionRecord, request_id: &str) {
    if !request_id.is_empty() {
        changes.record(decision_key(caller, request_id), &r.id);
    }
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
    token: &MetadataValue<Ascii>,
    id: &str,
    d: Decision,
) -> Result<PromotionRecord, PromotionError> {
    // One decision at a time per request; the installation takes the environment lock.
    let _decision = state.lock(&format!("promotion/{id}")).await;
    if let Some(r) = decided_before(state, caller, id, &d.request_id).await? {
        return Ok(r);
    }
    let mut r = pending_for_decision(state, caller, id).await?;
    let target = state.directory.get(&r.target_environment).ok_or_else(|| PromotionError::NotFound(id.to_string()))?;
    let now = Utc::now();
    let pending = r.clone();
    // The ACCEPTED request is written in the installation's own atomic step: a crash can
    // never leave an installed package behind a request that still looks pending.
    r.status = PromotionStatus::Accepted;
    r.decided_by = caller.subject.clone();
    r.decision_comment = d.comment;
    r.last_error.clear();
    r.update_time = now;
    let (decider, request_id) = (caller.clone(), d.request_id.clone());
    let mut accepted = r.clone();
    let companion: installer::Companion = Box::new(move |installation| {
        accepted.installation_id = installation.id.clone();
        let mut decision = Changes::default();
        decision.record(PromotionRecord::key(&accepted.id), &accepted);
        decision.records.push((accepted.pending_key(), None));
        remember_decision(&mut decision, &decider, &accepted, &request_id);
        let e = event(&decider, &accepted, "PROMOTION_ACCEPTED", &request_id)
            .detail("installation_id", installation.id.clone());
        decision.record(e.record_key(), &e);
        decision
    });
    let install = InstallRequest {
        package_id: r.package_id.clone(),
        package_version: r.package_version,
        pre_run_id: String::new(),
        overrides: d.overrides,
        prune_children: d.prune_children,
        request_id: d.request_id.clone(),
        companion: Some(companion),
    };
    match installer::create_installation(state, caller, token, &target, install).await {
        Ok(installation) => {
            r.installation_id = installation.id;
            Ok(r)
        }
        Err(e) => {
            let mut r = pending;
            let status: tonic::Status = e.into();
            r.last_error = format!("{:?}: {}", status.code(), status.message());
            r.update_time = now;
            let mut changes = Changes::default();
            changes.record(PromotionRecord::key(&r.id), &r);
            let event = event(caller, &r, "PROMOTION_ACCEPT_FAILED", &d.request_id)
                .outcome(status.code())
                .detail("error", r.last_error.clone());
            changes.record(event.record_key(), &event);
            state.store.write(&r.target_environment, changes, now).await?;
            Err(PromotionError::Install(InstallError::Upstream(status)))
        }
    }
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
    let _decision = state.lock(&format!("promotion/{id}")).await;
    if let Some(r) = decided_before(state, caller, id, request_id).await? {
        return Ok(r);
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
    let now = Utc::now();
    r.status = if cancel { PromotionStatus::Cancelled } else { PromotionStatus::Rejected };
    r.decided_by = caller.subject.clone();
    r.decision_comment = comment;
    r.update_time = now;
    let mut changes = Changes::default();
    changes.record(PromotionRecord::key(&r.id), &r);
    changes.records.push((r.pending_key(), None));
    remember_decision(&mut changes, caller, &r, request_id);
    let action = if cancel { "PROMOTION_CANCELLED" } else { "PROMOTION_REJECTED" };
    let event = event(caller, &r, action, request_id);
    changes.record(event.record_key(), &event);
    state.store.write(&r.target_environment, changes, now).await?;
    Ok(r)
}
