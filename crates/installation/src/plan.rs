//! Pre-run planning: matching every package object to the destination (history, id,
//! name), default actions and collisions, field-level changes, overrides and validation.
use std::collections::{HashMap, HashSet};

use promotion_core::catalog::Catalog;
use promotion_core::objects::{new_object_id, ConfigObject, ExternalReference, ObjectKey, Reference};
use promotion_core::validate;
use promotion_store::{InstallationStore, StoreError};

pub use promotion_core::diff::diff;
pub use promotion_core::plan::{Action, Collision, Entry, FieldChange, MatchKind, Override, Plan};

/// What a package's content is, as the planner needs it.
#[derive(Debug, Clone, Default)]
pub struct PackageContent {
    pub package_id: String,
    pub version: i64,
    pub digest: String,
    pub source_environment: String,
    pub objects: Vec<ConfigObject>,
    pub external_references: Vec<ExternalReference>,
}

/// Package objects in install order: type rank, then depth inside the package (owners
/// before what they own), then code and id for a stable result.
pub fn install_ordered<'a>(catalog: &Catalog, objects: &'a [ConfigObject]) -> Vec<&'a ConfigObject> {
    let by_id: HashMap<&str, &ConfigObject> = objects.iter().map(|o| (o.id.as_str(), o)).collect();
    let depth = |o: &ConfigObject| {
        let mut d = 0;
        let mut p = o.parent.as_ref();
        while let Some(k) = p {
            d += 1;
            p = by_id.get(k.id.as_str()).and_then(|x| x.parent.as_ref());
            if d > 64 {
                break;
            }
        }
        d
    };
    let mut ordered: Vec<(i32, usize, &ConfigObject)> =
        objects.iter().map(|o| (catalog.get(&o.obj_code).map_or(i32::MAX, |t| t.install_rank), depth(o), o)).collect();
    ordered.sort_by(|a, b| (a.0, a.1, &a.2.obj_code, &a.2.id).cmp(&(b.0, b.1, &b.2.obj_code, &b.2.id)));
    ordered.into_iter().map(|(_, _, o)| o).collect()
}

/// Computes the default plan of `content` into `dest`.
pub async fn plan(
    store: &dyn InstallationStore,
    dest: &str,
    catalog: &Catalog,
    content: &PackageContent,
) -> Result<Plan, StoreError> {
    let ordered = install_ordered(catalog, &content.objects);
    let mut plan = Plan::default();
    let mut index: HashMap<String, usize> = HashMap::new();
    for o in &ordered {
        let entry = match_object(store, dest, catalog, content, o, &plan, &index).await?;
        index.insert(o.id.clone(), plan.entries.len());
        plan.entries.push(entry);
    }
    for r in &content.external_references {
        let resolved = resolve_external(store, dest, &content.source_environment, r).await?;
        plan.externals.insert(r.id.clone(), resolved);
    }
    let by_id: HashMap<&str, &ConfigObject> = content.objects.iter().map(|o| (o.id.as_str(), o)).collect();
    let targets: HashMap<String, String> =
        plan.targets().into_iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    for e in &mut plan.entries {
        if e.matched_by == MatchKind::None {
            continue;
        }
        let Some(target) = store.get(dest, &ObjectKey::new(&e.obj_code, &e.target_id)).await? else { continue };
        let source = by_id[e.source_id.as_str()];
        e.changes = diff(&target, source, &targets);
        if e.matched_by == MatchKind::History && !e.changes.is_empty() {
            let entry = store.history(dest, &content.source_environment, &e.source_id).await?;
            let edited_locally = entry.is_some_and(|h| h.written_revision != target.revision);
            if edited_locally {
                e.collision = Collision::LocallyModified;
            } else {
                e.action = Action::Overwriting;
            }
        }
    }
    validate(store, dest, catalog, content, &mut plan).await?;
    Ok(plan)
}

fn new_entry(o: &ConfigObject) -> Entry {
    Entry {
        obj_code: o.obj_code.clone(),
        source_id: o.id.clone(),
        name: o.name.clone(),
        action: Action::Create,
        is_valid: true,
        target_id: String::new(),
        matched_by: MatchKind::None,
        collision: Collision::None,
        changes: Vec::new(),
        reason: String::new(),
        alt_name: String::new(),
        candidate_ids: Vec::new(),
        observed_revision: None,
    }
}

/// Matching in the brief's order: history, same id, same name (under the matched parent
/// for owned sub-objects).
async fn match_object(
    store: &dyn InstallationStore,
    dest: &str,
    catalog: &Catalog,
    content: &PackageContent,
    o: &ConfigObject,
    plan: &Plan,
    index: &HashMap<String, usize>,
) -> Result<Entry, StoreError> {
    let mut e = new_entry(o);
    let found = |e: &mut Entry, target: ConfigObject, kind: MatchKind, collision: Collision| {
        e.target_id = target.id;
        e.observed_revision = Some(target.revision);
        e.matched_by = kind;
        e.collision = collision;
        e.action = Action::UseExisting;
    };
    if let Some(h) = store.history(dest, &content.source_environment, &o.id).await? {
        if let Some(target) = store.get(dest, &ObjectKey::new(&o.obj_code, &h.target_id)).await? {
            found(&mut e, target, MatchKind::History, Collision::None);
            return Ok(e);
        }
    }
    if let Some(target) = store.get(dest, &ObjectKey::new(&o.obj_code, &o.id)).await? {
        found(&mut e, target, MatchKind::Id, Collision::IdMatch);
        return Ok(e);
    }
    let mut candidates = store.ids_named(dest, &o.obj_code, &o.name).await?;
    let owned = catalog.get(&o.obj_code).is_some_and(|t| !t.parent_types.is_empty());
    if let (true, Some(parent)) = (owned, &o.parent) {
        // Owned objects match by name only under the destination object their owner maps to.
        let parent_target = index.get(&parent.id).map(|&i| plan.entries[i].target_id.clone()).filter(|t| !t.is_empty());
        let mut under = Vec::new();
        if let Some(pt) = parent_target {
            for id in candidates {
                if store
                    .get(dest, &ObjectKey::new(&o.obj_code, &id))
                    .await?
                    .and_then(|c| c.parent)
                    .is_some_and(|p| p.id == pt)
                {
                    under.push(id);
                }
            }
        }
        candidates = under;
    }
    match candidates.len() {
        0 => e.target_id = new_object_id(),
        1 => {
            if let Some(target) = store.get(dest, &ObjectKey::new(&o.obj_code, &candidates[0])).await? {
                found(&mut e, target, MatchKind::Name, Collision::NameMatch);
            }
        }
        _ => {
            e.action = Action::UseExisting;
            e.matched_by = MatchKind::Name;
            e.collision = Collision::NameMatch;
            e.candidate_ids = candidates;
        }
    }
    Ok(e)
}

/// A reference the package does not carry resolves by history, then id, then a unique name.
async fn resolve_external(
    store: &dyn InstallationStore,
    dest: &str,
    source_env: &str,
    r: &ExternalReference,
) -> Result<Option<String>, StoreError> {
    if let Some(h) = store.history(dest, source_env, &r.id).await? {
        if store.get(dest, &ObjectKey::new(&r.obj_code, &h.target_id)).await?.is_some() {
            return Ok(Some(h.target_id));
        }
    }
    if store.get(dest, &ObjectKey::new(&r.obj_code, &r.id)).await?.is_some() {
        return Ok(Some(r.id.clone()));
    }
    let named = if r.name.is_empty() { Vec::new() } else { store.ids_named(dest, &r.obj_code, &r.name).await? };
    Ok(if named.len() == 1 { named.into_iter().next() } else { None })
}

/// The package object as it would be written into the destination: id, name, parent
/// and references translated. Unresolved optional references are dropped; an unresolved
/// required one or parent is an error naming it.
pub fn translate(
    source: &ConfigObject,
    id: &str,
    name: &str,
    targets: &HashMap<String, String>,
) -> Result<ConfigObject, String> {
    let parent = match &source.parent {
        Some(p) => Some(ObjectKey::new(
            &p.obj_code,
            targets
                .get(&p.id)
                .ok_or_else(|| format!("parent {}:{} does not resolve in the destination", p.obj_code, p.id))?,
        )),
        None => None,
    };
    let mut references = Vec::new();
    for r in &source.references {
        match targets.get(&r.id) {
            Some(t) => references.push(Reference { id: t.clone(), ..r.clone() }),
            None if r.optional => {}
            None => {
                return Err(format!(
                    "reference {} -> {}:{} does not resolve in the destination",
                    r.field, r.obj_code, r.id
                ))
            }
        }
    }
    Ok(ConfigObject {
        id: id.to_string(),
        name: name.to_string(),
        parent,
        references,
        revision: 0,
        update_time: None,
        ..source.clone()
    })
}

/// Applies the caller's overrides. Entries that do not exist are returned as errors.
pub async fn apply_overrides(
    store: &dyn InstallationStore,
    dest: &str,
    plan: &mut Plan,
    overrides: &[Override],
) -> Result<Vec<String>, StoreError> {
    let mut unknown = Vec::new();
    for o in overrides {
        let Some(e) = plan.entries.iter_mut().find(|e| e.obj_code == o.obj_code && e.source_id == o.source_id) else {
            unknown.push(format!("{}:{} (NOT_IN_PACKAGE)", o.obj_code, o.source_id));
            continue;
        };
        if let Some(action) = o.action {
            if action.creates() && !e.action.creates() {
                e.target_id = new_object_id();
                e.observed_revision = None;
            }
            e.action = action;
        }
        if !o.target_id.is_empty() && !e.action.creates() {
            e.target_id = o.target_id.clone();
            e.observed_revision = store.get_by_id(dest, &o.target_id).await?.map(|t| t.revision);
        }
        if !o.alt_name.is_empty() {
            e.alt_name = o.alt_name.clone();
        }
    }
    Ok(unknown)
}

/// Marks invalid entries with their reason and cascades IGNORE to owned children.
pub async fn validate(
    store: &dyn InstallationStore,
    dest: &str,
    catalog: &Catalog,
    content: &PackageContent,
    plan: &mut Plan,
) -> Result<(), StoreError> {
    let by_id: HashMap<&str, &ConfigObject> = content.objects.iter().map(|o| (o.id.as_str(), o)).collect();
    let mut ignored: HashSet<String> = HashSet::new();
    for e in &mut plan.entries {
        let parent_ignored = by_id[e.source_id.as_str()].parent.as_ref().is_some_and(|p| ignored.contains(&p.id));
        if parent_ignored {
            e.action = Action::Ignore;
        }
        if e.action == Action::Ignore {
            ignored.insert(e.source_id.clone());
        }
    }
    let targets: HashMap<String, String> =
        plan.targets().into_iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    let mut claimed_names: HashMap<(String, String), String> = HashMap::new();
    for e in &mut plan.entries {
        e.reason =
            entry_problem(store, dest, catalog, e, by_id[e.source_id.as_str()], &targets, &ignored, &mut claimed_names)
                .await?;
        e.is_valid = e.reason.is_empty();
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn entry_problem(
    store: &dyn InstallationStore,
    dest: &str,
    catalog: &Catalog,
    e: &Entry,
    source: &ConfigObject,
    targets: &HashMap<String, String>,
    ignored: &HashSet<String>,
    claimed: &mut HashMap<(String, String), String>,
) -> Result<String, StoreError> {
    let unique = catalog.get(&e.obj_code).is_some_and(|t| t.unique_names);
    match e.action {
        Action::Ignore => return Ok(String::new()),
        Action::UseExisting | Action::Overwriting => {
            if e.target_id.is_empty() {
                let reason = if e.candidate_ids.len() > 1 { "AMBIGUOUS_MATCH" } else { "NO_TARGET" };
                return Ok(reason.into());
            }
            match store.get_by_id(dest, &e.target_id).await? {
                None => return Ok("TARGET_NOT_FOUND".into()),
                Some(t) if t.obj_code != e.obj_code => return Ok("TARGET_TYPE_MISMATCH".into()),
                Some(t) => {
                    if e.action == Action::Overwriting
                        && unique
                        && t.name != e.name
                        && name_taken(store, dest, e, &e.name).await?
                    {
                        return Ok("NAME_CONFLICT".into());
                    }
                }
            }
            if e.action == Action::UseExisting {
                return Ok(String::new());
            }
        }
        Action::Create | Action::CreateWithAltName => {
            let name = if e.action == Action::Create { &e.name } else { &e.alt_name };
            if e.action == Action::CreateWithAltName && name.trim().is_empty() {
                return Ok("ALT_NAME_REQUIRED".into());
            }
            if let Err(v) = validate::name(name, "alt_name") {
                return Ok(v.reason().into());
            }
            if unique {
                let key = (e.obj_code.clone(), name.clone());
                if name_taken(store, dest, e, name).await? || claimed.insert(key, e.source_id.clone()).is_some() {
                    return Ok("NAME_CONFLICT".into());
                }
            }
        }
    }
    let pointers = source
        .parent
        .iter()
        .map(|p| (p.id.as_str(), false))
        .chain(source.references.iter().map(|r| (r.id.as_str(), r.optional)));
    for (id, optional) in pointers {
        if !optional && !targets.contains_key(id) {
            let reason = if ignored.contains(id) { "REFERENCE_IGNORED" } else { "UNRESOLVED_REFERENCE" };
            return Ok(reason.into());
        }
    }
    Ok(String::new())
}

async fn name_taken(store: &dyn InstallationStore, dest: &str, e: &Entry, name: &str) -> Result<bool, StoreError> {
    Ok(store.ids_named(dest, &e.obj_code, name).await?.iter().any(|id| *id != e.target_id))
}

/// Why a stored plan no longer describes the destination, if it does not.
pub async fn stale_entries(
    store: &dyn InstallationStore,
    dest: &str,
    catalog: &Catalog,
    source_env: &str,
    plan: &Plan,
) -> Result<Vec<String>, StoreError> {
    let mut stale = Vec::new();
    for e in &plan.entries {
        let key = format!("{}:{}", e.obj_code, e.source_id);
        if let Some(rev) = e.observed_revision {
            match store.get_by_id(dest, &e.target_id).await? {
                Some(t) if t.revision == rev => {}
                _ => stale.push(format!("{key} (target changed)")),
            }
        } else if e.action.creates() {
            let unique = catalog.get(&e.obj_code).is_some_and(|t| t.unique_names);
            let name = if e.action == Action::Create { &e.name } else { &e.alt_name };
            let collides = store.history(dest, source_env, &e.source_id).await?.is_some()
                || store.get_by_id(dest, &e.target_id).await?.is_some()
                || (unique && !store.ids_named(dest, &e.obj_code, name).await?.is_empty());
            if collides {
                stale.push(format!("{key} (planned CREATE now collides)"));
            }
        }
    }
    Ok(stale)
}
