//! GetInstallation and ListInstallations: the records of the caller's organization; and
//! CheckInstallation: whether a reported installation is one of this service's.
use promotion_core::cursor::{Page, PageRequest};
use promotion_core::identity::{Identity, Permission};
use promotion_core::records::{InstallationRecord, InstallationStatus};
use promotion_core::AccessError;
use promotion_store::installation::InstallationFilter;

use crate::error::InstallError;
use crate::refusal::Refusal;
use crate::state::State;

/// An installation the caller's organization owns, its entries as they stand now.
pub async fn get_installation(
    state: &State,
    caller: &Identity,
    id: &str,
    with_plan: bool,
) -> Result<InstallationRecord, InstallError> {
    let mut record = state
        .store
        .installation(id, with_plan)
        .await?
        .filter(|r| r.organization == caller.organization)
        .ok_or_else(|| InstallError::InstallationNotFound(id.to_string()))?;
    record.reflect_rollback();
    Ok(record)
}

/// Installations of the caller's organization it may read, newest first, filtered.
pub async fn list_installations(
    state: &State,
    caller: &Identity,
    package_id: &str,
    destination: &str,
    page: &PageRequest,
) -> Result<Page<InstallationRecord>, InstallError> {
    let filter = InstallationFilter {
        organization: caller.organization.clone(),
        package_id: package_id.to_string(),
        destination: destination.to_string(),
    };
    let visible = |r: &InstallationRecord| caller.allows(Permission::InstallationRead, &r.destination);
    Ok(state.store.list_installations(&filter, &visible, page).await?)
}

/// An installation as a RecordInstallation report describes it.
#[derive(Debug, Clone)]
pub struct ReportedInstallation {
    pub id: String,
    pub package_id: String,
    pub package_version: i64,
    pub destination: String,
}

/// Ok when this service holds a completed installation exactly as `reported` describes
/// it. Only identities that may report installations into the destination may ask, so
/// the answer tells nobody else which installations exist.
pub async fn check_installation(
    state: &State,
    caller: &Identity,
    reported: &ReportedInstallation,
) -> Result<(), InstallError> {
    let destination = state
        .directory
        .reportable(caller, &reported.destination)
        .ok_or_else(|| AccessError::EnvironmentNotFound(reported.destination.clone()))?;
    state.require(caller, &destination.id, Permission::RecordInstallation).await?;
    if !state.is_hosted(&destination.id) {
        let installation_service = destination.installation_service.clone();
        return Err(Refusal::NotHosted { environment: destination.id.clone(), installation_service }.into());
    }
    let record = state.store.installation(&reported.id, false).await?;
    let matches = record.is_some_and(|r| {
        r.organization == destination.organization
            && r.destination == destination.id
            && r.package_id == reported.package_id
            && r.package_version == reported.package_version
            && was_installed(r.status)
    });
    if matches {
        Ok(())
    } else {
        Err(InstallError::InstallationNotFound(reported.id.clone()))
    }
}

/// A rollback undoes the objects, not the fact that the package was installed.
fn was_installed(status: InstallationStatus) -> bool {
    match status {
        InstallationStatus::Installed | InstallationStatus::RollingBack | InstallationStatus::RolledBack => true,
        InstallationStatus::Installing | InstallationStatus::Failed => false,
    }
}
