//! UpdatePackage (PATCH): the fields a mask names, checked (input, then etag, then what the
//! status allows) and written with their audit events.
use chrono::Utc;
use std::sync::Arc;

use promotion_core::directory::EnvironmentInfo;
use promotion_core::identity::{Identity, Permission};
use promotion_core::objects::ObjectCollection;
use promotion_core::package::{Package, Status};
use promotion_store::package::{LockKey, PackageRecord};

use crate::common::{check_etag, check_transition, event, load_visible, require, source_environment};
use crate::create::{redefine, Outcome};
use crate::error::{invalid, PackageError, Result};
use crate::idempotency::{repeated, Request};
use crate::state::State;
use crate::validate::{
    fingerprint, validate_description, validate_name, validate_package_id, validate_request_id, validate_roots,
};
use serde::Serialize;

/// UpdatePackage input: the fields the mask names.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Changes {
    pub name: Option<String>,
    pub description: Option<String>,
    pub status: Option<Status>,
    pub is_private: Option<bool>,
    pub object_collections: Option<Vec<ObjectCollection>>,
}

impl Changes {
    fn fields(&self) -> Vec<&'static str> {
        let named = [
            ("name", self.name.is_some()),
            ("description", self.description.is_some()),
            ("status", self.status.is_some()),
            ("is_private", self.is_private.is_some()),
            ("object_collections", self.object_collections.is_some()),
        ];
        named.into_iter().filter(|(_, set)| *set).map(|(f, _)| f).collect()
    }
}

pub async fn update(
    state: &State,
    caller: &Identity,
    id: &str,
    etag: &str,
    changes: Changes,
    request_id: &str,
) -> Result<Outcome> {
    validate_package_id(id, "package.id")?;
    validate_request_id(request_id)?;
    let request = Request::new(caller, request_id, "UpdatePackage", fingerprint(&(id, etag, &changes)));
    if changes.status.is_some() && changes.object_collections.is_some() {
        return Err(invalid(
            "INVALID_FIELD_MASK",
            "update_mask",
            "status and object_collections cannot change together: a re-extraction sets the status",
        ));
    }
    let lock = state.store.lock(LockKey::Package(id.to_string())).await?;
    let mut package = load_visible(state, caller, id).await?;
    require(state, caller, &package.source_environment, Permission::PackageWrite).await?;
    if let Some(first) = repeated(state, request.as_ref()).await? {
        return Ok(Outcome { package: first, extraction: None });
    }
    let env = check_changes(state, &package, &changes, etag)?;
    let from = package.status;
    let fields = changes.fields();
    let mut records = Vec::new();
    let extraction = apply_changes(state, caller, &mut package, changes, env, &mut records);
    records.push(PackageRecord::audit(event(caller, &package, "PACKAGE_UPDATED").detail("fields", fields)));
    if package.status != from {
        let changed = event(caller, &package, "PACKAGE_STATUS_CHANGED")
            .detail("from", from.as_str())
            .detail("to", package.status.as_str());
        records.push(PackageRecord::audit(changed));
    }
    if let Some(r) = &request {
        records.push(r.record(&package));
    }
    records.push(PackageRecord::Package(Box::new(package.clone())));
    state.store.commit(Some(lock), records).await?;
    state.watchers.publish(&package);
    Ok(Outcome { package, extraction })
}

/// Validates an update (input first, then etag, then what the state allows) and returns
/// the source environment when the update re-extracts.
fn check_changes(
    state: &State,
    package: &Package,
    changes: &Changes,
    etag: &str,
) -> Result<Option<Arc<EnvironmentInfo>>> {
    if let Some(name) = &changes.name {
        validate_name(name)?;
    }
    if let Some(description) = &changes.description {
        validate_description(description)?;
    }
    let env = match &changes.object_collections {
        Some(roots) => {
            let env = source_environment(state, package)?;
            validate_roots(&env.catalog, roots, state.config.limits.max_package_objects)?;
            Some(env)
        }
        None => None,
    };
    check_etag(package, etag)?;
    if let Some(to) = changes.status {
        check_transition(package.status, to)?;
    }
    if changes.object_collections.is_some() && !package.status.allows_redefinition() {
        return Err(PackageError::NotEditable { id: package.id.clone(), status: package.status });
    }
    Ok(env)
}

/// Applies checked changes; returns the extraction to start, if the update re-extracts.
fn apply_changes(
    state: &State,
    caller: &Identity,
    package: &mut Package,
    changes: Changes,
    env: Option<Arc<EnvironmentInfo>>,
    records: &mut Vec<PackageRecord>,
) -> Option<crate::extraction::Job> {
    let now = Utc::now();
    if let Some(name) = changes.name {
        package.name = name;
    }
    if let Some(description) = changes.description {
        package.description = description;
    }
    if let Some(is_private) = changes.is_private {
        package.is_private = is_private;
    }
    if let Some(to) = changes.status {
        package.set_status(to, now);
    }
    let extraction = match (env, changes.object_collections) {
        (Some(env), Some(roots)) => redefine(state, caller, &env, package, roots, "", records),
        _ => None,
    };
    package.touch(now);
    extraction
}
