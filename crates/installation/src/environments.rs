//! The configuration registry's rules: validating and applying object batches, deleting
//! with children and referrers, and computing the export closure of package roots.
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use promotion_core::audit::AuditEvent;
use promotion_core::catalog::Catalog;
use promotion_core::directory::EnvironmentInfo;
use promotion_core::identity::Identity;
use promotion_core::objects::{new_object_id, ConfigObject, ExternalReference, ObjectCollection, ObjectKey};
use promotion_core::validate::{self, Violation};
use promotion_store::installation::{Committed, EnvWrite, Record};
use promotion_store::{InstallationStore, StoreError};

use crate::error::InstallError;
use crate::idempotency::RequestUse;
use crate::refusal::Refusal;
use crate::state::{State, SERVICE_NAME};

/// Errors of the environment area.
#[derive(Debug)]
pub enum EnvError {
    EnvironmentNotFound(String),
    ObjectNotFound(ObjectKey),
    /// Malformed input, whatever the environment holds (INVALID_ARGUMENT).
    Invalid {
        reason: &'static str,
        field: String,
        message: String,
    },
    /// The environment's state does not allow it (FAILED_PRECONDITION).
    Conflict {
        reason: &'static str,
        objects: Vec<String>,
        message: String,
    },
    /// Over a documented limit (RESOURCE_EXHAUSTED `LIMIT_EXCEEDED` naming it).
    TooLarge {
        limit: &'static str,
        field: String,
        message: String,
    },
    Refused(Refusal),
    Store(StoreError),
}

impl From<Refusal> for EnvError {
    fn from(e: Refusal) -> Self {
        EnvError::Refused(e)
    }
}

impl From<Violation> for EnvError {
    fn from(v: Violation) -> Self {
        match v {
            Violation::Invalid { reason, field, message } => EnvError::Invalid { reason, field, message },
            Violation::TooLarge { limit, field, message, .. } => EnvError::TooLarge { limit, field, message },
        }
    }
}

impl From<StoreError> for EnvError {
    fn from(e: StoreError) -> Self {
        EnvError::Store(e)
    }
}

impl std::fmt::Display for EnvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvError::EnvironmentNotFound(id) => write!(f, "environment {id} not found"),
            EnvError::ObjectNotFound(k) => write!(f, "object {k} not found"),
            EnvError::Invalid { message, .. }
            | EnvError::Conflict { message, .. }
            | EnvError::TooLarge { message, .. } => f.write_str(message),
            EnvError::Refused(r) => write!(f, "{r}"),
            EnvError::Store(e) => write!(f, "{e}"),
        }
    }
}

fn invalid(reason: &'static str, field: impl Into<String>, message: impl Into<String>) -> EnvError {
    EnvError::Invalid { reason, field: field.into(), message: message.into() }
}

fn conflict(reason: &'static str, objects: Vec<String>, message: impl Into<String>) -> EnvError {
    EnvError::Conflict { reason, objects, message: message.into() }
}

/// The reason of a PutObjects refused because an object changed since the caller read it;
/// mapped to ABORTED (a concurrency failure, not a state the caller can fix in place).
pub const REVISION_MISMATCH: &str = "REVISION_MISMATCH";

/// PutObjects: validates the batch under the environment's lock and writes it, with its
/// audit event, in one atomic step. A retry with the same request id and body answers what
/// the first call answered.
pub async fn put_objects(
    state: &State,
    caller: &Identity,
    info: &EnvironmentInfo,
    objects: Vec<ConfigObject>,
    expected_revisions: &HashMap<String, u64>,
    request_id: &str,
) -> Result<Committed, EnvError> {
    let max = state.config.limits.max_objects_per_put;
    if objects.len() > max {
        return Err(EnvError::TooLarge {
            limit: "max_objects_per_put",
            field: "objects".into(),
            message: format!("at most {max} objects per call"),
        });
    }
    let mut expected: Vec<(&String, &u64)> = expected_revisions.iter().collect();
    expected.sort();
    let request = RequestUse::new(caller, request_id, "PutObjects", &(&info.id, &objects, expected));
    let tx = state.store.lock(&info.id).await?;
    if let Some((revision, keys)) = first_response::<(u64, Vec<ObjectKey>)>(state, request.as_ref()).await? {
        drop(tx);
        return Ok(Committed { revision, objects: current(state.store.as_ref(), &info.id, &keys).await? });
    }
    let mut write = plan_put(state.store.as_ref(), &info.id, &info.catalog, objects, expected_revisions).await?;
    let event = AuditEvent::new(SERVICE_NAME, caller, &info.id, "OBJECTS_PUT", ("environment", &info.id))
        .request_id(request_id)
        .detail("count", write.upserts.len() as u64);
    write.record(Record::audit(event));
    if let Some(r) = &request {
        // The keys (generated ids included) and the revision, in the same atomic step: a
        // retry never writes the batch twice.
        let revision = state.store.env_state(&info.id).await?.revision + 1;
        let keys: Vec<ObjectKey> = write.upserts.iter().map(ConfigObject::key).collect();
        let response = serde_json::to_value((revision, keys)).expect("keys serialise");
        write.record(r.record_response(&info.id, response));
    }
    Ok(tx.commit(write).await?)
}

/// The objects a first PutObjects wrote, as they are now (exactly its response unless a
/// later write changed them).
async fn current(store: &dyn InstallationStore, env: &str, keys: &[ObjectKey]) -> Result<Vec<ConfigObject>, EnvError> {
    let mut objects = Vec::with_capacity(keys.len());
    for k in keys {
        objects.extend(store.get(env, k).await?);
    }
    Ok(objects)
}

/// DeleteObject: the object and (with cascade) what it owns, dropping references to them.
pub async fn delete_object(
    state: &State,
    caller: &Identity,
    info: &EnvironmentInfo,
    key: &ObjectKey,
    cascade: bool,
    request_id: &str,
) -> Result<(Vec<ObjectKey>, u64), EnvError> {
    let request = RequestUse::new(caller, request_id, "DeleteObject", &(&info.id, key, cascade));
    let tx = state.store.lock(&info.id).await?;
    if let Some(first) = first_response::<(Vec<ObjectKey>, u64)>(state, request.as_ref()).await? {
        return Ok(first);
    }
    let mut write = plan_delete(state.store.as_ref(), &info.id, key, cascade).await?;
    let deleted = write.deletes.clone();
    let event = AuditEvent::new(SERVICE_NAME, caller, &info.id, "OBJECT_DELETED", (&key.obj_code, &key.id))
        .request_id(request_id)
        .detail("deleted", deleted.len() as u64)
        .detail("cascade", cascade);
    write.record(Record::audit(event));
    if let Some(r) = &request {
        let revision = state.store.env_state(&info.id).await?.revision + 1;
        let response = serde_json::to_value((&deleted, revision)).expect("keys serialise");
        write.record(r.record_response(&info.id, response));
    }
    let committed = tx.commit(write).await?;
    Ok((deleted, committed.revision))
}

/// The first response of a repeated request, as it was recorded.
async fn first_response<T: serde::de::DeserializeOwned>(
    state: &State,
    request: Option<&RequestUse>,
) -> Result<Option<T>, EnvError> {
    let Some(request) = request else { return Ok(None) };
    match request.first_record(state.store.as_ref()).await {
        Ok(None) => Ok(None),
        Ok(Some(record)) => {
            let response = record.response.and_then(|r| serde_json::from_value(r).ok());
            response.map(Some).ok_or_else(|| EnvError::Store(StoreError::corrupt("a request record lost its response")))
        }
        Err(InstallError::Invalid { reason, field, message }) => Err(EnvError::Invalid { reason, field, message }),
        Err(InstallError::Store(e)) => Err(EnvError::Store(e)),
        Err(other) => Err(EnvError::Store(StoreError::corrupt(other.to_string()))),
    }
}

/// ExportObjects: the closure of `roots`, read under the write lock so that it is one
/// consistent revision.
pub async fn export_roots(
    state: &State,
    info: &EnvironmentInfo,
    roots: &[ObjectCollection],
) -> Result<Export, EnvError> {
    let _tx = state.store.lock(&info.id).await?;
    export(state.store.as_ref(), &info.id, &info.catalog, roots).await
}

/// Checks a batch for PutObjects and turns it into the changes to apply. Ids left empty
/// are generated. Everything is validated before anything is written. `expected_revisions`
/// (object id -> revision, 0 = no check) makes the batch conditional: the caller holds the
/// environment's write lock, so a revision checked here is still the one written over.
pub async fn plan_put(
    store: &dyn InstallationStore,
    env: &str,
    catalog: &Catalog,
    mut objects: Vec<ConfigObject>,
    expected_revisions: &HashMap<String, u64>,
) -> Result<EnvWrite, EnvError> {
    let mut batch_keys: HashMap<String, String> = HashMap::new();
    for (i, o) in objects.iter_mut().enumerate() {
        if o.id.is_empty() {
            o.id = new_object_id();
        }
        validate::object(catalog, o, &format!("objects[{i}]"))?;
        if batch_keys.insert(o.id.clone(), o.obj_code.clone()).is_some() {
            return Err(invalid(
                "DUPLICATE_OBJECT",
                format!("objects[{i}].id"),
                format!("object {} appears twice in the batch", o.id),
            ));
        }
    }
    check_expected_revisions(store, env, &batch_keys, expected_revisions).await?;
    // State checks: ids keep their type, parents and references exist, names stay unique.
    for o in &objects {
        if let Some(existing) = store.get_by_id(env, &o.id).await? {
            if existing.obj_code != o.obj_code {
                return Err(conflict(
                    "ID_TYPE_MISMATCH",
                    vec![o.id.clone()],
                    format!("id {} already belongs to a {}", o.id, existing.obj_code),
                ));
            }
        }
        if let Some(p) = &o.parent {
            if !exists(store, env, &batch_keys, p).await? {
                return Err(conflict(
                    "PARENT_NOT_FOUND",
                    vec![p.to_string()],
                    format!("parent {p} of {} does not exist", o.key()),
                ));
            }
        }
        for r in &o.references {
            if !exists(store, env, &batch_keys, &r.key()).await? {
                return Err(conflict(
                    "REFERENCE_NOT_FOUND",
                    vec![r.key().to_string()],
                    format!("{} references {} ({}), which does not exist", o.key(), r.key(), r.field),
                ));
            }
        }
    }
    check_parent_cycles(store, env, &objects).await?;
    check_unique_names(store, env, catalog, &objects).await?;
    Ok(EnvWrite { upserts: objects, ..Default::default() })
}

/// A stale batch is refused before any other state check: what the caller changed was
/// computed from an object that is no longer there as they read it.
async fn check_expected_revisions(
    store: &dyn InstallationStore,
    env: &str,
    batch_keys: &HashMap<String, String>,
    expected_revisions: &HashMap<String, u64>,
) -> Result<(), EnvError> {
    let mut expected: Vec<(&String, &u64)> = expected_revisions.iter().filter(|(_, r)| **r > 0).collect();
    expected.sort();
    if let Some((id, _)) = expected.iter().find(|(id, _)| !batch_keys.contains_key(id.as_str())) {
        return Err(invalid(
            "INVALID_EXPECTED_REVISION",
            format!("expected_revisions[{id}]"),
            format!("expected_revisions names {id}, which is not an object of this call"),
        ));
    }
    let mut stale = Vec::new();
    let mut why = Vec::new();
    for (id, revision) in expected {
        let key = ObjectKey { obj_code: batch_keys[id.as_str()].clone(), id: id.clone() };
        match store.get_by_id(env, id).await? {
            Some(current) if current.revision == *revision => continue,
            Some(current) => why.push(format!("{key} was read at revision {revision}, is now at {}", current.revision)),
            None => why.push(format!("{key} was read at revision {revision}, has been deleted since")),
        }
        stale.push(key.to_string());
    }
    if stale.is_empty() {
        return Ok(());
    }
    Err(EnvError::Conflict {
        reason: REVISION_MISMATCH,
        objects: stale,
        message: format!(
            "objects changed since they were read ({}); nothing was written: read them again and re-apply the change",
            why.join("; ")
        ),
    })
}

/// Whether `k` exists in the batch or in the environment.
async fn exists(
    store: &dyn InstallationStore,
    env: &str,
    batch_keys: &HashMap<String, String>,
    k: &ObjectKey,
) -> Result<bool, EnvError> {
    if let Some(code) = batch_keys.get(&k.id) {
        return Ok(code == &k.obj_code);
    }
    Ok(store.get(env, k).await?.is_some())
}

/// Refuses a batch whose ownership chains, through the batch and the environment, loop or
/// are longer than the documented maximum.
pub async fn check_parent_cycles(
    store: &dyn InstallationStore,
    env: &str,
    objects: &[ConfigObject],
) -> Result<(), EnvError> {
    let outside = ancestors(store, env, objects).await?;
    match validate::parent_cycle(objects, |k| outside.get(k).cloned()) {
        None => Ok(()),
        Some((key, reason)) => {
            let message = if reason == "PARENT_CYCLE" {
                format!("{key} would own itself")
            } else {
                format!("{key} would be owned more than {} levels deep", validate::MAX_PARENT_DEPTH)
            };
            Err(conflict(reason, vec![key.to_string()], message))
        }
    }
}

/// The environment's parents of every object the batch's ownership chains reach, walked up
/// at most [`validate::MAX_PARENT_DEPTH`] levels with a visited set.
async fn ancestors(
    store: &dyn InstallationStore,
    env: &str,
    objects: &[ConfigObject],
) -> Result<HashMap<ObjectKey, Option<ObjectKey>>, EnvError> {
    let in_batch: HashSet<ObjectKey> = objects.iter().map(|o| o.key()).collect();
    let mut known: HashMap<ObjectKey, Option<ObjectKey>> = HashMap::new();
    let mut frontier: Vec<ObjectKey> =
        objects.iter().filter_map(|o| o.parent.clone()).filter(|p| !in_batch.contains(p)).collect();
    for _ in 0..=validate::MAX_PARENT_DEPTH {
        let mut next = Vec::new();
        for k in frontier {
            if in_batch.contains(&k) || known.contains_key(&k) {
                continue;
            }
            let parent = store.get(env, &k).await?.and_then(|o| o.parent);
            next.extend(parent.clone());
            known.insert(k, parent);
        }
        if next.is_empty() {
            break;
        }
        frontier = next;
    }
    Ok(known)
}

async fn check_unique_names(
    store: &dyn InstallationStore,
    env: &str,
    catalog: &Catalog,
    objects: &[ConfigObject],
) -> Result<(), EnvError> {
    let mut claimed: HashMap<(&str, &str), &str> = HashMap::new();
    let batch_ids: HashSet<&str> = objects.iter().map(|o| o.id.as_str()).collect();
    for o in objects.iter().filter(|o| catalog.get(&o.obj_code).is_some_and(|t| t.unique_names)) {
        if let Some(other) = claimed.insert((&o.obj_code, &o.name), &o.id) {
            return Err(conflict(
                "NAME_CONFLICT",
                vec![other.into(), o.id.clone()],
                format!("two {} objects in the batch are named {:?}", o.obj_code, o.name),
            ));
        }
        for id in store.ids_named(env, &o.obj_code, &o.name).await? {
            // An object being renamed away in this batch frees its name.
            let renamed_away =
                batch_ids.contains(id.as_str()) && objects.iter().any(|b| b.id == id && b.name != o.name);
            if id != o.id && !renamed_away {
                return Err(conflict(
                    "NAME_CONFLICT",
                    vec![id.clone()],
                    format!(
                        "a {} named {:?} already exists ({id}); {} names are unique",
                        o.obj_code, o.name, o.obj_code
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// What deleting `key` takes with it: the object and (with cascade) its owned descendants,
/// plus the referrers whose references to them are dropped.
pub async fn plan_delete(
    store: &dyn InstallationStore,
    env: &str,
    key: &ObjectKey,
    cascade: bool,
) -> Result<EnvWrite, EnvError> {
    if store.get(env, key).await?.is_none() {
        return Err(EnvError::ObjectNotFound(key.clone()));
    }
    let mut doomed = vec![key.clone()];
    // Whatever shape the environment holds (a cycle written before the rules said
    // otherwise), each object is visited once.
    let mut seen: HashSet<ObjectKey> = HashSet::from([key.clone()]);
    let mut i = 0;
    while i < doomed.len() {
        let children = store.children(env, &doomed[i].id).await?;
        if !children.is_empty() && !cascade {
            let ids = children.iter().map(|c| c.to_string()).collect();
            return Err(conflict(
                "HAS_CHILDREN",
                ids,
                format!(
                    "{key} still owns {} objects (ListObjects with parent_id {} lists them); delete them first or set cascade",
                    children.len(),
                    key.id
                ),
            ));
        }
        doomed.extend(children.into_iter().filter(|c| seen.insert(c.clone())));
        i += 1;
    }
    let doomed_ids: HashSet<&str> = doomed.iter().map(|k| k.id.as_str()).collect();
    let mut referrers: BTreeMap<ObjectKey, ()> = BTreeMap::new();
    for k in &doomed {
        for r in store.referrers(env, &k.id).await? {
            if !doomed_ids.contains(r.id.as_str()) {
                referrers.insert(r, ());
            }
        }
    }
    if !referrers.is_empty() && !cascade {
        let ids = referrers.keys().map(|k| k.to_string()).collect();
        return Err(conflict(
            "REFERENCED",
            ids,
            format!("{key} is still referenced by {} objects; set cascade to drop those references", referrers.len()),
        ));
    }
    let mut upserts = Vec::new();
    for r in referrers.keys() {
        if let Some(mut o) = store.get(env, r).await? {
            o.references.retain(|x| !doomed_ids.contains(x.id.as_str()));
            upserts.push(o);
        }
    }
    Ok(EnvWrite { upserts, deletes: doomed, ..Default::default() })
}

/// Warnings an export keeps.
const MAX_WARNINGS: usize = 20;

/// The closure of a package's roots, as a package carries it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Export {
    pub objects: Vec<ConfigObject>,
    pub external_references: Vec<ExternalReference>,
    pub warnings: Vec<String>,
    pub install_order: Vec<String>,
    pub revision: u64,
}

/// Each root plus the transitive closure of its children and references whose types are
/// in the root type's included set; everything else it points at becomes an external
/// reference. Every object appears once; excluded fields and references to never-carried
/// types are dropped.
pub async fn export(
    store: &dyn InstallationStore,
    env: &str,
    catalog: &Catalog,
    roots: &[ObjectCollection],
) -> Result<Export, EnvError> {
    catalog.validate_roots(roots).map_err(|e| EnvError::Invalid {
        reason: e.reason,
        field: e.field,
        message: e.message,
    })?;
    let mut out = Export { revision: store.env_state(env).await?.revision, ..Default::default() };
    let mut emitted: HashMap<String, usize> = HashMap::new();
    // Visited per root type: a type's included set decides how far traversal goes.
    let mut visited: HashSet<(String, String)> = HashSet::new();
    for c in roots {
        let includes: HashSet<&str> =
            catalog.get(&c.obj_code).map(|t| t.includes.iter().map(String::as_str).collect()).unwrap_or_default();
        let mut queue = VecDeque::new();
        for e in &c.entities {
            let Some(root) = store.get(env, &ObjectKey::new(&c.obj_code, &e.id)).await? else {
                return Err(EnvError::ObjectNotFound(ObjectKey::new(&c.obj_code, &e.id)));
            };
            if !e.name.is_empty() && e.name != root.name {
                out.warnings.push(format!("{} {} is named {:?}, not {:?}", c.obj_code, e.id, root.name, e.name));
            }
            queue.push_back(root);
        }
        while let Some(o) = queue.pop_front() {
            if !visited.insert((c.obj_code.clone(), o.id.clone())) {
                continue;
            }
            for child in store.children(env, &o.id).await? {
                if includes.contains(child.obj_code.as_str()) {
                    if let Some(obj) = store.get(env, &child).await? {
                        queue.push_back(obj);
                    }
                }
            }
            for r in &o.references {
                if includes.contains(r.obj_code.as_str()) && !visited.contains(&(c.obj_code.clone(), r.id.clone())) {
                    if let Some(obj) = store.get(env, &r.key()).await? {
                        queue.push_back(obj);
                    }
                }
            }
            if !emitted.contains_key(&o.id) {
                emitted.insert(o.id.clone(), out.objects.len());
                out.objects.push(carried(catalog, &o));
            }
        }
    }
    let mut external: BTreeMap<String, ExternalReference> = BTreeMap::new();
    for o in &out.objects {
        let pointers = o.references.iter().map(|r| r.key()).chain(o.parent.clone());
        for k in pointers {
            if !emitted.contains_key(&k.id) && !external.contains_key(&k.id) {
                let name = store.get(env, &k).await?.map(|t| t.name).unwrap_or_default();
                external.insert(k.id.clone(), ExternalReference { obj_code: k.obj_code, id: k.id, name });
            }
        }
    }
    out.external_references = external.into_values().collect();
    // Warnings travel on the package: a few and a count, whatever the roots asked for.
    if out.warnings.len() > MAX_WARNINGS {
        let more = out.warnings.len() - MAX_WARNINGS;
        out.warnings.truncate(MAX_WARNINGS);
        out.warnings.push(format!("and {more} more roots whose names differ"));
    }
    out.install_order = catalog.install_order(out.objects.iter().map(|o| o.obj_code.as_str()));
    Ok(out)
}

/// The object as a package carries it.
fn carried(catalog: &Catalog, o: &ConfigObject) -> ConfigObject {
    let mut c = o.content();
    if let Some(t) = catalog.get(&o.obj_code) {
        for f in &t.excluded_fields {
            c.fields.remove(f);
        }
    }
    c.references.retain(|r| !catalog.get(&r.obj_code).is_some_and(|t| t.never_carried));
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{stores, TestStore};
    use promotion_core::catalog::{apim, workfront};
    use promotion_core::objects::{is_valid_object_id, EntityRef, Reference};
    use serde_json::json;
    use std::collections::BTreeSet;

    fn obj(code: &str, n: u32, name: &str) -> ConfigObject {
        ConfigObject::new(code, format!("{n:032x}"), name)
    }

    fn owned(mut o: ConfigObject, parent: &ConfigObject) -> ConfigObject {
        o.parent = Some(parent.key());
        o
    }

    fn refer(mut o: ConfigObject, field: &str, target: &ConfigObject) -> ConfigObject {
        o.references.push(Reference {
            field: field.into(),
            obj_code: target.obj_code.clone(),
            id: target.id.clone(),
            optional: false,
        });
        o
    }

    async fn put(
        store: &dyn InstallationStore,
        env: &str,
        catalog: &Catalog,
        objects: Vec<ConfigObject>,
    ) -> Result<(), EnvError> {
        let changes = plan_put(store, env, catalog, objects, &HashMap::new()).await?;
        store.write(env, changes).await?;
        Ok(())
    }

    fn reason(e: EnvError) -> &'static str {
        match e {
            EnvError::Invalid { reason, .. } | EnvError::Conflict { reason, .. } => reason,
            other => panic!("unexpected {other}"),
        }
    }

    #[tokio::test]
    async fn put_validates_types_ids_parents_references_and_names() {
        for fixture in stores() {
            let store = fixture.store.as_ref();
            let wf = workfront();
            let group = obj("GROUP", 1, "Ops");
            let tmpl = refer(obj("TMPL", 2, "Onboarding"), "owner_group", &group);
            put(store, "dev", &wf, vec![tmpl.clone(), group.clone()]).await.unwrap();

            assert_eq!(
                reason(plan_put(store, "dev", &wf, vec![obj("NOPE", 3, "x")], &HashMap::new()).await.unwrap_err()),
                "UNKNOWN_TYPE"
            );
            let mut bad = obj("ROLE", 3, "x");
            bad.id = "XYZ".into();
            assert_eq!(
                reason(plan_put(store, "dev", &wf, vec![bad], &HashMap::new()).await.unwrap_err()),
                "INVALID_ID"
            );
            assert_eq!(
                reason(plan_put(store, "dev", &wf, vec![obj("TTSK", 3, "orphan")], &HashMap::new()).await.unwrap_err()),
                "PARENT_REQUIRED"
            );
            assert_eq!(
                reason(
                    plan_put(store, "dev", &wf, vec![owned(obj("TTSK", 3, "t"), &group)], &HashMap::new())
                        .await
                        .unwrap_err()
                ),
                "INVALID_PARENT"
            );
            let dangling = refer(obj("TMPL", 4, "x"), "owner_group", &obj("GROUP", 99, "ghost"));
            assert_eq!(
                reason(plan_put(store, "dev", &wf, vec![dangling], &HashMap::new()).await.unwrap_err()),
                "REFERENCE_NOT_FOUND"
            );
            assert_eq!(
                reason(plan_put(store, "dev", &wf, vec![obj("GROUP", 5, "Ops")], &HashMap::new()).await.unwrap_err()),
                "NAME_CONFLICT"
            );
            assert_eq!(
                reason(
                    plan_put(store, "dev", &wf, vec![obj("ROLE", 1, "id of a group")], &HashMap::new())
                        .await
                        .unwrap_err()
                ),
                "ID_TYPE_MISMATCH"
            );
            // Template names are not unique; a renamed group frees its name in the same batch.
            plan_put(store, "dev", &wf, vec![obj("TMPL", 6, "Onboarding")], &HashMap::new()).await.unwrap();
            plan_put(store, "dev", &wf, vec![obj("GROUP", 1, "Operations"), obj("GROUP", 7, "Ops")], &HashMap::new())
                .await
                .unwrap();
            // A new id is generated when left empty.
            let mut anon = obj("ROLE", 0, "Designer");
            anon.id.clear();
            let changes = plan_put(store, "dev", &wf, vec![anon], &HashMap::new()).await.unwrap();
            assert!(is_valid_object_id(&changes.upserts[0].id));
        }
    }

    #[tokio::test]
    async fn an_expected_revision_must_still_be_the_current_one() {
        for fixture in stores() {
            let store = fixture.store.as_ref();
            let wf = workfront();
            let group = obj("GROUP", 1, "Ops");
            put(store, "dev", &wf, vec![group.clone()]).await.unwrap();
            let read_at = store.get_by_id("dev", &group.id).await.unwrap().unwrap().revision;
            let expecting = |revision: u64| HashMap::from([(group.id.clone(), revision)]);
            plan_put(store, "dev", &wf, vec![group.clone()], &expecting(read_at)).await.unwrap();
            plan_put(store, "dev", &wf, vec![group.clone()], &expecting(0)).await.unwrap();
            let stale = plan_put(store, "dev", &wf, vec![group.clone()], &expecting(read_at + 1)).await.unwrap_err();
            assert!(matches!(&stale, EnvError::Conflict { objects, .. } if objects == &[group.key().to_string()]));
            assert_eq!(reason(stale), REVISION_MISMATCH);
            let other = obj("GROUP", 2, "Other");
            let unknown = plan_put(store, "dev", &wf, vec![other.clone()], &expecting(read_at)).await.unwrap_err();
            assert_eq!(reason(unknown), "INVALID_EXPECTED_REVISION");
            let missing = HashMap::from([(other.id.clone(), 4)]);
            assert_eq!(
                reason(plan_put(store, "dev", &wf, vec![other], &missing).await.unwrap_err()),
                REVISION_MISMATCH
            );
        }
    }

    #[tokio::test]
    async fn delete_refuses_children_and_referrers_unless_cascade() {
        for fixture in stores() {
            let store = fixture.store.as_ref();
            let wf = workfront();
            let group = obj("GROUP", 1, "Ops");
            let tmpl = obj("TMPL", 2, "Onboarding");
            let task = refer(owned(obj("TTSK", 3, "Kick-off"), &tmpl), "group", &group);
            put(store, "dev", &wf, vec![group.clone(), tmpl.clone(), task.clone()]).await.unwrap();
            assert_eq!(reason(plan_delete(store, "dev", &tmpl.key(), false).await.unwrap_err()), "HAS_CHILDREN");
            assert_eq!(reason(plan_delete(store, "dev", &group.key(), false).await.unwrap_err()), "REFERENCED");
            let changes = plan_delete(store, "dev", &group.key(), true).await.unwrap();
            assert_eq!(changes.deletes, vec![group.key()]);
            assert!(changes.upserts[0].references.is_empty(), "the task's reference is dropped");
            let changes = plan_delete(store, "dev", &tmpl.key(), true).await.unwrap();
            assert_eq!(changes.deletes, vec![tmpl.key(), task.key()]);
        }
    }

    #[tokio::test]
    async fn walks_end_whatever_shape_the_environment_holds() {
        for fixture in stores() {
            let store = fixture.store.as_ref();
            let wf = workfront();
            // A parent cycle written before the rules refused it.
            let a = obj("GROUP", 1, "a");
            let b = owned(obj("GROUP", 2, "b"), &a);
            let a = owned(a, &b);
            store.write("dev", EnvWrite { upserts: vec![a.clone(), b.clone()], ..Default::default() }).await.unwrap();
            let changes = plan_delete(store, "dev", &a.key(), true).await.unwrap();
            assert_eq!(changes.deletes.len(), 2, "each object once");
            let roots = vec![ObjectCollection {
                obj_code: "GROUP".into(),
                entities: vec![EntityRef { id: a.id.clone(), name: String::new() }],
            }];
            assert_eq!(export(store, "dev", &wf, &roots).await.unwrap().objects.len(), 2);
            let c = owned(obj("GROUP", 3, "c"), &a);
            assert_eq!(
                reason(plan_put(store, "dev", &wf, vec![c], &HashMap::new()).await.unwrap_err()),
                "PARENT_CYCLE"
            );
        }
    }

    #[tokio::test]
    async fn export_follows_included_types_and_marks_external_references() {
        for fixture in stores() {
            let store = fixture.store.as_ref();
            let wf = workfront();
            let group = obj("GROUP", 1, "Ops");
            let port = obj("PORT", 2, "Agency portfolio");
            let tmpl = refer(refer(obj("TMPL", 3, "Onboarding"), "group", &group), "portfolio", &port);
            let t1 = refer(owned(obj("TTSK", 4, "Kick-off"), &tmpl), "group", &group);
            let t2 = refer(owned(obj("TTSK", 5, "Review"), &tmpl), "predecessor", &t1);
            let other = owned(obj("TTSK", 6, "Elsewhere"), &obj("TMPL", 7, "Other"));
            put(
                store,
                "dev",
                &wf,
                vec![group.clone(), port.clone(), tmpl.clone(), t1, t2, obj("TMPL", 7, "Other"), other],
            )
            .await
            .unwrap();
            let roots = vec![
                ObjectCollection {
                    obj_code: "TMPL".into(),
                    entities: vec![EntityRef { id: tmpl.id.clone(), name: "Renamed?".into() }],
                },
                ObjectCollection {
                    obj_code: "GROUP".into(),
                    entities: vec![EntityRef { id: group.id.clone(), name: "Ops".into() }],
                },
            ];
            let export = export(store, "dev", &wf, &roots).await.unwrap();
            let ids: BTreeSet<u32> = export.objects.iter().map(|o| u32::from_str_radix(&o.id, 16).unwrap()).collect();
            assert_eq!(ids, BTreeSet::from([1, 3, 4, 5]), "each object once, nothing from the other template");
            assert_eq!(
                export.external_references,
                vec![ExternalReference { obj_code: "PORT".into(), id: port.id, name: "Agency portfolio".into() }]
            );
            assert_eq!(export.warnings.len(), 1);
            assert_eq!(export.install_order, vec!["GROUP", "TMPL", "TTSK"]);
            assert!(export.objects.iter().all(|o| o.revision == 0 && o.update_time.is_none()));

            let missing = vec![ObjectCollection {
                obj_code: "TMPL".into(),
                entities: vec![EntityRef { id: format!("{:032x}", 99), name: String::new() }],
            }];
            assert!(matches!(super::export(store, "dev", &wf, &missing).await, Err(EnvError::ObjectNotFound(_))));
            let not_root = vec![ObjectCollection {
                obj_code: "TTSK".into(),
                entities: vec![EntityRef { id: format!("{:032x}", 4), name: String::new() }],
            }];
            assert_eq!(reason(super::export(store, "dev", &wf, &not_root).await.unwrap_err()), "NOT_A_ROOT_TYPE");
        }
    }

    #[tokio::test]
    async fn apim_export_drops_members_and_groups() {
        for fixture in stores() {
            let store = fixture.store.as_ref();
            let cat = apim();
            let member = obj("MEMBER", 1, "jane");
            let mut api = refer(obj("API", 2, "Payments"), "member", &member);
            api.fields = json!({"version": "1.0", "members": ["jane"], "groups": ["ops"]}).as_object().unwrap().clone();
            let plan = owned(obj("PLAN", 3, "Gold"), &api);
            put(store, "globex-dev", &cat, vec![member, api.clone(), plan]).await.unwrap();
            let roots = vec![ObjectCollection {
                obj_code: "API".into(),
                entities: vec![EntityRef { id: api.id.clone(), name: String::new() }],
            }];
            let export = export(store, "globex-dev", &cat, &roots).await.unwrap();
            assert_eq!(export.objects.len(), 2);
            let api = &export.objects[0];
            assert_eq!(api.fields.keys().collect::<Vec<_>>(), vec!["version"]);
            assert!(api.references.is_empty() && export.external_references.is_empty());
        }
    }
}
