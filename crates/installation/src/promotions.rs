//! Promotion requests and approval tasks (seed 000): requesting (with the pre-run the
//! request carries), listing, attaching a fresh pre-run, accepting (each distinct approver's
//! accept is an approval; the one reaching the target's `required_approvals` installs
//! exactly the carried plan, or re-plans when that approver asks), rejecting and
//! cancelling, one pending request per package and target environment. Every decision is
//! taken under the target environment's lock with the policy read under it, so two
//! decisions on one request never both apply.
use chrono::Utc;
use serde::Serialize;

use promotion_core::audit::AuditEvent;
use promotion_core::cursor::{Page, PageRequest};
use promotion_core::directory::EnvironmentInfo;
use promotion_core::identity::{Credentials, Identity, Permission};
use promotion_core::notify::{Delivery, Subscription};
use promotion_core::policy::EnvironmentPolicy;
use promotion_core::promotion::{Approval, PromotionRecord, PromotionStatus};
use promotion_core::records::{InstallationRecord, InstallationStatus};
use promotion_core::AccessError;
use promotion_store::installation::{EnvTransaction, EnvWrite, Record};
use promotion_store::StoreError;

use crate::error::InstallError;
use crate::fetch::{content, info, installable};
use crate::idempotency::{first, RequestUse};
use crate::install::{install_locked, prepare, Companion, InstallRequest};
use crate::notifications::deliveries_for;
use crate::package_source::PackageInfo;
use crate::plan::{Override, PackageContent};
use crate::policies;
use crate::pre_run::{check_pre_run, planned, readable_pre_run, store_pre_run};
use crate::refusal::Refusal;
use crate::state::{State, SERVICE_NAME};

/// Errors of the promotion area.
#[derive(Debug)]
pub enum PromotionError {
    Install(InstallError),
    NotFound(String),
    VersionNotFound {
        package_id: String,
        version: i64,
    },
    SameEnvironment(String),
    AlreadyInProgress {
        existing: String,
    },
    NotPending {
        id: String,
        status: PromotionStatus,
    },
    NotRequester(String),
    /// The requester accepting their own request where the target's policy forbids it.
    SelfApproval {
        id: String,
        requester: String,
    },
    /// This approver's accept is recorded already.
    AlreadyApproved {
        id: String,
        approver: String,
    },
    /// Install options (translation map, prune, replan) on an accept that only approves.
    MoreApprovalsNeeded {
        id: String,
        approvals: usize,
        required: u32,
    },
    /// Accepting without re-planning found the carried pre-run stale or expired (`cause`).
    PlanOutdated {
        id: String,
        pre_run_id: String,
        cause: InstallError,
    },
    Store(StoreError),
}

/// What a refused accept of a request whose plan is out of date says: what changed, and
/// the two ways to re-plan.
pub fn outdated_message(id: &str, cause: &InstallError) -> String {
    format!(
        "{cause}. To install a plan of the target as it is now, accept with replan \
         (`promotion accept {id} --replan`); to review a fresh plan first, attach one \
         (`promotion prerun --request {id} --attach`, or CreatePreRun then AttachPreRun)"
    )
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
    /// The requester's pre-run; empty: the service plans when it creates the request.
    pub pre_run_id: String,
    #[serde(skip)]
    pub request_id: String,
}

/// The plan a new request will carry: a pre-run already stored, or the package content
/// to plan under the target's lock.
enum Carried {
    PreRun(String),
    ToPlan(PackageContent),
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
    let info = requestable(state, caller, credentials, target, &req).await?;
    let version = if req.package_version == 0 { info.version } else { req.package_version };
    let carried = if req.pre_run_id.is_empty() {
        Carried::ToPlan(content(state, credentials, &info.id, version).await?)
    } else {
        let pre_run = readable_pre_run(state, caller, &req.pre_run_id).await?;
        check_pre_run(&pre_run, &target.id, &info.id, version)?;
        Carried::PreRun(pre_run.id)
    };
    let tx = state.store.lock(&target.id).await?;
    // Again under the lock: a retry on another replica may have been first.
    if let Some(id) = first(use_.as_ref(), state.store.as_ref()).await? {
        drop(tx);
        return get(state, caller, &id).await;
    }
    let policy = policies::current(state, &target.id).await?;
    if let Some(existing) = state.store.pending_promotion(&target.id, &info.id).await? {
        return Err(PromotionError::AlreadyInProgress { existing });
    }
    let mut write = EnvWrite::default();
    let pre_run_id = match carried {
        Carried::PreRun(id) => id,
        Carried::ToPlan(content) => {
            let pre_run = planned(state, caller, target, &content).await?;
            store_pre_run(&mut write, caller, pre_run, &req.request_id).id
        }
    };
    let now = Utc::now();
    let record = PromotionRecord {
        id: uuid::Uuid::now_v7().to_string(),
        organization: info.organization.clone(),
        package_id: info.id.clone(),
        package_version: version,
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
        pre_run_id,
        installation_status: None,
        approvals: vec![],
        required_approvals: policy.required_approvals,
    };
    let event =
        event(caller, &record, "PROMOTION_REQUESTED", &req.request_id).detail("pre_run_id", record.pre_run_id.clone());
    commit_step(state, tx, write, use_.as_ref(), event, &record, "promotion requested", Some("PROMOTION_REQUESTED"))
        .await?;
    state.deliveries_wake.notify_one();
    Ok(record)
}

/// Commits one step of a request's life under the target's lock `tx`: `write`, the request
/// `r` as it now is, its audit event, the request id's use and, when the step is a
/// notification event, its webhook deliveries; then logs the step.
#[allow(clippy::too_many_arguments)]
async fn commit_step(
    state: &State,
    tx: Box<dyn EnvTransaction>,
    mut write: EnvWrite,
    use_: Option<&RequestUse>,
    event: AuditEvent,
    r: &PromotionRecord,
    step: &str,
    notify: Option<&str>,
) -> Result<(), PromotionError> {
    if let Some(u) = use_ {
        write.record(u.record(&r.id));
    }
    if let Some(name) = notify {
        let environment = &r.target_environment;
        write.records.extend(deliveries_for(state, &r.organization, environment, name, payload(r)).await?);
    }
    write.record(Record::audit(event));
    write.record(Record::Promotion(Box::new(r.clone())));
    tx.commit(write).await?;
    log_step(r, step);
    Ok(())
}

/// The info-level line of one step in a request's life.
fn log_step(r: &PromotionRecord, step: &str) {
    tracing::info!(
        promotion_request = %r.id,
        package = %r.package_id,
        version = r.package_version,
        target = %r.target_environment,
        pre_run = %r.pre_run_id,
        installation = %r.installation_id,
        "{step}"
    );
}

/// The package, if the caller may ask for it to go into `target` and it may go there.
async fn requestable(
    state: &State,
    caller: &Identity,
    credentials: &Credentials,
    target: &EnvironmentInfo,
    req: &Request,
) -> Result<PackageInfo, PromotionError> {
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
    Ok(info)
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
    Ok(with_policy(state, r).await?)
}

/// A pending request shows the count its target's policy asks for now; a decided one the
/// count it was decided under (1 for requests stored before policies).
async fn with_policy(state: &State, mut r: PromotionRecord) -> Result<PromotionRecord, StoreError> {
    if r.status == PromotionStatus::ToBeValidated {
        r.required_approvals = policies::current(state, &r.target_environment).await?.required_approvals;
    }
    r.required_approvals = r.required_approvals.max(1);
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
    let found = state.store.list_promotions(&caller.organization, &keep, page).await?;
    let mut items = Vec::with_capacity(found.items.len());
    for r in found.items {
        items.push(with_policy(state, r).await?);
    }
    Ok(Page { items, next: found.next })
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
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    replan: bool,
    /// An accept's overrides and prune flag are part of its body.
    #[serde(skip_serializing_if = "Option::is_none")]
    install: Option<(Vec<crate::install::OverrideKey>, bool)>,
}

pub struct Decision {
    pub comment: String,
    pub request_id: String,
    pub overrides: Vec<Override>,
    pub prune_children: bool,
    /// Plan again instead of installing the pre-run the request carries.
    pub replan: bool,
    /// An admin's reason to accept while the target's policy closes it.
    pub window_override: String,
}

/// Records the caller's approval of a pending request. The approval that reaches the
/// target policy's `required_approvals` installs the pre-run the request carries, with its
/// overrides (or, with `replan`, a fresh plan); the request becomes ACCEPTED with the
/// installation id. A stale or expired pre-run is refused with how to re-plan. When the
/// installation fails the request stays pending with `last_error`, and this approval is
/// not counted.
pub async fn accept(
    state: &State,
    caller: &Identity,
    credentials: &Credentials,
    id: &str,
    d: Decision,
) -> Result<PromotionRecord, PromotionError> {
    let install = Some((crate::install::override_fingerprint(&d.overrides), d.prune_children));
    let body = DecisionBody { id, decision: "accept", comment: &d.comment, replan: d.replan, install };
    let use_ = RequestUse::new(caller, &d.request_id, "AcceptPromotionRequest", &body);
    if first(use_.as_ref(), state.store.as_ref()).await?.is_some() {
        return get(state, caller, id).await;
    }
    let r = pending_for_decision(state, caller, id).await?;
    let policy = policies::current(state, &r.target_environment).await?;
    may_approve(state, caller, &r, &policy).await?;
    policies::check_window(state, caller, &r.target_environment, "AcceptPromotionRequest", &d.window_override).await?;
    if !completes(&r, &policy) {
        if has_install_options(&d) {
            let (approvals, required) = (r.approvals.len(), policy.required_approvals);
            return Err(PromotionError::MoreApprovalsNeeded { id: r.id, approvals, required });
        }
        if let Some(approved) = approve_only(state, caller, &r.target_environment, id, &d, use_.as_ref()).await? {
            return Ok(approved);
        }
        // Another approval or a policy change came first: this approval reaches the count.
    }
    let outcome = install_carried(state, caller, credentials, &r, &d, use_).await?;
    match outcome {
        Ok(Accepted::Approved(r)) => Ok(*r),
        Ok(Accepted::Installed) => {
            state.deliveries_wake.notify_one();
            let accepted = get(state, caller, id).await?;
            log_step(&accepted, "promotion accepted");
            Ok(accepted)
        }
        Err(cause) => {
            let outdated = !d.replan && matches!(cause, InstallError::PreRunStale(_) | InstallError::PreRunExpired(_));
            let message = if outdated { outdated_message(id, &cause) } else { cause.to_string() };
            record_failed_accept(state, caller, id, &d.request_id, cause.code(), &message).await?;
            Err(if outdated {
                PromotionError::PlanOutdated { id: id.to_string(), pre_run_id: r.pre_run_id, cause }
            } else {
                PromotionError::Install(cause)
            })
        }
    }
}

/// What an accept did: counted an approval, or installed.
enum Accepted {
    Approved(Box<PromotionRecord>),
    Installed,
}

/// Whether `caller` may add an approval to `r`: not the requester unless the policy
/// allows it (the refusal is audited), and once per approver.
async fn may_approve(
    state: &State,
    caller: &Identity,
    r: &PromotionRecord,
    policy: &EnvironmentPolicy,
) -> Result<(), PromotionError> {
    if r.requested_by == caller.subject && !policy.allow_self_approval {
        let denied = event(caller, r, "ACCESS_DENIED", "")
            .outcome(promotion_core::Code::PermissionDenied)
            .detail("permission", Permission::PromotionApprove.as_str())
            .detail("reason", "SELF_APPROVAL");
        state.audit_failure(denied).await;
        return Err(PromotionError::SelfApproval { id: r.id.clone(), requester: r.requested_by.clone() });
    }
    if r.approved_by(&caller.subject) {
        return Err(PromotionError::AlreadyApproved { id: r.id.clone(), approver: caller.subject.clone() });
    }
    Ok(())
}

/// Whether one more approval reaches the policy's count.
fn completes(r: &PromotionRecord, policy: &EnvironmentPolicy) -> bool {
    r.approvals.len() + 1 >= policy.required_approvals as usize
}

/// Whether the accept says how to install. One that only approves installs nothing, so
/// such options on it would be silently lost: they belong to the accept reaching the count.
fn has_install_options(d: &Decision) -> bool {
    !d.overrides.is_empty() || d.prune_children || d.replan
}

/// The request with `caller`'s approval added, under the count `policy` asks for.
fn approved(mut r: PromotionRecord, caller: &Identity, comment: &str, policy: &EnvironmentPolicy) -> PromotionRecord {
    let now = Utc::now();
    r.approvals.push(Approval { approver: caller.subject.clone(), time: now, comment: comment.to_string() });
    r.required_approvals = policy.required_approvals;
    r.update_time = now;
    r
}

/// Records an approval short of the count under the target's lock; None when, under the
/// lock, it turns out to reach the count after all (the caller installs instead).
async fn approve_only(
    state: &State,
    caller: &Identity,
    target: &str,
    id: &str,
    d: &Decision,
    use_: Option<&RequestUse>,
) -> Result<Option<PromotionRecord>, PromotionError> {
    let tx = state.store.lock(target).await?;
    if first(use_, state.store.as_ref()).await?.is_some() {
        drop(tx);
        return Ok(Some(get(state, caller, id).await?));
    }
    let r = pending_for_decision(state, caller, id).await?;
    let policy = policies::current(state, target).await?;
    may_approve(state, caller, &r, &policy).await?;
    if completes(&r, &policy) {
        return Ok(None);
    }
    Ok(Some(commit_approval(state, tx, caller, r, d, &policy, use_).await?))
}

/// Commits `caller`'s approval of pending request `r`, short of the count, under the
/// target's lock `tx`.
async fn commit_approval(
    state: &State,
    tx: Box<dyn EnvTransaction>,
    caller: &Identity,
    r: PromotionRecord,
    d: &Decision,
    policy: &EnvironmentPolicy,
    use_: Option<&RequestUse>,
) -> Result<PromotionRecord, PromotionError> {
    let r = approved(r, caller, &d.comment, policy);
    let e = event(caller, &r, "PROMOTION_APPROVED", &d.request_id)
        .detail("approvals", r.approvals.len())
        .detail("required_approvals", r.required_approvals);
    commit_step(state, tx, EnvWrite::default(), use_, e, &r, "promotion approved", Some("PROMOTION_APPROVED")).await?;
    state.deliveries_wake.notify_one();
    Ok(r)
}

/// Installs the plan of pending request `r` (its pre-run, or a fresh one with `replan`)
/// with the ACCEPTED request, carrying the caller's approval, in the same atomic step. If,
/// under the lock, the approval no longer reaches the count (the policy was raised), it is
/// only recorded. The outer error: the request can no longer be decided on; the inner
/// one: the installation failed, nothing was written.
async fn install_carried(
    state: &State,
    caller: &Identity,
    credentials: &Credentials,
    r: &PromotionRecord,
    d: &Decision,
    use_: Option<RequestUse>,
) -> Result<Result<Accepted, InstallError>, PromotionError> {
    let target = state.directory.get(&r.target_environment).ok_or_else(|| PromotionError::NotFound(r.id.clone()))?;
    if let Err(e) = has_plan(r, d.replan) {
        return Ok(Err(e));
    }
    let pre_run_id = if d.replan { String::new() } else { r.pre_run_id.clone() };
    let install = InstallRequest {
        package_id: r.package_id.clone(),
        package_version: r.package_version,
        pre_run_id: pre_run_id.clone(),
        overrides: d.overrides.clone(),
        prune_children: d.prune_children,
        request_id: String::new(),
        companion: None,
        promotion_request_id: r.id.clone(),
        window_override: String::new(),
    };
    let prepared = match prepare(state, caller, credentials, &target, &install).await {
        Ok(prepared) => prepared,
        Err(e) => return Ok(Err(e)),
    };
    let tx = state.store.lock(&target.id).await?;
    // A retry of this very call may have finished first (on another replica, say): it
    // decided, and the request as it now is answers this call too.
    if first(use_.as_ref(), state.store.as_ref()).await?.is_some() {
        return Ok(Ok(Accepted::Installed));
    }
    // Decided on under the lock: a concurrent decision may have come first, or another
    // pre-run been attached since this one was read.
    let r = pending_for_decision(state, caller, &r.id).await?;
    let policy = policies::current(state, &target.id).await?;
    may_approve(state, caller, &r, &policy).await?;
    if !completes(&r, &policy) {
        let r = commit_approval(state, tx, caller, r, d, &policy, use_.as_ref()).await?;
        return Ok(Ok(Accepted::Approved(Box::new(r))));
    }
    if let Err(e) = same_plan(&r, &pre_run_id, d.replan) {
        return Ok(Err(e));
    }
    let r = approved(r, caller, &d.comment, &policy);
    let subscribers = subscribers(state, &r, "PROMOTION_ACCEPTED").await?;
    let companion = accepted_records(caller, r, d.comment.clone(), use_, d.request_id.clone(), d.replan, subscribers);
    let install = InstallRequest { companion: Some(companion), ..install };
    Ok(install_locked(state, caller, &target, install, None, prepared, tx).await.map(|_| Accepted::Installed))
}

/// A request stored before requests carried a pre-run has no reviewed plan to install.
fn has_plan(r: &PromotionRecord, replan: bool) -> Result<(), InstallError> {
    if !replan && r.pre_run_id.is_empty() {
        return Err(InstallError::PreRunStale(vec![format!("promotion request {} carries no pre-run", r.id)]));
    }
    Ok(())
}

/// The plan read before the lock is still the one the request carries.
fn same_plan(r: &PromotionRecord, pre_run_id: &str, replan: bool) -> Result<(), InstallError> {
    if !replan && r.pre_run_id != pre_run_id {
        return Err(InstallError::PreRunStale(vec![format!(
            "pre-run {} was attached to promotion request {} meanwhile",
            r.pre_run_id, r.id
        )]));
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct Attach {
    pub pre_run_id: String,
    #[serde(skip)]
    pub request_id: String,
}

/// An approver attaches a pre-run of the request's package version into its target: the
/// plan accepting the request installs from now on. Approvals given so far were for the
/// plan it replaces, so they are cleared.
pub async fn attach(state: &State, caller: &Identity, id: &str, a: Attach) -> Result<PromotionRecord, PromotionError> {
    let use_ = RequestUse::new(caller, &a.request_id, "AttachPreRun", &(id, &a));
    let current = pending_for_decision(state, caller, id).await?;
    let pre_run = readable_pre_run(state, caller, &a.pre_run_id).await?;
    check_pre_run(&pre_run, &current.target_environment, &current.package_id, current.package_version)?;
    let tx = state.store.lock(&current.target_environment).await?;
    if first(use_.as_ref(), state.store.as_ref()).await?.is_some() {
        drop(tx);
        return get(state, caller, id).await;
    }
    let mut r = pending_for_decision(state, caller, id).await?;
    r.pre_run_id = pre_run.id;
    r.update_time = Utc::now();
    // Approvals were given to the plan the request carried: a new plan needs them anew.
    let cleared = std::mem::take(&mut r.approvals).len();
    let event = event(caller, &r, "PROMOTION_PRE_RUN_ATTACHED", &a.request_id)
        .detail("pre_run_id", r.pre_run_id.clone())
        .detail("approvals_cleared", cleared);
    let step = "pre-run attached to promotion request";
    commit_step(state, tx, EnvWrite::default(), use_.as_ref(), event, &r, step, None).await?;
    Ok(r)
}

/// The request that made `installation`, now saying that its installation was rolled
/// back; written in the rollback's own atomic step.
pub(crate) async fn rolled_back(
    state: &State,
    installation: &InstallationRecord,
) -> Result<Option<PromotionRecord>, StoreError> {
    if installation.promotion_request_id.is_empty() {
        return Ok(None);
    }
    let Some(mut r) = state.store.promotion(&installation.promotion_request_id).await? else { return Ok(None) };
    if r.installation_id != installation.id {
        return Ok(None);
    }
    r.installation_status = Some(InstallationStatus::RolledBack);
    r.update_time = Utc::now();
    Ok(Some(r))
}

/// The ACCEPTED request (`r` carries the approval that completed it) and its audit event,
/// written in the installation's own atomic step: a crash can never leave an installed
/// package behind a request still pending.
fn accepted_records(
    caller: &Identity,
    mut r: PromotionRecord,
    comment: String,
    use_: Option<RequestUse>,
    request_id: String,
    replanned: bool,
    subscribers: Vec<Subscription>,
) -> Companion {
    let decider = caller.clone();
    Box::new(move |installation| {
        r.status = PromotionStatus::Accepted;
        r.decided_by = decider.subject.clone();
        r.decision_comment = comment;
        r.last_error.clear();
        r.update_time = Utc::now();
        r.installation_id = installation.id.clone();
        r.installation_status = Some(InstallationStatus::Installed);
        let mut records = Vec::new();
        if let Some(u) = &use_ {
            records.push(u.record(&r.id));
        }
        let approvers: Vec<&str> = r.approvals.iter().map(|a| a.approver.as_str()).collect();
        let e = event(&decider, &r, "PROMOTION_ACCEPTED", &request_id)
            .detail("approvers", approvers)
            .detail("installation_id", installation.id.clone())
            .detail("pre_run_id", installation.pre_run_id.clone())
            .detail("replanned", replanned);
        records.push(Record::audit(e));
        for s in &subscribers {
            let delivery = Delivery::new(s, "PROMOTION_ACCEPTED", &r.target_environment, payload(&r));
            records.push(Record::Delivery(Box::new(delivery)));
        }
        records.push(Record::Promotion(Box::new(r)));
        records
    })
}

/// The subscriptions that want `event` of `r`'s target.
async fn subscribers(state: &State, r: &PromotionRecord, event: &str) -> Result<Vec<Subscription>, StoreError> {
    let all = state.store.subscriptions(&r.organization).await?;
    Ok(all.into_iter().filter(|s| s.wants(event, &r.target_environment)).collect())
}

/// What a webhook says about a request: enough for a requester to learn the decision.
fn payload(r: &PromotionRecord) -> serde_json::Value {
    serde_json::json!({
        "promotion_request_id": r.id,
        "package_id": r.package_id,
        "package_name": r.package_name,
        "package_version": r.package_version,
        "source_environment": r.source_environment,
        "target_environment": r.target_environment,
        "requested_by": r.requested_by,
        "comment": r.comment,
        "decided_by": r.decided_by,
        "decision_comment": r.decision_comment,
        "approvals": r.approvals.iter().map(|a| a.approver.clone()).collect::<Vec<_>>(),
        "required_approvals": r.required_approvals,
        "installation_id": r.installation_id,
    })
}

/// A failed accept leaves the request pending, with the failure on it and in the trail.
async fn record_failed_accept(
    state: &State,
    caller: &Identity,
    id: &str,
    request_id: &str,
    code: promotion_core::Code,
    message: &str,
) -> Result<(), PromotionError> {
    let Some(mut r) = state.store.promotion(id).await? else { return Ok(()) };
    if r.status != PromotionStatus::ToBeValidated {
        return Ok(());
    }
    r.last_error = format!("{code:?}: {message}");
    r.update_time = Utc::now();
    let event =
        event(caller, &r, "PROMOTION_ACCEPT_FAILED", request_id).outcome(code).detail("error", r.last_error.clone());
    state.store.append(vec![Record::audit(event), Record::Promotion(Box::new(r.clone()))]).await?;
    tracing::info!(promotion_request = %r.id, error = %r.last_error, "promotion accept failed");
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
    let use_ = RequestUse::new(
        caller,
        request_id,
        method,
        &DecisionBody { id, decision, comment: &comment, replan: false, install: None },
    );
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
    let (action, step) = if cancel {
        ("PROMOTION_CANCELLED", "promotion cancelled")
    } else {
        ("PROMOTION_REJECTED", "promotion rejected")
    };
    let e = event(caller, &r, action, request_id);
    commit_step(state, tx, EnvWrite::default(), use_.as_ref(), e, &r, step, Some(action)).await?;
    state.deliveries_wake.notify_one();
    Ok(r)
}
