//! CreatePreRun and GetPreRun: plan a package into an environment under its write lock and
//! keep the plan, with expiry, for an installation to follow exactly.
use chrono::{Duration, Utc};
use serde::Serialize;

use promotion_core::audit::AuditEvent;
use promotion_core::directory::EnvironmentInfo;
use promotion_core::identity::{Credentials, Identity, Permission};
use promotion_core::records::PreRunRecord;
use promotion_store::installation::{EnvWrite, Record};

use crate::error::InstallError;
use crate::fetch::fetch;
use crate::idempotency::{first, RequestUse};
use crate::plan::{self, PackageContent};
use crate::state::{State, SERVICE_NAME};

#[derive(Debug, Clone, Serialize)]
pub struct PreRunRequest {
    pub package_id: String,
    pub package_version: i64,
    #[serde(skip)]
    pub request_id: String,
}

pub async fn create_pre_run(
    state: &State,
    caller: &Identity,
    credentials: &Credentials,
    dest: &EnvironmentInfo,
    req: PreRunRequest,
) -> Result<PreRunRecord, InstallError> {
    let request = RequestUse::new(caller, &req.request_id, "CreatePreRun", &(&dest.id, &req));
    if let Some(id) = first(request.as_ref(), state.store.as_ref()).await? {
        return get_pre_run(state, caller, &id).await;
    }
    let (_, content) = fetch(state, credentials, dest, &req.package_id, req.package_version).await?;
    let tx = state.store.lock(&dest.id).await?;
    // Again under the lock: a retry on another replica may have been first.
    if let Some(id) = first(request.as_ref(), state.store.as_ref()).await? {
        drop(tx);
        return get_pre_run(state, caller, &id).await;
    }
    let record = planned(state, caller, dest, &content).await?;
    let mut write = EnvWrite::default();
    if let Some(r) = &request {
        write.record(r.record(&record.id));
    }
    let stored = store_pre_run(&mut write, caller, record, &req.request_id);
    tx.commit(write).await?;
    Ok(stored)
}

/// Plans `content` into `dest`, under the destination's lock: the pre-run, not yet stored.
pub(crate) async fn planned(
    state: &State,
    caller: &Identity,
    dest: &EnvironmentInfo,
    content: &PackageContent,
) -> Result<PreRunRecord, InstallError> {
    let plan = plan::plan(state.store.as_ref(), &dest.id, &dest.catalog, content).await?;
    let now = Utc::now();
    Ok(PreRunRecord {
        id: uuid::Uuid::now_v7().to_string(),
        organization: dest.organization.clone(),
        package_id: content.package_id.clone(),
        package_version: content.version,
        package_digest: content.digest.clone(),
        source_environment: content.source_environment.clone(),
        destination: dest.id.clone(),
        destination_revision: state.store.env_state(&dest.id).await?.revision,
        create_time: now,
        expire_time: now + Duration::seconds(state.config.limits.pre_run_ttl_seconds),
        created_by: caller.subject.clone(),
        plan,
        summary: Default::default(),
        entry_count: 0,
        ready: false,
    })
}

/// Adds `record` and its PRE_RUN_CREATED event to `write`; returns its header, summarised.
pub(crate) fn store_pre_run(
    write: &mut EnvWrite,
    caller: &Identity,
    record: PreRunRecord,
    request_id: &str,
) -> PreRunRecord {
    let event = AuditEvent::new(SERVICE_NAME, caller, &record.destination, "PRE_RUN_CREATED", ("pre_run", &record.id))
        .request_id(request_id)
        .detail("package_id", record.package_id.clone())
        .detail("package_version", record.package_version);
    write.record(Record::audit(event));
    let mut stored = record.clone();
    stored.summarise();
    write.record(Record::PreRun(Box::new(record)));
    stored
}

/// Refuses a pre-run that does not plan `package_id` (at `version`; 0: any) into `dest`,
/// or that has expired.
pub(crate) fn check_pre_run(
    pre_run: &PreRunRecord,
    dest: &str,
    package_id: &str,
    version: i64,
) -> Result<(), InstallError> {
    if pre_run.destination != dest || pre_run.package_id != package_id {
        // Names only what the caller asked for, never the pre-run's own package or
        // destination.
        return Err(InstallError::PreRunMismatch(format!(
            "pre-run {} is not a plan of package {package_id} into {dest}",
            pre_run.id
        )));
    }
    if version != 0 && version != pre_run.package_version {
        return Err(InstallError::PreRunMismatch(format!(
            "pre-run {} planned version {}, not {version}",
            pre_run.id, pre_run.package_version
        )));
    }
    if Utc::now() >= pre_run.expire_time {
        return Err(InstallError::PreRunExpired(pre_run.id.clone()));
    }
    Ok(())
}

/// A pre-run the caller may follow or attach: one of an environment they cannot read does
/// not exist for them.
pub async fn readable_pre_run(state: &State, caller: &Identity, id: &str) -> Result<PreRunRecord, InstallError> {
    let pre_run = get_pre_run(state, caller, id).await?;
    if !caller.allows(Permission::InstallationRead, &pre_run.destination) {
        return Err(InstallError::PreRunNotFound(pre_run.id));
    }
    Ok(pre_run)
}

/// A pre-run the caller's organization owns.
pub async fn get_pre_run(state: &State, caller: &Identity, id: &str) -> Result<PreRunRecord, InstallError> {
    state
        .store
        .pre_run(id)
        .await?
        .filter(|r| r.organization == caller.organization)
        .ok_or_else(|| InstallError::PreRunNotFound(id.to_string()))
}
