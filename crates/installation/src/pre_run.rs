//! CreatePreRun and GetPreRun: plan a package into an environment under its write lock and
//! keep the plan, with expiry, for an installation to follow exactly.
use chrono::{Duration, Utc};
use serde::Serialize;

use promotion_core::audit::AuditEvent;
use promotion_core::directory::EnvironmentInfo;
use promotion_core::identity::{Credentials, Identity};
use promotion_core::records::PreRunRecord;
use promotion_store::installation::{EnvWrite, Record};

use crate::error::InstallError;
use crate::fetch::fetch;
use crate::idempotency::{first, RequestUse};
use crate::plan;
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
    let plan = plan::plan(state.store.as_ref(), &dest.id, &dest.catalog, &content).await?;
    let now = Utc::now();
    let record = PreRunRecord {
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
    };
    let mut write = EnvWrite::default();
    if let Some(r) = &request {
        write.record(r.record(&record.id));
    }
    let event = AuditEvent::new(SERVICE_NAME, caller, &dest.id, "PRE_RUN_CREATED", ("pre_run", &record.id))
        .request_id(&req.request_id)
        .detail("package_id", record.package_id.clone())
        .detail("package_version", record.package_version);
    write.record(Record::audit(event));
    let mut stored = record.clone();
    stored.summarise();
    write.record(Record::PreRun(Box::new(record)));
    tx.commit(write).await?;
    Ok(stored)
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
