//! CreateInstallation: fetch the package, check installability, plan (or follow the given
//! pre-run exactly) under the destination's write lock, and apply it in one atomic,
//! durable commit with its record, history, undo data, outbox entry and audit event.
use chrono::Utc;
use serde::Serialize;

use promotion_core::audit::AuditEvent;
use promotion_core::directory::EnvironmentInfo;
use promotion_core::identity::{Credentials, Identity};
use promotion_core::records::{InstallationRecord, InstallationStatus, OutboxEntry, PreRunRecord};
use promotion_core::Code;
use promotion_store::installation::{EnvTransaction, Record};

use crate::apply;
use crate::error::InstallError;
use crate::fetch::fetch;
use crate::idempotency::{first, RequestUse};
use crate::installations::get_installation;
use crate::plan::{self, Override, PackageContent, Plan};
use crate::policies::check_window;
use crate::pre_run::{check_pre_run, readable_pre_run};
use crate::state::{State, SERVICE_NAME};

#[derive(Serialize)]
pub struct InstallRequest {
    pub package_id: String,
    pub package_version: i64,
    pub pre_run_id: String,
    #[serde(skip)]
    pub overrides: Vec<Override>,
    pub prune_children: bool,
    #[serde(skip)]
    pub request_id: String,
    /// Records written in the same atomic step as the installation (an accepted
    /// promotion request naming it), so that neither can land without the other.
    #[serde(skip)]
    pub companion: Option<Companion>,
    /// The promotion request being accepted, if any; the installation remembers it.
    #[serde(skip)]
    pub promotion_request_id: String,
    /// An admin's reason to install while the destination's policy closes it.
    #[serde(skip)]
    pub window_override: String,
}

/// Builds records to write with an installation, from the installation's record.
pub type Companion = Box<dyn FnOnce(&InstallationRecord) -> Vec<Record> + Send + Sync>;

/// The stored pre-run an installation follows, checked against the request.
async fn usable_pre_run(
    state: &State,
    caller: &Identity,
    dest: &EnvironmentInfo,
    req: &InstallRequest,
) -> Result<PreRunRecord, InstallError> {
    let pre_run = readable_pre_run(state, caller, &req.pre_run_id).await?;
    check_pre_run(&pre_run, &dest.id, &req.package_id, req.package_version)?;
    Ok(pre_run)
}

/// One override as a request fingerprint sees it.
pub(crate) type OverrideKey = (String, String, Option<&'static str>, String, String);

/// Overrides in a canonical order, for request fingerprints.
pub(crate) fn override_fingerprint(overrides: &[Override]) -> Vec<OverrideKey> {
    let mut v: Vec<_> = overrides
        .iter()
        .map(|o| {
            (
                o.obj_code.clone(),
                o.source_id.clone(),
                o.action.map(|a| a.name()),
                o.target_id.clone(),
                o.alt_name.clone(),
            )
        })
        .collect();
    v.sort();
    v
}

/// What an installation needs before it takes the destination's lock: the pre-run it
/// follows, if any, and the package content.
pub struct Prepared {
    pre_run: Option<PreRunRecord>,
    content: PackageContent,
}

/// Checks the pre-run and reads the package (network calls happen before the lock).
pub async fn prepare(
    state: &State,
    caller: &Identity,
    credentials: &Credentials,
    dest: &EnvironmentInfo,
    req: &InstallRequest,
) -> Result<Prepared, InstallError> {
    let pre_run = if req.pre_run_id.is_empty() { None } else { Some(usable_pre_run(state, caller, dest, req).await?) };
    let version = pre_run.as_ref().map_or(req.package_version, |p| p.package_version);
    let (info, content) = fetch(state, credentials, dest, &req.package_id, version).await?;
    if let Some(p) = &pre_run {
        if info.version != p.package_version || content.digest != p.package_digest {
            return Err(InstallError::PreRunStale(vec![format!(
                "package {} moved from version {} to {}",
                info.id, p.package_version, info.version
            )]));
        }
    }
    Ok(Prepared { pre_run, content })
}

pub async fn create_installation(
    state: &State,
    caller: &Identity,
    credentials: &Credentials,
    dest: &EnvironmentInfo,
    req: InstallRequest,
) -> Result<InstallationRecord, InstallError> {
    let request = RequestUse::new(
        caller,
        &req.request_id,
        "CreateInstallation",
        &(&dest.id, &req, override_fingerprint(&req.overrides)),
    );
    if let Some(id) = first(request.as_ref(), state.store.as_ref()).await? {
        return get_installation(state, caller, &id, true).await;
    }
    check_window(state, caller, &dest.id, "CreateInstallation", &req.window_override).await?;
    let prepared = prepare(state, caller, credentials, dest, &req).await?;
    let tx = state.store.lock(&dest.id).await?;
    // Again under the lock: a retry of this call (on another replica, say) may have
    // installed while this one prepared.
    if let Some(id) = first(request.as_ref(), state.store.as_ref()).await? {
        drop(tx);
        return get_installation(state, caller, &id, true).await;
    }
    install_locked(state, caller, dest, req, request, prepared, tx).await
}

/// Plans (or follows the pre-run), applies and commits, under the destination's lock `tx`.
pub async fn install_locked(
    state: &State,
    caller: &Identity,
    dest: &EnvironmentInfo,
    req: InstallRequest,
    request: Option<RequestUse>,
    prepared: Prepared,
    tx: Box<dyn EnvTransaction>,
) -> Result<InstallationRecord, InstallError> {
    let started = std::time::Instant::now();
    let Prepared { pre_run, content } = prepared;
    let store = state.store.as_ref();
    let plan = final_plan(state, dest, &content, pre_run.as_ref(), &req.overrides).await?;
    let id = uuid::Uuid::now_v7().to_string();
    let revision = store.env_state(&dest.id).await?.revision + 1;
    let applied = apply::build(store, &dest.id, &dest.catalog, &content, &plan, req.prune_children, &id, revision)
        .await?
        .map_err(InstallError::InvalidTranslationMap)?;
    // The package's objects now live in the prepared write; a 100,000-object package need
    // not be held twice while it is written.
    let object_count = content.objects.len();
    let content = PackageContent { objects: Vec::new(), external_references: Vec::new(), ..content };
    let now = Utc::now();
    let mut record = InstallationRecord {
        id: id.clone(),
        organization: dest.organization.clone(),
        package_id: content.package_id.clone(),
        package_version: content.version,
        source_environment: content.source_environment.clone(),
        destination: dest.id.clone(),
        pre_run_id: req.pre_run_id.clone(),
        status: InstallationStatus::Installing,
        plan: Plan::default(),
        statuses: Vec::new(),
        summary: plan.summary(),
        entry_count: plan.entries.len(),
        create_time: now,
        finish_time: None,
        created_by: caller.subject.clone(),
        failure_reason: String::new(),
        prune_children: req.prune_children,
        destination_revision: revision,
        rollback_time: None,
        rolled_back_by: String::new(),
        promotion_request_id: req.promotion_request_id.clone(),
    };
    // The INSTALLING record lands first: if this process dies before the commit, recovery
    // finds it and marks it FAILED, and the environment holds none of the installation.
    state
        .store
        .append(vec![Record::Installation { record: Box::new(record.clone()), with_plan: false, undo: None }])
        .await?;

    record.plan = plan;
    record.status = InstallationStatus::Installed;
    record.statuses = applied.statuses;
    record.finish_time = Some(Utc::now());
    let mut write = applied.changes;
    let outbox = OutboxEntry {
        installation_id: id.clone(),
        package_id: record.package_id.clone(),
        package_version: record.package_version,
        destination: dest.id.clone(),
    };
    write.record(Record::Outbox(outbox));
    if let Some(r) = &request {
        write.record(r.record(&id));
    }
    let summary = serde_json::to_value(&record.summary).unwrap_or_default();
    let event = AuditEvent::new(SERVICE_NAME, caller, &dest.id, "INSTALLATION_COMPLETED", ("installation", &id))
        .request_id(&req.request_id)
        .detail("package_id", record.package_id.clone())
        .detail("package_version", record.package_version)
        .detail("summary", summary);
    write.record(Record::audit(event));
    if let Some(companion) = req.companion {
        write.records.extend(companion(&record));
    }
    let header = InstallationRecord { plan: Plan::default(), statuses: Vec::new(), ..record.clone() };
    write.record(Record::Installation {
        record: Box::new(record.clone()),
        with_plan: true,
        undo: Some(Box::new(applied.undo)),
    });
    if let Err(e) = tx.commit(write).await {
        let mut failed = header;
        mark_failed(state, &mut failed, &format!("the store failed while applying: {e}")).await;
        return Err(InstallError::Store(e));
    }
    state.outbox_wake.notify_one();
    tracing::info!(
        installation = %id,
        destination = %dest.id,
        package = %record.package_id,
        objects = object_count,
        seconds = started.elapsed().as_secs_f64(),
        "installation finished"
    );
    promotion_core::metrics::record_installation(started.elapsed(), object_count);
    Ok(record)
}

/// The plan to install: the pre-run's (if still current) or a fresh one, with overrides,
/// validated. Any invalid entry refuses the whole installation.
async fn final_plan(
    state: &State,
    dest: &EnvironmentInfo,
    content: &PackageContent,
    pre_run: Option<&PreRunRecord>,
    overrides: &[Override],
) -> Result<Plan, InstallError> {
    let store = state.store.as_ref();
    let mut plan = match pre_run {
        Some(p) => {
            let stale =
                plan::stale_entries(store, &dest.id, &dest.catalog, &content.source_environment, &p.plan).await?;
            if !stale.is_empty() {
                return Err(InstallError::PreRunStale(stale));
            }
            p.plan.clone()
        }
        None => plan::plan(store, &dest.id, &dest.catalog, content).await?,
    };
    let unknown = plan::apply_overrides(store, &dest.id, &mut plan, overrides).await?;
    if !unknown.is_empty() {
        return Err(InstallError::InvalidTranslationMap(unknown));
    }
    plan::validate(store, &dest.id, &dest.catalog, content, &mut plan).await?;
    let invalid = plan.invalid_entries();
    if !invalid.is_empty() {
        return Err(InstallError::InvalidTranslationMap(invalid));
    }
    Ok(plan)
}

/// Marks an installation FAILED with `reason`, with its audit event.
pub(crate) async fn mark_failed(state: &State, record: &mut InstallationRecord, reason: &str) {
    record.status = InstallationStatus::Failed;
    record.failure_reason = reason.to_string();
    record.finish_time = Some(Utc::now());
    let event = AuditEvent {
        actor: record.created_by.clone(),
        organization: record.organization.clone(),
        ..AuditEvent::new(
            SERVICE_NAME,
            &system_identity(),
            &record.destination,
            "INSTALLATION_FAILED",
            ("installation", &record.id),
        )
    }
    .outcome(Code::Aborted)
    .detail("reason", reason);
    let records = vec![
        Record::Installation { record: Box::new(record.clone()), with_plan: false, undo: None },
        Record::audit(event),
    ];
    if let Err(e) = state.store.append(records).await {
        tracing::error!(error = %e, installation = %record.id, "could not mark the installation FAILED");
    }
}

pub(crate) fn system_identity() -> Identity {
    Identity { subject: SERVICE_NAME.into(), organization: String::new(), bindings: vec![], expires_at: 0 }
}

/// The INSTALLATION_FAILED event of an attempt refused after its input was accepted.
pub fn failure_event(
    caller: &Identity,
    env: &str,
    package_id: &str,
    code: Code,
    reason: Option<String>,
    message: &str,
) -> AuditEvent {
    let mut event = AuditEvent::new(SERVICE_NAME, caller, env, "INSTALLATION_FAILED", ("package", package_id))
        .outcome(code)
        .detail("message", message);
    if let Some(reason) = reason {
        event = event.detail("reason", reason);
    }
    event
}
