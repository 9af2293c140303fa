//! DeletePackage: irreversible; every version and recorded installation goes with it, and
//! installations elsewhere keep their own records.
use promotion_core::identity::{Identity, Permission};
use promotion_store::package::{LockKey, PackageRecord};

use crate::common::{check_etag, event, load_visible, require};
use crate::error::Result;
use crate::state::State;
use crate::validate::validate_package_id;

pub async fn delete(state: &State, caller: &Identity, id: &str, etag: &str) -> Result<()> {
    validate_package_id(id, "id")?;
    let lock = state.store.lock(LockKey::Package(id.to_string())).await?;
    let package = load_visible(state, caller, id).await?;
    require(state, caller, &package.source_environment, Permission::PackageWrite).await?;
    check_etag(&package, etag)?;
    let deleted = event(caller, &package, "PACKAGE_DELETED")
        .detail("version", package.version)
        .detail("status", package.status.as_str());
    let records = vec![
        PackageRecord::Deleted { package_id: package.id.clone(), organization: package.organization.clone() },
        PackageRecord::audit(deleted),
    ];
    state.store.commit(Some(lock), records).await?;
    state.watchers.deleted(id);
    Ok(())
}
