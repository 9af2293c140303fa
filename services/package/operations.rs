//! The package operations behind PackageService: each checks the caller and the input
//! before anything is written, then changes one package and writes it atomically with the
//! audit event recording the change (under the package's lock), and tells its watchers.
use chrono::Utc;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;

use super::definitions::{self, Built, Content, HeaderInfo};
use super::extraction::{Extracted, Job};
use super::packages::{
    fingerprint, invalid, validate_description, validate_installation_id, validate_name, validate_package_id,
    validate_request_id, validate_roots, Metadata, Package, PackageError, Status,
};
use super::state::{State, SERVICE_NAME};
use super::store::{keys, Records, Write};
use crate::shared::audit::AuditEvent;
use crate::shared::auth::{Identity, Permission};
use crate::shared::directory::EnvironmentInfo;
use crate::shared::objects::ObjectCollection;
use crate::shared::pagination::{token_after, Page, PageError};

type Result<T> = std::result::Result<T, PackageError>;

/// The failure reason of an extraction cut short by a stop of the service.
pub const INTERRUPTED: &str = "interrupted: the package service stopped during extraction";

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

/// What a request id was first used for, and what it answered.
#[derive(Debug, Serialize, Deserialize)]
struct RequestRecord {
    method: String,
    fingerprint: String,
    package_id: String,
    first_response: Package,
}

/// A recorded installation (RecordInstallation idempotency).
#[derive(Debug, Serialize, Deserialize)]
struct InstallationRecord {
    destination_environment: String,
    package_version: i64,
    recorded_by: String,
    time: chrono::DateTime<Utc>,
}

pub async fn create(state: &State, caller: &Identity, req: NewPackage) -> Result<Outcome> {
    let env = visible_environment(state, caller, &req.source_environment)?;
    require(state, caller, &env.id, Permission::PackageWrite).await?;
    validate_name(&req.name)?;
    validate_description(&req.description)?;
    validate_request_id(&req.request_id)?;
    validate_roots(&env.catalog, &req.object_collections, state.config.limits.max_package_objects)?;
    let request = RequestKey::new(caller, &req.request_id, "CreatePackage", fingerprint(&req));
    let _request_guard = match &request {
        Some(r) => Some(state.lock(&r.lock).await),
        None => None,
    };
    if let Some(previous) = repeated(state, request.as_ref())? {
        return Ok(Outcome { package: previous, extraction: None });
    }
    let mut package = new_record(caller, &env, req.name, req.description, req.is_private);
    let mut write = Write::default();
    let extraction = redefine(state, caller, &env, &mut package, req.object_collections, &req.request_id, &mut write);
    let event = event(caller, &package, "PACKAGE_CREATED")
        .request_id(&req.request_id)
        .detail("status", package.status.as_str());
    write.put(event.record_key(), &event);
    if let Some(r) = &request {
        r.record(&mut write, &package);
    }
    put_package(&mut write, &package);
    state.store.apply(write).await?;
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
fn redefine(
    state: &State,
    caller: &Identity,
    env: &Arc<EnvironmentInfo>,
    package: &mut Package,
    roots: Vec<ObjectCollection>,
    request_id: &str,
    write: &mut Write,
) -> Option<Job> {
    if roots.is_empty() {
        let budget = state.config.limits.stream_chunk_bytes;
        let built = definitions::build(&env.catalog, &[], Content::default(), budget)
            .expect("an empty definition always builds");
        package.object_collections = Vec::new();
        package.warnings = Vec::new();
        store_definition(write, package, built);
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

pub async fn get(state: &State, caller: &Identity, id: &str) -> Result<Package> {
    validate_package_id(id, "id")?;
    let package = load_visible(state, caller, id)?;
    require(state, caller, &package.source_environment, Permission::PackageRead).await?;
    Ok(package)
}

/// ListPackages filters and page.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub page_size: i32,
    pub page_token: String,
    pub status: Option<Status>,
    pub source_environment: String,
    pub show_retired: bool,
}

impl ListQuery {
    fn matches(&self, p: &Package) -> bool {
        let retired_shown = self.show_retired || self.status == Some(Status::Retired);
        self.status.is_none_or(|s| s == p.status)
            && (self.source_environment.is_empty() || self.source_environment == p.source_environment)
            && (retired_shown || p.status != Status::Retired)
    }
}

/// One page of the caller's organization's packages, newest first, and the next token.
pub async fn list(state: &State, caller: &Identity, query: ListQuery) -> Result<(Vec<Package>, String)> {
    let scope = if query.source_environment.is_empty() { "*" } else { query.source_environment.as_str() };
    if !query.source_environment.is_empty() {
        visible_environment(state, caller, &query.source_environment)?;
    }
    require(state, caller, scope, Permission::PackageRead).await?;
    let limits = &state.config.limits;
    let page = Page::parse(query.page_size, &query.page_token, limits.default_page_size, limits.max_page_size)
        .map_err(|e| match e {
            PageError::NegativeSize => invalid("INVALID_PAGE_SIZE", "page_size", "page_size must not be negative"),
            PageError::BadToken => bad_page_token(),
        })?;
    let prefix = keys::organization_prefix(&caller.organization);
    if page.after.as_ref().is_some_and(|a| a.len() <= prefix.len() || !a.starts_with(&prefix)) {
        return Err(bad_page_token());
    }
    let mut packages = Vec::new();
    let mut last_key = Vec::new();
    for item in state.store.scan_before(&prefix, page.after.as_deref()) {
        let (key, _) = item?;
        let id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
        let Some(package) = state.store.get::<Package>(&keys::package(&id))? else { continue };
        if !query.matches(&package) {
            continue;
        }
        if packages.len() == page.size {
            return Ok((packages, token_after(&last_key)));
        }
        last_key = key;
        packages.push(package);
    }
    Ok((packages, String::new()))
}

fn bad_page_token() -> PackageError {
    invalid("INVALID_PAGE_TOKEN", "page_token", "page_token was not returned by this call")
}

/// The stored messages of one version (0 = current), header first, and that version.
pub async fn definition(state: &State, caller: &Identity, id: &str, version: i64) -> Result<(i64, Records)> {
    if version < 0 {
        return Err(invalid("INVALID_VERSION", "version", "version must be 0 (current) or a version number"));
    }
    let package = get(state, caller, id).await?;
    let current = if package.has_definition { package.version } else { 0 };
    let version = match version {
        0 if current == 0 => return Err(PackageError::DefinitionNotReady { id: package.id, status: package.status }),
        0 => current,
        v if v > current => return Err(PackageError::VersionNotFound { id: package.id, version: v }),
        v => v,
    };
    Ok((version, state.store.scan(&keys::definition_prefix(&package.id, version), false)))
}

/// UpdatePackage input: the fields the mask names.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub name: Option<String>,
    pub description: Option<String>,
    pub status: Option<Status>,
    pub is_private: Option<bool>,
    pub object_collections: Option<Vec<ObjectCollection>>,
}

impl Changes {
    fn fields(&self) -> Vec<&'static str> {
        let mut fields = Vec::new();
        if self.name.is_some() {
            fields.push("name");
        }
        if self.description.is_some() {
            fields.push("description");
        }
        if self.status.is_some() {
            fields.push("status");
        }
        if self.is_private.is_some() {
            fields.push("is_private");
        }
        if self.object_collections.is_some() {
            fields.push("object_collections");
        }
        fields
    }
}

pub async fn update(state: &State, caller: &Identity, id: &str, etag: &str, changes: Changes) -> Result<Outcome> {
    validate_package_id(id, "package.id")?;
    if changes.status.is_some() && changes.object_collections.is_some() {
        return Err(invalid(
            "INVALID_FIELD_MASK",
            "update_mask",
            "status and object_collections cannot change together: a re-extraction sets the status",
        ));
    }
    let _guard = state.lock(&package_lock(id)).await;
    let mut package = load_visible(state, caller, id)?;
    require(state, caller, &package.source_environment, Permission::PackageWrite).await?;
    let env = check_changes(state, &package, &changes, etag)?;
    let from = package.status;
    let fields = changes.fields();
    let mut write = Write::default();
    let extraction = apply_changes(state, caller, &mut package, changes, env, &mut write);
    let updated = event(caller, &package, "PACKAGE_UPDATED").detail("fields", fields);
    write.put(updated.record_key(), &updated);
    if package.status != from {
        let changed = event(caller, &package, "PACKAGE_STATUS_CHANGED")
            .detail("from", from.as_str())
            .detail("to", package.status.as_str());
        write.put(changed.record_key(), &changed);
    }
    put_package(&mut write, &package);
    state.store.apply(write).await?;
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
        package.status.check_transition(to)?;
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
    write: &mut Write,
) -> Option<Job> {
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
        (Some(env), Some(roots)) => redefine(state, caller, &env, package, roots, "", write),
        _ => None,
    };
    package.touch(now);
    extraction
}

/// A new definition for ReplacePackage.
#[derive(Debug, Clone)]
pub enum Definition {
    /// Re-extract these roots from the source environment.
    Extract(Vec<ObjectCollection>),
    /// Exactly this content, validated.
    Given(Content),
}

/// ReplacePackage input: every editable field at once.
#[derive(Debug, Clone)]
pub struct Replacement {
    pub name: String,
    pub description: String,
    pub is_private: bool,
    pub definition: Option<Definition>,
    pub etag: String,
    pub request_id: String,
}

impl Replacement {
    fn fingerprint(&self, id: &str) -> String {
        use prost::Message;
        let mut hasher = Sha256::new();
        let head = serde_json::to_vec(&(id, &self.name, &self.description, self.is_private, &self.etag))
            .expect("strings serialise");
        hasher.update(head);
        match &self.definition {
            Some(Definition::Extract(roots)) => hasher.update(serde_json::to_vec(roots).expect("roots serialise")),
            Some(Definition::Given(content)) => {
                for o in &content.objects {
                    hasher.update(o.encode_to_vec());
                }
                for r in &content.external_references {
                    hasher.update(r.encode_to_vec());
                }
            }
            None => {}
        }
        hex::encode(hasher.finalize())
    }
}

pub async fn replace(state: &State, caller: &Identity, id: &str, r: Replacement) -> Result<Outcome> {
    validate_package_id(id, "id")?;
    validate_name(&r.name)?;
    validate_description(&r.description)?;
    validate_request_id(&r.request_id)?;
    let request = RequestKey::new(caller, &r.request_id, "ReplacePackage", r.fingerprint(id));
    let _guard = state.lock(&package_lock(id)).await;
    let mut package = load_visible(state, caller, id)?;
    require(state, caller, &package.source_environment, Permission::PackageWrite).await?;
    let env = source_environment(state, &package)?;
    let definition = check_definition(&env, r.definition, state.config.limits.max_package_objects)?;
    if let Some(previous) = repeated(state, request.as_ref())? {
        return Ok(Outcome { package: previous, extraction: None });
    }
    check_etag(&package, &r.etag)?;
    if !package.status.allows_redefinition() {
        return Err(PackageError::NotEditable { id: package.id, status: package.status });
    }
    let mut write = Write::default();
    let extraction = match definition {
        Definition::Extract(roots) => redefine(state, caller, &env, &mut package, roots, &r.request_id, &mut write),
        Definition::Given(content) => {
            let built = build_given(&env, content, state.config.limits.stream_chunk_bytes).await?;
            package.object_collections = Vec::new();
            package.warnings = Vec::new();
            store_definition(&mut write, &mut package, built);
            None
        }
    };
    package.name = r.name;
    package.description = r.description;
    package.is_private = r.is_private;
    package.touch(Utc::now());
    let replaced = event(caller, &package, "PACKAGE_REPLACED")
        .request_id(&r.request_id)
        .detail("re_extract", extraction.is_some())
        .detail("version", package.version);
    write.put(replaced.record_key(), &replaced);
    if let Some(req) = &request {
        req.record(&mut write, &package);
    }
    put_package(&mut write, &package);
    state.store.apply(write).await?;
    state.watchers.publish(&package);
    Ok(Outcome { package, extraction })
}

/// A ReplacePackage definition, present and valid against the source's catalog.
fn check_definition(env: &EnvironmentInfo, definition: Option<Definition>, max_objects: usize) -> Result<Definition> {
    let Some(definition) = definition else {
        return Err(invalid(
            "MISSING_FIELD",
            "definition",
            "ReplacePackage needs a new definition: object_collections (re-extract) or entities",
        ));
    };
    match &definition {
        Definition::Extract(roots) => validate_roots(&env.catalog, roots, max_objects)?,
        Definition::Given(content) => {
            definitions::validate(&env.catalog, content).map_err(|rej| PackageError::Invalid {
                reason: rej.reason,
                field: rej.field,
                message: rej.message,
            })?;
            if content.objects.len() > max_objects {
                return Err(PackageError::TooLarge {
                    field: "entities.objects".into(),
                    message: format!("a package holds at most {max_objects} objects"),
                });
            }
        }
    }
    Ok(definition)
}

/// Builds a definition given whole, off the async threads (it may be large).
async fn build_given(env: &EnvironmentInfo, mut content: Content, budget: usize) -> Result<Built> {
    definitions::strip_excluded_fields(&env.catalog, &mut content);
    let catalog = env.catalog.clone();
    tokio::task::spawn_blocking(move || definitions::build(&catalog, &[], content, budget))
        .await
        .map_err(|e| PackageError::Store(super::store::StoreError(format!("building the definition failed: {e}"))))?
        .map_err(|message| invalid("OBJECT_TOO_LARGE", "entities", message))
}

pub async fn delete(state: &State, caller: &Identity, id: &str, etag: &str) -> Result<()> {
    validate_package_id(id, "id")?;
    let _guard = state.lock(&package_lock(id)).await;
    let package = load_visible(state, caller, id)?;
    require(state, caller, &package.source_environment, Permission::PackageWrite).await?;
    check_etag(&package, etag)?;
    let mut write = Write::default();
    write.delete(keys::package(id));
    write.delete(keys::organization_index(&package.organization, id));
    write.delete(keys::extracting(id));
    for prefix in [keys::definitions_prefix(id), keys::installations_prefix(id)] {
        for item in state.store.scan(&prefix, false) {
            write.delete(item?.0);
        }
    }
    let deleted = event(caller, &package, "PACKAGE_DELETED")
        .detail("version", package.version)
        .detail("status", package.status.as_str());
    write.put(deleted.record_key(), &deleted);
    state.store.apply(write).await?;
    state.watchers.deleted(id);
    Ok(())
}

/// RecordInstallation input.
#[derive(Debug, Clone)]
pub struct InstallationReport {
    pub package_id: String,
    pub package_version: i64,
    pub installation_id: String,
    pub destination_environment: String,
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
    if !caller.allows(Permission::RecordInstallation, destination) {
        return Err(denied(state, caller, destination, Permission::RecordInstallation).await);
    }
    validate_package_id(&report.package_id, "package_id")?;
    validate_installation_id(&report.installation_id)?;
    if report.package_version < 1 {
        return Err(invalid("INVALID_VERSION", "package_version", "package_version must be 1 or more"));
    }
    let id = report.package_id.as_str();
    let _guard = state.lock(&package_lock(id)).await;
    let mut package =
        state.store.get::<Package>(&keys::package(id))?.ok_or_else(|| PackageError::NotFound(id.to_string()))?;
    state
        .directory
        .get(destination)
        .filter(|e| e.organization == package.organization)
        .ok_or_else(|| PackageError::EnvironmentNotFound(destination.to_string()))?;
    let key = keys::installation(id, &report.installation_id);
    if state.store.get_raw(&key)?.is_some() {
        return Ok((false, package.installation_counts));
    }
    if !package.has_definition || report.package_version > package.version {
        return Err(PackageError::VersionNotFound { id: package.id, version: report.package_version });
    }
    let now = Utc::now();
    package.count_installation(destination);
    let mut write = Write::default();
    let record = InstallationRecord {
        destination_environment: destination.to_string(),
        package_version: report.package_version,
        recorded_by: caller.subject.clone(),
        time: now,
    };
    write.put(key, &record);
    let recorded = event(caller, &package, "INSTALLATION_RECORDED")
        .detail("installation_id", report.installation_id.as_str())
        .detail("destination_environment", destination)
        .detail("package_version", report.package_version);
    write.put(recorded.record_key(), &recorded);
    put_package(&mut write, &package);
    state.store.apply(write).await?;
    state.watchers.publish(&package);
    Ok((true, package.installation_counts))
}

/// Applies the end of an extraction: the new definition version and BUILDING, or
/// EXTRACTION_FAILED with the reason. A result for a package that was deleted or has
/// moved on (another attempt) is dropped.
pub async fn finish_extraction(
    state: &State,
    job: &Job,
    outcome: std::result::Result<Extracted, String>,
) -> Result<()> {
    let _guard = state.lock(&package_lock(&job.package_id)).await;
    let Some(mut package) = state.store.get::<Package>(&keys::package(&job.package_id))? else { return Ok(()) };
    if !package.awaits(&job.attempt) {
        return Ok(());
    }
    let write = match outcome {
        Ok(extracted) => mark_extracted(job, &mut package, extracted),
        Err(reason) => mark_failed(&job.caller, &job.request_id, &mut package, reason),
    };
    if let Err(e) = state.store.apply(write).await {
        if package.status != Status::Building {
            return Err(e.into());
        }
        // The definition could not be stored: the package must not stay EXTRACTING.
        tracing::error!(package = %package.id, error = %e, "storing an extracted definition failed");
        let current = state.store.get::<Package>(&keys::package(&job.package_id))?;
        let Some(current) = current.filter(|p| p.awaits(&job.attempt)) else { return Ok(()) };
        package = current;
        let reason = format!("the extracted definition could not be stored: {e}");
        state.store.apply(mark_failed(&job.caller, &job.request_id, &mut package, reason)).await?;
    }
    state.watchers.publish(&package);
    Ok(())
}

/// The write making `extracted` the package's next version, in BUILDING.
fn mark_extracted(job: &Job, package: &mut Package, extracted: Extracted) -> Write {
    let mut write = Write::default();
    package.warnings = extracted.warnings;
    store_definition(&mut write, package, extracted.built);
    package.touch(Utc::now());
    let e = event(&job.caller, package, "PACKAGE_EXTRACTED")
        .request_id(&job.request_id)
        .detail("version", package.version)
        .detail("digest", package.digest.as_str())
        .detail("objects", package.entity_counts.values().sum::<i64>());
    write.put(e.record_key(), &e);
    put_package(&mut write, package);
    write
}

/// The write moving an extracting package to EXTRACTION_FAILED with `reason`.
fn mark_failed(actor: &Identity, request_id: &str, package: &mut Package, reason: String) -> Write {
    package.status = Status::ExtractionFailed;
    package.failure_reason = reason;
    package.extraction = None;
    package.touch(Utc::now());
    let e = event(actor, package, "PACKAGE_EXTRACTION_FAILED")
        .request_id(request_id)
        .detail("failure_reason", package.failure_reason.as_str());
    let mut write = Write::default();
    write.put(e.record_key(), &e);
    put_package(&mut write, package);
    write
}

/// Start-up recovery: an extraction found in progress was cut short by a stop of the
/// service, so its package becomes EXTRACTION_FAILED. Returns how many were found.
pub async fn recover(state: &State) -> Result<usize> {
    let mut recovered = 0;
    for item in state.store.scan(keys::EXTRACTING_PREFIX, false) {
        let (key, _) = item?;
        let id = String::from_utf8_lossy(&key[keys::EXTRACTING_PREFIX.len()..]).into_owned();
        let write = match state.store.get::<Package>(&keys::package(&id))? {
            Some(mut package) if package.status == Status::Extracting => {
                let service = Identity {
                    subject: SERVICE_NAME.into(),
                    organization: package.organization.clone(),
                    bindings: Vec::new(),
                    expires_at: 0,
                };
                recovered += 1;
                mark_failed(&service, "", &mut package, INTERRUPTED.to_string())
            }
            _ => {
                let mut stale = Write::default();
                stale.delete(key);
                stale
            }
        };
        state.store.apply(write).await?;
    }
    Ok(recovered)
}

/// Writes the definition as the package's next version and makes it current.
fn store_definition(write: &mut Write, package: &mut Package, built: Built) {
    let version = package.next_version();
    let info = HeaderInfo {
        package_id: &package.id,
        version,
        organization: &package.organization,
        source_environment: &package.source_environment,
    };
    write.put_raw(keys::definition_header(&package.id, version), definitions::header(&built, info));
    for (n, chunk) in built.chunks.into_iter().enumerate() {
        write.put_raw(keys::definition_chunk(&package.id, version, n), chunk);
    }
    package.version = version;
    package.has_definition = true;
    package.digest = built.digest;
    package.entity_counts = built.entity_counts;
    package.metadata = built.metadata;
    package.status = Status::Building;
    package.failure_reason.clear();
    package.extraction = None;
}

/// The package record and its indexes.
fn put_package(write: &mut Write, package: &Package) {
    write.put(keys::package(&package.id), package);
    write.put_raw(keys::organization_index(&package.organization, &package.id), Vec::new());
    if package.status == Status::Extracting {
        write.put_raw(keys::extracting(&package.id), Vec::new());
    } else {
        write.delete(keys::extracting(&package.id));
    }
}

/// An audit event about `package`, in the package's organization.
fn event(actor: &Identity, package: &Package, action: &str) -> AuditEvent {
    let mut e = AuditEvent::new(SERVICE_NAME, actor, &package.source_environment, action, ("package", &package.id));
    e.organization = package.organization.clone();
    e
}

fn package_lock(id: &str) -> String {
    format!("pkg/{id}")
}

/// The package if it exists in the caller's organization; another organization's
/// package is indistinguishable from a missing one.
fn load_visible(state: &State, caller: &Identity, id: &str) -> Result<Package> {
    state
        .store
        .get::<Package>(&keys::package(id))?
        .filter(|p| p.organization == caller.organization)
        .ok_or_else(|| PackageError::NotFound(id.to_string()))
}

fn visible_environment(state: &State, caller: &Identity, env: &str) -> Result<Arc<EnvironmentInfo>> {
    state.directory.visible(caller, env).ok_or_else(|| PackageError::EnvironmentNotFound(env.to_string()))
}

/// The package's source environment, which a re-extraction reads from.
fn source_environment(state: &State, package: &Package) -> Result<Arc<EnvironmentInfo>> {
    state
        .directory
        .get(&package.source_environment)
        .filter(|e| e.organization == package.organization)
        .ok_or_else(|| PackageError::EnvironmentNotFound(package.source_environment.clone()))
}

async fn require(state: &State, caller: &Identity, env: &str, p: Permission) -> Result<()> {
    if caller.allows(p, env) {
        Ok(())
    } else {
        Err(denied(state, caller, env, p).await)
    }
}

async fn denied(state: &State, caller: &Identity, env: &str, p: Permission) -> PackageError {
    state.audit_denied(caller, env, p).await;
    PackageError::PermissionDenied { permission: p, environment: env.to_string() }
}

fn check_etag(package: &Package, etag: &str) -> Result<()> {
    if etag.is_empty() || etag == package.etag() {
        Ok(())
    } else {
        Err(PackageError::EtagMismatch { id: package.id.clone(), given: etag.to_string() })
    }
}

/// Where a request id of one caller is remembered.
struct RequestKey {
    key: Vec<u8>,
    lock: String,
    method: &'static str,
    fingerprint: String,
}

impl RequestKey {
    fn new(caller: &Identity, request_id: &str, method: &'static str, fingerprint: String) -> Option<RequestKey> {
        (!request_id.is_empty()).then(|| RequestKey {
            key: keys::request(&caller.organization, &caller.subject, request_id),
            lock: format!("req/{}/{}/{request_id}", caller.organization, caller.subject),
            method,
            fingerprint,
        })
    }

    fn record(&self, write: &mut Write, package: &Package) {
        let record = RequestRecord {
            method: self.method.to_string(),
            fingerprint: self.fingerprint.clone(),
            package_id: package.id.clone(),
            first_response: package.clone(),
        };
        write.put(self.key.clone(), &record);
    }
}

/// The answer to a repeated request: the package as it is now (or as first returned, if
/// it has since been deleted). A request id reused for another request is refused.
fn repeated(state: &State, request: Option<&RequestKey>) -> Result<Option<Package>> {
    let Some(request) = request else { return Ok(None) };
    let Some(record) = state.store.get::<RequestRecord>(&request.key)? else { return Ok(None) };
    if record.method != request.method || record.fingerprint != request.fingerprint {
        return Err(invalid(
            "REQUEST_ID_REUSED",
            "request_id",
            format!("request_id was already used for another {} request", record.method),
        ));
    }
    let current = state.store.get::<Package>(&keys::package(&record.package_id))?;
    Ok(Some(current.unwrap_or(record.first_response)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::mode::{configs, DevOptions};
    use crate::proto::v1 as pb;
    use crate::shared::auth::{Binding, Role, TokenSigner};
    use crate::shared::config::{LogFormat, ServiceKind};
    use crate::shared::directory::Directory;
    use crate::shared::objects::EntityRef;

    fn state(dir: &std::path::Path) -> State {
        let opts = DevOptions {
            data_dir: dir.to_path_buf(),
            package_addr: "127.0.0.1:1".parse().unwrap(),
            installation_addr: "127.0.0.1:2".parse().unwrap(),
            log_format: LogFormat::Text,
        };
        let (config, _) = configs(&opts);
        let catalogs = config.validate(ServiceKind::Package).unwrap();
        let directory = Directory::from_config(&config, &catalogs);
        let store = super::super::store::Store::open(&config.data_dir).unwrap();
        let signer = Arc::new(TokenSigner::new(config.auth.signing_key.as_bytes(), &config.auth.issuer));
        State::new(config, directory, store, signer)
    }

    fn alice() -> Identity {
        Identity {
            subject: "alice".into(),
            organization: "acme".into(),
            bindings: vec![Binding { role: Role::Publisher, environment: "dev".into() }],
            expires_at: i64::MAX,
        }
    }

    fn template_roots() -> Vec<ObjectCollection> {
        vec![ObjectCollection {
            obj_code: "TMPL".into(),
            entities: vec![EntityRef { id: format!("{:032x}", 1), name: "Onboarding".into() }],
        }]
    }

    fn new_package() -> NewPackage {
        NewPackage {
            name: "Agency Onboarding".into(),
            description: String::new(),
            source_environment: "dev".into(),
            object_collections: template_roots(),
            is_private: false,
            request_id: String::new(),
        }
    }

    fn extracted(state: &State, template_name: &str) -> Extracted {
        let tmpl = pb::ConfigObject {
            obj_code: "TMPL".into(),
            id: format!("{:032x}", 1),
            name: template_name.into(),
            ..Default::default()
        };
        let catalog = state.directory.get("dev").unwrap().catalog.clone();
        let content = Content { objects: vec![tmpl], external_references: vec![] };
        Extracted { built: definitions::build(&catalog, &["TMPL".into()], content, 1024).unwrap(), warnings: vec![] }
    }

    fn actions(state: &State) -> Vec<String> {
        state
            .store
            .scan(crate::shared::audit::RECORD_PREFIX, false)
            .map(|r| serde_json::from_slice::<AuditEvent>(&r.unwrap().1).unwrap().action)
            .collect()
    }

    #[tokio::test]
    async fn start_up_recovery_fails_interrupted_extractions_and_late_results_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path());
        let created = create(&state, &alice(), new_package()).await.unwrap();
        assert_eq!(created.package.status, Status::Extracting);
        let job = created.extraction.expect("an extraction to start");
        assert_eq!(recover(&state).await.unwrap(), 1);
        let package = get(&state, &alice(), &job.package_id).await.unwrap();
        assert_eq!(package.status, Status::ExtractionFailed);
        assert_eq!(package.failure_reason, INTERRUPTED);
        assert_eq!(recover(&state).await.unwrap(), 0, "the in-progress index was cleared");
        finish_extraction(&state, &job, Ok(extracted(&state, "Onboarding"))).await.unwrap();
        let after = get(&state, &alice(), &job.package_id).await.unwrap();
        assert_eq!(after, package, "a result for an abandoned attempt changes nothing");
        assert_eq!(actions(&state), vec!["PACKAGE_CREATED", "PACKAGE_EXTRACTION_FAILED"]);
    }

    #[tokio::test]
    async fn each_extraction_stores_a_new_version_and_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path());
        let job = create(&state, &alice(), new_package()).await.unwrap().extraction.unwrap();
        finish_extraction(&state, &job, Ok(extracted(&state, "Onboarding"))).await.unwrap();
        let v1 = get(&state, &alice(), &job.package_id).await.unwrap();
        assert_eq!((v1.status, v1.version, v1.has_definition), (Status::Building, 1, true));
        let v1_messages: Vec<_> =
            definition(&state, &alice(), &v1.id, 1).await.unwrap().1.map(|r| r.unwrap().1).collect();
        assert_eq!(v1_messages.len(), 2, "a header and one chunk");

        let changes = Changes { object_collections: Some(template_roots()), ..Default::default() };
        let outcome = update(&state, &alice(), &v1.id, &v1.etag(), changes).await.unwrap();
        assert_eq!((outcome.package.status, outcome.package.version), (Status::Extracting, 1));
        let stale = update(&state, &alice(), &v1.id, &v1.etag(), Changes::default()).await.unwrap_err();
        assert!(matches!(stale, PackageError::EtagMismatch { .. }));
        finish_extraction(&state, &outcome.extraction.unwrap(), Ok(extracted(&state, "Onboarding v2"))).await.unwrap();
        let v2 = get(&state, &alice(), &v1.id).await.unwrap();
        assert_eq!((v2.status, v2.version), (Status::Building, 2));
        assert_ne!(v2.digest, v1.digest);
        let again: Vec<_> = definition(&state, &alice(), &v1.id, 1).await.unwrap().1.map(|r| r.unwrap().1).collect();
        assert_eq!(again, v1_messages);
        assert!(matches!(
            definition(&state, &alice(), &v1.id, 3).await.err(),
            Some(PackageError::VersionNotFound { version: 3, .. })
        ));
    }

    #[tokio::test]
    async fn a_failed_re_extraction_keeps_the_current_version() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path());
        let job = create(&state, &alice(), new_package()).await.unwrap().extraction.unwrap();
        finish_extraction(&state, &job, Ok(extracted(&state, "Onboarding"))).await.unwrap();
        let v1 = get(&state, &alice(), &job.package_id).await.unwrap();
        let changes = Changes { object_collections: Some(template_roots()), ..Default::default() };
        let job = update(&state, &alice(), &v1.id, "", changes).await.unwrap().extraction.unwrap();
        finish_extraction(&state, &job, Err("installation service at x unreachable".into())).await.unwrap();
        let failed = get(&state, &alice(), &v1.id).await.unwrap();
        assert_eq!(
            (failed.status, failed.version, failed.digest.as_str()),
            (Status::ExtractionFailed, 1, v1.digest.as_str())
        );
        assert_eq!(failed.failure_reason, "installation service at x unreachable");
        assert_eq!(definition(&state, &alice(), &v1.id, 0).await.unwrap().0, 1);
    }
}
