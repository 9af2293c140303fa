//! RecordInstallation (internal): installation services report each successful
//! installation once; the package counts it per destination.
use chrono::Utc;
use std::collections::BTreeMap;

use promotion_core::identity::{Identity, Permission};
use promotion_core::package::RecordedInstallation;
use promotion_store::package::{LockKey, PackageRecord};

use crate::common::{event, require};
use crate::error::{invalid, PackageError, Result};
use crate::idempotency::{prior, Request};
use crate::state::State;
use crate::validate::{fingerprint, validate_installation_id, validate_package_id, validate_request_id};
use serde::Serialize;

/// RecordInstallation input.
#[derive(Debug, Clone, Serialize)]
pub struct InstallationReport {
    pub package_id: String,
    pub package_version: i64,
    pub installation_id: String,
    pub destination_environment: String,
    #[serde(skip)]
    pub request_id: String,
}

/// Counts a successful installation once per installation id. Only installation
/// services (the internal role) call this, for any organization they host: the package
/// and the destination must belong to the same organization.
pub async fn record_installation(
    state: &State,
    caller: &Identity,
    report: InstallationReport,
) -> Result<(bool, BTreeMap<String, i64>)> {
    let destination = report.destination_environment.as_str();
    if destination.is_empty() {
        return Err(invalid("MISSING_FIELD", "destination_environment", "destination_environment is required"));
    }
    require(state, caller, destination, Permission::RecordInstallation).await?;
    validate_package_id(&report.package_id, "package_id")?;
    validate_installation_id(&report.installation_id)?;
    validate_request_id(&report.request_id)?;
    let request = Request::new(caller, &report.request_id, "RecordInstallation", fingerprint(&report));
    if report.package_version < 1 {
        return Err(invalid("INVALID_VERSION", "package_version", "package_version must be 1 or more"));
    }
    let id = report.package_id.as_str();
    let lock = state.store.lock(LockKey::Package(id.to_string())).await?;
    if let Some(first) = prior(state, request.as_ref()).await? {
        let answered = first.response.and_then(|r| serde_json::from_value(r).ok());
        return answered.ok_or_else(|| {
            PackageError::Store(promotion_store::StoreError::corrupt("a request record lost its response"))
        });
    }
    let mut package = state.store.package(id).await?.ok_or_else(|| PackageError::NotFound(id.to_string()))?;
    state
        .directory
        .get(destination)
        .filter(|e| e.organization == package.organization)
        .ok_or_else(|| PackageError::EnvironmentNotFound(destination.to_string()))?;
    if state.store.recorded_installation(id, &report.installation_id).await? {
        return Ok((false, package.installation_counts));
    }
    if !package.has_definition || report.package_version > package.version {
        return Err(PackageError::VersionNotFound { id: package.id, version: report.package_version });
    }
    package.count_installation(destination);
    let recorded = event(caller, &package, "INSTALLATION_RECORDED")
        .detail("installation_id", report.installation_id.as_str())
        .detail("destination_environment", destination)
        .detail("package_version", report.package_version);
    let answer = (true, package.installation_counts.clone());
    let mut records = vec![
        PackageRecord::RecordedInstallation(RecordedInstallation {
            package_id: package.id.clone(),
            installation_id: report.installation_id.clone(),
            destination_environment: destination.to_string(),
            package_version: report.package_version,
            recorded_by: caller.subject.clone(),
            time: Utc::now(),
        }),
        PackageRecord::audit(recorded.request_id(&report.request_id)),
        PackageRecord::Package(Box::new(package.clone())),
    ];
    if let Some(r) = &request {
        let response = serde_json::to_value(&answer).expect("counts serialise");
        records.push(r.record_response(&package.id, response));
    }
    state.store.commit(Some(lock), records).await?;
    state.watchers.publish(&package);
    Ok((true, package.installation_counts))
}
