//! Pre-runs, installations and rollbacks as this service performs them: fetch the
//! package, check installability, plan under the destination's write lock, and apply
//! in one atomic, durable write with its record, history, undo data, outbox and audit.
use chrono::{Duration, Utc};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::{Code, Status};

use super::apply::{self, Undo};
use super::package_client::{PackageInfo, PackageStatus};
use super::plan::{self, Override, PackageContent, Plan};
use super::records::{
    request_key, InstallationRecord, InstallationStatus, OutboxEntry, PreRunRecord, INSTALLATION_PREFIX,
};
use super::state::{State, SERVICE_NAME};
use super::store::{Changes, Store, StoreError};
use crate::shared::audit::AuditEvent;
use crate::shared::auth::Identity;
use crate::shared::config::EnvironmentKind;
use crate::shared::directory::EnvironmentInfo;

/// Errors of the installation area.
#[derive(Debug)]
pub enum InstallError {
    /// The package service answered (or is unavailable): passed through as it is.
    Upstream(Status),
    NotInstallable {
        status: &'static str,
        kind: EnvironmentKind,
    },
    CrossOrganization,
    PreRunNotFound(String),
    InstallationNotFound(String),
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
    Store(StoreError),
}

impl From<StoreError> for InstallError {
    fn from(e: StoreError) -> Self {
        InstallError::Store(e)
    }
}

pub struct PreRunRequest {
    pub package_id: String,
    pub package_version: i64,
    pub request_id: String,
}

pub struct InstallRequest {
    pub package_id: String,
    pub package_version: i64,
    pub pre_run_id: String,
    pub overrides: Vec<Override>,
    pub prune_children: bool,
    pub request_id: String,
    /// Records written in the same atomic step as the installation (an accepted
    /// promotion request naming it), so that neither can land without the other.
    pub companion: Option<Companion>,
}

/// Builds records to write with an installation, from the installation's record.
pub type Companion = Box<dyn FnOnce(&InstallationRecord) -> Changes + Send>;

/// Above this many keys an installation or rollback is applied in batches behind a
/// durable undo record rather than in one batch (about 3,000 objects).
pub const SINGLE_BATCH_MAX_KEYS: usize = 20_000;

/// PREVIEW installs into sandboxes only, PUBLIC anywhere, nothing else anywhere.
pub fn installable(status: PackageStatus, kind: EnvironmentKind) -> bool {
    matches!((status, kind), (PackageStatus::Public, _) | (PackageStatus::Preview, EnvironmentKind::Sandbox))
}

fn check_installable(info: &PackageInfo, dest: &EnvironmentInfo) -> Result<(), InstallError> {
    if info.organization != dest.organization {
        return Err(InstallError::CrossOrganization);
    }
    if !installable(info.status, dest.kind) {
        return Err(InstallError::NotInstallable { status: info.status.name(), kind: dest.kind });
    }
    Ok(())
}

async fn fetch(
    state: &State,
    token: &MetadataValue<Ascii>,
    dest: &EnvironmentInfo,
    package_id: &str,
    version: i64,
) -> Result<(PackageInfo, PackageContent), InstallError> {
    let client = state.package_client.as_ref().ok_or(InstallError::NoPackageService)?;
    let info = client.info(package_id, token).await.map_err(InstallError::Upstream)?;
    check_installable(&info, dest)?;
    let version = if version == 0 { info.version } else { version };
    let content = client.content(package_id, version, token).await.map_err(InstallError::Upstream)?;
    Ok((info, content))
}

/// The first response to a create call repeated with the same request id, if any.
fn remembered<T>(
    state: &State,
    kind: &str,
    caller: &Identity,
    request_id: &str,
    load: impl Fn(&super::store::Store, &str) -> Result<Option<T>, StoreError>,
) -> Result<Option<T>, InstallError> {
    if request_id.is_empty() {
        return Ok(None);
    }
    let Some(id) = state.store.get_record::<String>(&request_key(kind, &caller.subject, request_id))? else {
        return Ok(None);
    };
    Ok(load(&state.store, &id)?)
}

pub async fn create_pre_run(
    state: &State,
    caller: &Identity,
    token: &MetadataValue<Ascii>,
    dest: &EnvironmentInfo,
    req: PreRunRequest,
) -> Result<PreRunRecord, InstallError> {
    if let Some(done) = remembered(state, "prerun", caller, &req.request_id, PreRunRecord::load)? {
        return Ok(done);
    }
    let (_, content) = fetch(state, token, dest, &req.package_id, req.package_version).await?;
    let _guard = state.lock(&dest.id).await;
    let plan = tokio::task::block_in_place(|| plan::plan(&state.store, &dest.id, &dest.catalog, &content))?;
    let now = Utc::now();
    let mut record = PreRunRecord {
        id: uuid::Uuid::now_v7().to_string(),
        organization: dest.organization.clone(),
        package_id: content.package_id.clone(),
        package_version: content.version,
        package_digest: content.digest.clone(),
        source_environment: content.source_environment.clone(),
        destination: dest.id.clone(),
        destination_revision: state.store.env_state(&dest.id)?.revision,
        create_time: now,
        expire_time: now + Duration::seconds(state.config.limits.pre_run_ttl_seconds),
        created_by: caller.subject.clone(),
        plan,
        summary: Default::default(),
        entry_count: 0,
        ready: false,
    };
    let mut changes = Changes::default();
    record.save(&mut changes);
    if !req.request_id.is_empty() {
        changes.record(request_key("prerun", &caller.subject, &req.request_id), &record.id);
    }
    let event = AuditEvent::new(SERVICE_NAME, caller, &dest.id, "PRE_RUN_CREATED", ("pre_run", &record.id))
        .request_id(&req.request_id)
        .detail("package_id", record.package_id.clone())
        .detail("package_version", record.package_version);
    changes.record(event.record_key(), &event);
    state.store.write(&dest.id, changes, now).await?;
    Ok(record)
}

/// A pre-run the caller may see.
pub fn get_pre_run(state: &State, caller: &Identity, id: &str) -> Result<PreRunRecord, InstallError> {
    PreRunRecord::load(&state.store, id)?
        .filter(|r| r.organization == caller.organization)
        .ok_or_else(|| InstallError::PreRunNotFound(id.to_string()))
}

/// An installation the caller may see.
pub fn get_installation(
    state: &State,
    caller: &Identity,
    id: &str,
    with_plan: bool,
) -> Result<InstallationRecord, InstallError> {
    InstallationRecord::load(&state.store, id, with_plan)?
        .filter(|r| r.organization == caller.organization)
        .ok_or_else(|| InstallError::InstallationNotFound(id.to_string()))
}

/// The stored pre-run an installation follows, checked against the request.
fn usable_pre_run(
    state: &State,
    caller: &Identity,
    dest: &EnvironmentInfo,
    req: &InstallRequest,
) -> Result<PreRunRecord, InstallError> {
    let pre_run = get_pre_run(state, caller, &req.pre_run_id)?;
    if pre_run.destination != dest.id || pre_run.package_id != req.package_id {
        return Err(InstallError::PreRunMismatch(format!(
            "pre-run {} is for package {} into {}, not package {} into {}",
            pre_run.id, pre_run.package_id, pre_run.destination, req.package_id, dest.id
        )));
    }
    if req.package_version != 0 && req.package_version != pre_run.package_version {
        return Err(InstallError::PreRunMismatch(format!(
            "pre-run {} planned version {}",
            pre_run.id, pre_run.package_version
        )));
    }
    if Utc::now() >= pre_run.expire_time {
        return Err(InstallError::PreRunExpired(pre_run.id));
    }
    Ok(pre_run)
}

pub async fn create_installation(
    state: &State,
    caller: &Identity,
    token: &MetadataValue<Ascii>,
    dest: &EnvironmentInfo,
    req: InstallRequest,
) -> Result<InstallationRecord, InstallError> {
    if let Some(done) =
        remembered(state, "installation", caller, &req.request_id, |s, id| InstallationRecord::load(s, id, true))?
    {
        return Ok(done);
    }
    let started = std::time::Instant::now();
    let pre_run = if req.pre_run_id.is_empty() { None } else { Some(usable_pre_run(state, caller, dest, &req)?) };
    let version = pre_run.as_ref().map_or(req.package_version, |p| p.package_version);
    let (info, content) = fetch(state, token, dest, &req.package_id, version).await?;
    if let Some(p) = &pre_run {
        if info.version != p.package_version || content.digest != p.package_digest {
            return Err(InstallError::PreRunStale(vec![format!(
                "package {} moved from version {} to {}",
                info.id, p.package_version, info.version
            )]));
        }
    }
    let _guard = state.lock(&dest.id).await;
    let plan = tokio::task::block_in_place(|| final_plan(state, dest, &content, pre_run.as_ref(), &req.overrides))?;
    let id = uuid::Uuid::now_v7().to_string();
    let revision = state.store.env_state(&dest.id)?.revision + 1;
    let applied = tokio::task::block_in_place(|| {
        apply::build(&state.store, &dest.id, &content, &plan, req.prune_children, &id, revision)
    })?
    .map_err(InstallError::InvalidTranslationMap)?;
    // The package's objects now live in the prepared changes; a 100,000-object package
    // need not be held twice while it is written.
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
        plan,
        statuses: Vec::new(),
        summary: Default::default(),
        entry_count: 0,
        create_time: now,
        finish_time: None,
        created_by: caller.subject.clone(),
        failure_reason: String::new(),
        prune_children: req.prune_children,
        destination_revision: revision,
        rollback_time: None,
        rolled_back_by: String::new(),
    };
    // The INSTALLING record lands first: a crash before the apply leaves it for recovery
    // to mark FAILED. A large installation is applied in several batches (see
    // `Store::write_in_batches`), so its undo data lands with that record: recovery puts
    // back whatever part of it was applied, and the environment stays all or nothing.
    let staged = Store::estimated_keys(&applied.changes) > SINGLE_BATCH_MAX_KEYS;
    let mut marker = Changes::default();
    if staged {
        record.save(&mut marker, &applied.undo);
    } else {
        record.save_header(&mut marker);
    }
    state.store.write(&dest.id, marker, now).await?;

    record.status = InstallationStatus::Installed;
    record.statuses = applied.statuses;
    record.finish_time = Some(Utc::now());
    let mut finish = Changes::default();
    // A staged installation's undo data was written with its INSTALLING record.
    let no_undo = Undo::default();
    record.save(&mut finish, if staged { &no_undo } else { &applied.undo });
    let outbox = OutboxEntry {
        installation_id: id.clone(),
        package_id: record.package_id.clone(),
        package_version: record.package_version,
        destination: dest.id.clone(),
    };
    finish.record(outbox.key(), &outbox);
    if !req.request_id.is_empty() {
        finish.record(request_key("installation", &caller.subject, &req.request_id), &id);
    }
    let summary = serde_json::to_value(record.plan.summary()).unwrap_or_default();
    let event = AuditEvent::new(SERVICE_NAME, caller, &dest.id, "INSTALLATION_COMPLETED", ("installation", &id))
        .request_id(&req.request_id)
        .detail("package_id", record.package_id.clone())
        .detail("package_version", record.package_version)
        .detail("summary", summary);
    finish.record(event.record_key(), &event);
    if let Some(companion) = req.companion {
        finish.records.extend(companion(&record).records);
    }
    let applied = if staged {
        // Readers wait rather than see part of the installation.
        let _view = state.write_view(&dest.id).await;
        match state.store.write_in_batches(&dest.id, applied.changes, Utc::now()).await {
            Ok(_) => state.store.write(&dest.id, finish, Utc::now()).await,
            Err(e) => Err(e),
        }
    } else {
        let mut changes = applied.changes;
        changes.records.extend(finish.records);
        state.store.write(&dest.id, changes, Utc::now()).await
    };
    if let Err(e) = applied {
        if staged {
            // Put back whatever part of it was applied, as recovery would.
            let undo = InstallationRecord::load_undo(&state.store, &record.id)?;
            state.store.write_in_batches(&dest.id, apply::rollback_changes(&dest.id, &undo), Utc::now()).await?;
            state.store.recount(&dest.id).await?;
        }
        mark_failed(state, &mut record, &format!("the store failed while applying: {e}")).await;
        return Err(InstallError::Store(e));
    }
    state.outbox_wake.notify_one();
    crate::shared::metrics::record_installation(started.elapsed(), object_count);
    Ok(record)
}

/// The plan to install: the pre-run's (if still current) or a fresh one, with overrides,
/// validated. Any invalid entry refuses the whole installation.
fn final_plan(
    state: &State,
    dest: &EnvironmentInfo,
    content: &PackageContent,
    pre_run: Option<&PreRunRecord>,
    overrides: &[Override],
) -> Result<Plan, InstallError> {
    let store = &state.store;
    let mut plan = match pre_run {
        Some(p) => {
            let stale = plan::stale_entries(store, &dest.id, &dest.catalog, &content.source_environment, &p.plan)?;
            if !stale.is_empty() {
                return Err(InstallError::PreRunStale(stale));
            }
            p.plan.clone()
        }
        None => plan::plan(store, &dest.id, &dest.catalog, content)?,
    };
    let unknown = plan::apply_overrides(store, &dest.id, &mut plan, overrides)?;
    if !unknown.is_empty() {
        return Err(InstallError::InvalidTranslationMap(unknown));
    }
    plan::validate(store, &dest.id, &dest.catalog, content, &mut plan)?;
    let invalid = plan.invalid_entries();
    if !invalid.is_empty() {
        return Err(InstallError::InvalidTranslationMap(invalid));
    }
    Ok(plan)
}

async fn mark_failed(state: &State, record: &mut InstallationRecord, reason: &str) {
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
    let mut changes = Changes::default();
    record.save_header(&mut changes);
    changes.record(event.record_key(), &event);
    if let Err(e) = state.store.write(&record.destination, changes, Utc::now()).await {
        tracing::error!(error = %e, installation = %record.id, "could not mark the installation FAILED");
    }
}

fn system_identity() -> Identity {
    Identity { subject: SERVICE_NAME.into(), organization: String::new(), bindings: vec![], expires_at: 0 }
}

pub async fn rollback(
    state: &State,
    caller: &Identity,
    record: InstallationRecord,
    force: bool,
    request_id: &str,
) -> Result<InstallationRecord, InstallError> {
    let _guard = state.lock(&record.destination).await;
    // Re-read under the lock: a concurrent rollback may have finished first.
    let mut record = get_installation(state, caller, &record.id, false)?;
    match record.status {
        InstallationStatus::Installed => {}
        InstallationStatus::RolledBack => {
            return Err(InstallError::InvalidState {
                reason: "ALREADY_ROLLED_BACK",
                message: format!("installation {} was already rolled back", record.id),
            })
        }
        InstallationStatus::RollingBack => {
            return Err(InstallError::InvalidState {
                reason: "ROLLBACK_IN_PROGRESS",
                message: format!("installation {} is being rolled back", record.id),
            })
        }
        _ => {
            return Err(InstallError::InvalidState {
                reason: "NOT_INSTALLED",
                message: format!("installation {} did not install anything", record.id),
            })
        }
    }
    let undo: Undo = InstallationRecord::load_undo(&state.store, &record.id)?;
    let modified = apply::modified_since(&state.store, &record.destination, &undo, record.destination_revision)?;
    if !modified.is_empty() && !force {
        return Err(InstallError::ObjectsModified(modified));
    }
    let changes = apply::rollback_changes(&record.destination, &undo);
    let now = Utc::now();
    record.rollback_time = Some(now);
    record.rolled_back_by = caller.subject.clone();
    let event = AuditEvent::new(
        SERVICE_NAME,
        caller,
        &record.destination,
        "INSTALLATION_ROLLED_BACK",
        ("installation", &record.id),
    )
    .request_id(request_id)
    .detail("force", force)
    .detail("modified", modified.len() as u64);
    if Store::estimated_keys(&changes) > SINGLE_BATCH_MAX_KEYS {
        // Recorded first, so that recovery finishes a rollback a crash interrupted.
        record.status = InstallationStatus::RollingBack;
        let mut marker = Changes::default();
        record.save_header(&mut marker);
        state.store.write(&record.destination, marker, now).await?;
        let _view = state.write_view(&record.destination).await;
        state.store.write_in_batches(&record.destination, changes, now).await?;
        finish_rollback(state, &mut record, event).await?;
    } else {
        let mut changes = changes;
        record.status = InstallationStatus::RolledBack;
        record.save_header(&mut changes);
        changes.record(event.record_key(), &event);
        state.store.write(&record.destination.clone(), changes, now).await?;
    }
    Ok(record)
}

async fn finish_rollback(state: &State, record: &mut InstallationRecord, event: AuditEvent) -> Result<(), StoreError> {
    record.status = InstallationStatus::RolledBack;
    let mut changes = Changes::default();
    record.save_header(&mut changes);
    changes.record(event.record_key(), &event);
    state.store.write(&record.destination, changes, Utc::now()).await?;
    Ok(())
}

/// Installations of the caller's organization, newest first, filtered.
pub fn list_installations(
    state: &State,
    caller: &Identity,
    package_id: &str,
    destination: &str,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<(Vec<InstallationRecord>, Option<Vec<u8>>), InstallError> {
    let mut out = Vec::new();
    for item in state.store.scan_records(INSTALLATION_PREFIX, true) {
        let (key, value) = item?;
        if after.is_some_and(|a| key.as_slice() >= a) {
            continue;
        }
        let r: InstallationRecord = serde_json::from_slice(&value).map_err(StoreError::from)?;
        let visible = r.organization == caller.organization
            && (package_id.is_empty() || r.package_id == package_id)
            && (destination.is_empty() || r.destination == destination)
            && caller.allows(crate::shared::auth::Permission::InstallationRead, &r.destination);
        if !visible {
            continue;
        }
        if out.len() == limit {
            let last =
                InstallationRecord::key(&out.last().map(|r: &InstallationRecord| r.id.clone()).unwrap_or_default());
            return Ok((out, Some(last)));
        }
        out.push(r);
    }
    Ok((out, None))
}

/// Start-up recovery: an installation still INSTALLING never reached its atomic apply
/// Start-up recovery, before serving. An installation still INSTALLING did not finish:
/// a small one never reached its single atomic write, and a large one may have applied
/// some batches, which its undo data (written before any of them) puts back; either way
/// it is marked FAILED and the environment holds none of it. A large rollback still
/// ROLLING_BACK is finished from the same undo data.
pub async fn recover(state: &State) -> Result<usize, StoreError> {
    let mut stuck = Vec::new();
    for item in state.store.scan_records(INSTALLATION_PREFIX, false) {
        let (_, value) = item?;
        let r: InstallationRecord = serde_json::from_slice(&value)?;
        if matches!(r.status, InstallationStatus::Installing | InstallationStatus::RollingBack) {
            stuck.push(r);
        }
    }
    let n = stuck.len();
    for mut r in stuck {
        let undo = InstallationRecord::load_undo(&state.store, &r.id)?;
        if !undo.objects.is_empty() || !undo.history.is_empty() {
            let changes = apply::rollback_changes(&r.destination, &undo);
            state.store.write_in_batches(&r.destination, changes, Utc::now()).await?;
            state.store.recount(&r.destination).await?;
        }
        if r.status == InstallationStatus::RollingBack {
            let who = Identity {
                subject: r.rolled_back_by.clone(),
                organization: r.organization.clone(),
                bindings: vec![],
                expires_at: 0,
            };
            let event = AuditEvent::new(
                SERVICE_NAME,
                &who,
                &r.destination,
                "INSTALLATION_ROLLED_BACK",
                ("installation", &r.id),
            )
            .detail("recovered", true);
            finish_rollback(state, &mut r, event).await?;
        } else {
            mark_failed(
                state,
                &mut r,
                "interrupted: the installation service stopped before the installation was complete; nothing of it remains",
            )
            .await;
        }
    }
    Ok(n)
}
