//! GetInstallation and ListInstallations: the records of the caller's organization.
use promotion_core::cursor::{Page, PageRequest};
use promotion_core::identity::{Identity, Permission};
use promotion_core::records::InstallationRecord;
use promotion_store::installation::InstallationFilter;

use crate::error::InstallError;
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
