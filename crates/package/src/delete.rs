//! DeletePackage: irreversible; every version and recorded installation goes with it, and
//! installations elsewhere keep their own records.
use promotion_core::identity::{Identity, Permission};
use promotion_store::package::{LockKey, PackageRecord};

use crate::common::{check_etag, event, load_visible, require};
use crate::error::Result;
use crate::idempotency::{prior, Request};
use crate::state::State;
use crate::validate::{fingerprint, validate_package_id, validate_request_id};

pub async fn delete(state: &State, caller: &Identity, id: &str, etag: &str, request_id: &str) -> Result<()> {
    validate_package_id(id, "id")?;
    validate_request_id(request_id)?;
    let request = Request::new(caller, request_id, "DeletePackage", fingerprint(&(id, etag)));
    let lock = state.store.lock(LockKey::Package(id.to_string())).await?;
    // A retry of a delete that went through answers as the first call did.
    if prior(state, request.as_ref()).await?.is_some() {
        return Ok(());
    }
    let package = load_visible(state, caller, id).await?;
    require(state, caller, &package.source_environment, Permission::PackageWrite).await?;
    check_etag(&package, etag)?;
    let deleted = event(caller, &package, "PACKAGE_DELETED")
        .detail("version", package.version)
        .detail("status", package.status.as_str());
    let mut records = vec![
        PackageRecord::Deleted { package_id: package.id.clone(), organization: package.organization.clone() },
        PackageRecord::audit(deleted.request_id(request_id)),
    ];
    if let Some(r) = &request {
        records.push(r.record_response(&package.id, serde_json::Value::Null));
    }
    state.store.commit(Some(lock), records).await?;
    state.watchers.deleted(id);
    Ok(())
}
