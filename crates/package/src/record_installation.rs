//! RecordInstallation (internal): installation services report each successful
//! installation once; the package counts it per destination, once the installation
//! service hosting the destination confirms the installation is one of its own.
use chrono::Utc;
use std::collections::BTreeMap;
use std::sync::Arc;

use promotion_core::directory::EnvironmentInfo;
use promotion_core::identity::{Credentials, Identity, Permission};
use promotion_core::package::{Package, RecordedInstallation};
use promotion_store::package::{LockKey, PackageRecord};

use crate::common::{event, require};
use crate::error::{invalid, PackageError, Result};
use crate::idempotency::{prior, Request};
use crate::installation_check::Installed;
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

/// Whether this call counted the installation, and the package's counts after it.
pub type Counted = (bool, BTreeMap<String, i64>);

/// Counts a successful installation once per installation id. Only installation
/// services (the internal role) call this, for the environments they are bound to: the
/// package and the destination must belong to the same organization, and the
/// installation service hosting the destination must hold the installation. A replay
/// answers as the first call did without asking that service again.
pub async fn record_installation(
    state: &State,
    caller: &Identity,
    credentials: &Credentials,
    report: InstallationReport,
) -> Result<Counted> {
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
    if let Some(answer) = answered_before(state, request.as_ref()).await? {
        return Ok(answer);
    }
    let package = state.store.package(&report.package_id).await?;
    let package = package.ok_or_else(|| PackageError::NotFound(report.package_id.clone()))?;
    let env = reported_destination(state, caller, &package, destination)?;
    // An installation counted before was confirmed then; this report is answered as a
    // repeat below.
    if !state.store.recorded_installation(&package.id, &report.installation_id).await? {
        if !package.has_definition || report.package_version > package.version {
            return Err(PackageError::VersionNotFound { id: package.id, version: report.package_version });
        }
        confirm(state, &env, &report, credentials).await?;
    }
    count(state, caller, request.as_ref(), &report).await
}

/// The first answer to this request id, if it was used before.
async fn answered_before(state: &State, request: Option<&Request>) -> Result<Option<Counted>> {
    let Some(first) = prior(state, request).await? else { return Ok(None) };
    let answered = first.response.and_then(|r| serde_json::from_value(r).ok());
    answered
        .map(Some)
        .ok_or_else(|| PackageError::Store(promotion_store::StoreError::corrupt("a request record lost its response")))
}

/// The destination as the reporter may report into it, in the package's organization;
/// anything else does not exist for this package.
fn reported_destination(
    state: &State,
    caller: &Identity,
    package: &Package,
    destination: &str,
) -> Result<Arc<EnvironmentInfo>> {
    state
        .directory
        .reportable(caller, destination)
        .filter(|e| e.organization == package.organization)
        .ok_or_else(|| PackageError::EnvironmentNotFound(destination.to_string()))
}

/// Asks the installation service hosting the destination whether it holds the reported
/// installation: the reporter's word alone counts nothing.
async fn confirm(
    state: &State,
    destination: &EnvironmentInfo,
    report: &InstallationReport,
    credentials: &Credentials,
) -> Result<()> {
    let installed = Installed {
        installation_id: report.installation_id.clone(),
        package_id: report.package_id.clone(),
        package_version: report.package_version,
    };
    state.installations.check(destination, &installed, credentials).await.map_err(|e| {
        if e.code == promotion_core::Code::NotFound && e.reason == "INSTALLATION_NOT_FOUND" {
            PackageError::InstallationNotFound {
                installation_id: report.installation_id.clone(),
                destination: destination.id.clone(),
            }
        } else {
            PackageError::Upstream(e)
        }
    })
}

/// Counts the confirmed installation under the package's lock, or answers a report of
/// an installation counted before (one that won the race meanwhile, too) as not new.
async fn count(
    state: &State,
    caller: &Identity,
    request: Option<&Request>,
    report: &InstallationReport,
) -> Result<Counted> {
    let id = report.package_id.as_str();
    let lock = state.store.lock(LockKey::Package(id.to_string())).await?;
    if let Some(answer) = answered_before(state, request).await? {
        return Ok(answer);
    }
    let mut package = state.store.package(id).await?.ok_or_else(|| PackageError::NotFound(id.to_string()))?;
    if state.store.recorded_installation(id, &report.installation_id).await? {
        // Remembered even so: the same request id with another body is then refused.
        let answer = (false, package.installation_counts);
        if let Some(r) = request {
            state.store.commit(Some(lock), vec![remembered(r, id, &answer)]).await?;
        }
        return Ok(answer);
    }
    let destination = report.destination_environment.as_str();
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
    if let Some(r) = request {
        records.push(remembered(r, &package.id, &answer));
    }
    state.store.commit(Some(lock), records).await?;
    state.watchers.publish(&package);
    Ok(answer)
}

fn remembered(request: &Request, package_id: &str, answer: &Counted) -> PackageRecord {
    request.record_response(package_id, serde_json::to_value(answer).expect("counts serialise"))
}
