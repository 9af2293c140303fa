//! CreatePackage: validate everything first, then write the new package (and its empty
//! definition, or start its extraction) atomically with its audit event.
use chrono::Utc;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

use promotion_core::directory::EnvironmentInfo;
use promotion_core::identity::{Identity, Permission};
use promotion_core::objects::ObjectCollection;
use promotion_core::package::{Metadata, Package, Status};
use promotion_store::package::PackageRecord;

use crate::common::{event, require, store_definition, visible_environment};
use crate::definitions::{self, Content};
use crate::error::Result;
use crate::extraction::Job;
use crate::idempotency::{repeated, Request};
use crate::state::State;
use crate::validate::{fingerprint, validate_description, validate_name, validate_request_id, validate_roots};

/// A written package, and the extraction to start for it, if any.
#[derive(Debug)]
pub struct Outcome {
    pub package: Package,
    pub extraction: Option<Job>,
}

/// CreatePackage input.
#[derive(Debug, Clone, Serialize)]
pub struct NewPackage {
    pub name: String,
    pub description: String,
    pub source_environment: String,
    pub object_collections: Vec<ObjectCollection>,
    pub is_private: bool,
    #[serde(skip)]
    pub request_id: String,
}

pub async fn create(state: &State, caller: &Identity, req: NewPackage) -> Result<Outcome> {
    let env = visible_environment(state, caller, &req.source_environment)?;
    require(state, caller, &env.id, Permission::PackageWrite).await?;
    validate_name(&req.name)?;
    validate_description(&req.description)?;
    validate_request_id(&req.request_id)?;
    validate_roots(&env.catalog, &req.object_collections, state.config.limits.max_package_objects)?;
    let request = Request::new(caller, &req.request_id, "CreatePackage", fingerprint(&req));
    let _request_guard = match &request {
        Some(r) => Some(r.lock(state).await?),
        None => None,
    };
    if let Some(previous) = repeated(state, request.as_ref()).await? {
        return Ok(Outcome { package: previous, extraction: None });
    }
    let mut package = new_record(caller, &env, req.name, req.description, req.is_private);
    let mut records = Vec::new();
    let extraction = redefine(state, caller, &env, &mut package, req.object_collections, &req.request_id, &mut records);
    let created = event(caller, &package, "PACKAGE_CREATED")
        .request_id(&req.request_id)
        .detail("status", package.status.as_str());
    records.push(PackageRecord::audit(created));
    if let Some(r) = &request {
        records.push(r.record(&package));
    }
    records.push(PackageRecord::Package(Box::new(package.clone())));
    state.store.commit(None, records).await?;
    state.watchers.publish(&package);
    Ok(Outcome { package, extraction })
}

/// A new package of the caller's organization, version 1, before its definition.
fn new_record(
    caller: &Identity,
    env: &EnvironmentInfo,
    name: String,
    description: String,
    is_private: bool,
) -> Package {
    let now = Utc::now();
    Package {
        // UUID v7: the listing index sorts by id, hence by creation time.
        id: uuid::Uuid::now_v7().to_string(),
        name,
        description,
        status: Status::Building,
        version: 1,
        organization: caller.organization.clone(),
        source_environment: env.id.clone(),
        object_collections: Vec::new(),
        metadata: Metadata::default(),
        entity_counts: BTreeMap::new(),
        digest: String::new(),
        installation_counts: BTreeMap::new(),
        is_private,
        create_time: now,
        created_by: caller.subject.clone(),
        update_time: now,
        publish_time: None,
        retire_time: None,
        failure_reason: String::new(),
        warnings: Vec::new(),
        revision: 1,
        sequence: 1,
        has_definition: false,
        extraction: None,
    }
}

/// Starts a re-extraction of `roots`, or, when there are none, stores the empty
/// definition at once (the seed allows an empty package).
pub(crate) fn redefine(
    state: &State,
    caller: &Identity,
    env: &Arc<EnvironmentInfo>,
    package: &mut Package,
    roots: Vec<ObjectCollection>,
    request_id: &str,
    records: &mut Vec<PackageRecord>,
) -> Option<Job> {
    if roots.is_empty() {
        let budget = state.config.limits.stream_chunk_bytes;
        let built = definitions::build(&env.catalog, &[], Content::default(), budget)
            .expect("an empty definition always builds");
        package.object_collections = Vec::new();
        package.warnings = Vec::new();
        store_definition(records, package, built);
        return None;
    }
    let attempt = package.start_extraction(roots.clone());
    Some(Job {
        package_id: package.id.clone(),
        attempt,
        caller: caller.clone(),
        environment: env.clone(),
        roots,
        request_id: request_id.to_string(),
    })
}
