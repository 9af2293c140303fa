//! Applying a plan and rolling it back: the object writes, translation history and
//! before-images of one installation, all as one atomic store write.
use std::collections::{HashMap, HashSet};

use crate::environments::{check_parent_cycles, EnvError};
use crate::plan::{diff, translate, Action, Collision, Entry, PackageContent, Plan};
use promotion_core::catalog::Catalog;
use promotion_core::objects::{ConfigObject, ObjectKey};
use promotion_core::records::{EntryStatus, HistoryEntry, Undo, UndoObject};
use promotion_core::validate;
use promotion_store::installation::{EnvWrite, Record};
use promotion_store::{InstallationStore, StoreError};

pub struct Applied {
    pub changes: EnvWrite,
    pub statuses: Vec<EntryStatus>,
    pub undo: Undo,
}

/// Builds the atomic write for `plan`. `revision` is the destination revision the write
/// will produce (writes are serialised, so it is the current one + 1).
#[allow(clippy::too_many_arguments)]
pub async fn build(
    store: &dyn InstallationStore,
    dest: &str,
    catalog: &Catalog,
    content: &PackageContent,
    plan: &Plan,
    prune_children: bool,
    installation_id: &str,
    revision: u64,
) -> Result<Result<Applied, Vec<String>>, StoreError> {
    let by_id: HashMap<&str, &ConfigObject> = content.objects.iter().map(|o| (o.id.as_str(), o)).collect();
    let targets: HashMap<String, String> =
        plan.targets().into_iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    let mut changes = EnvWrite::default();
    let mut undo = Undo::default();
    let mut statuses = Vec::with_capacity(plan.entries.len());
    let mut failures = Vec::new();
    for e in &plan.entries {
        let source = by_id[e.source_id.as_str()];
        let mut written = None;
        let status = match e.action {
            Action::Ignore => EntryStatus::Skipped,
            Action::UseExisting => EntryStatus::Registered,
            _ => {
                let name = if e.action == Action::CreateWithAltName { &e.alt_name } else { &e.name };
                let translated = translate(source, &e.target_id, name, &targets).and_then(|object| {
                    // What an installation writes obeys what PutObjects enforces, whatever
                    // the package or the caller's alternative name holds.
                    validate::object(catalog, &object, "object")
                        .map(|()| object)
                        .map_err(|v| format!("{}: {v}", v.reason()))
                });
                match translated {
                    Ok(object) => {
                        let before = store.get(dest, &ObjectKey::new(&e.obj_code, &e.target_id)).await?;
                        undo.objects.push(UndoObject { key: object.key(), before, pruned: false });
                        written = Some(ConfigObject { revision, ..object.clone() });
                        changes.upserts.push(object);
                        EntryStatus::Installed
                    }
                    Err(reason) => {
                        failures.push(format!("{}:{} ({reason})", e.obj_code, e.source_id));
                        EntryStatus::Failed
                    }
                }
            }
        };
        statuses.push(status);
        let target = match e.action {
            Action::UseExisting => store.get(dest, &ObjectKey::new(&e.obj_code, &e.target_id)).await?,
            _ => None,
        };
        let kept_own_content = target.as_ref().is_some_and(|t| !diff(t, source, &targets).is_empty());
        let installed = Installed { written, registered: target.filter(|_| !kept_own_content) };
        if let Some(h) = history_after(store, dest, content, e, installation_id, revision, installed).await? {
            let before = store.history(dest, &content.source_environment, &e.source_id).await?;
            if before.as_ref() != Some(&h) {
                if let Some(old) = before.as_ref().filter(|old| old.target_id != h.target_id) {
                    changes.record(Record::HistoryRemove { env: dest.to_string(), entry: old.clone() });
                }
                changes.record(Record::HistoryPut { env: dest.to_string(), entry: h.clone() });
                // A rollback removes the entry by its keys: the image would be dead weight.
                undo.history.push((before, h.without_image()));
            }
        }
    }
    if failures.is_empty() {
        if let Err(e) = check_parent_cycles(store, dest, &changes.upserts).await {
            failures.push(format!("{e}"));
        }
    }
    if !failures.is_empty() {
        return Ok(Err(failures));
    }
    if prune_children {
        prune(store, dest, content, plan, &mut changes, &mut undo).await?;
    }
    Ok(Ok(Applied { changes, statuses, undo }))
}

/// What an applied entry leaves in the destination as the package's content.
struct Installed {
    /// The object the entry writes, at the revision the write produces.
    written: Option<ConfigObject>,
    /// A USEEXISTING target that already holds the package's content.
    registered: Option<ConfigObject>,
}

/// The history entry an applied entry leaves behind, with the image of the target a
/// drift report compares with later.
async fn history_after(
    store: &dyn InstallationStore,
    dest: &str,
    content: &PackageContent,
    e: &Entry,
    installation_id: &str,
    revision: u64,
    installed: Installed,
) -> Result<Option<HistoryEntry>, StoreError> {
    let previous = store.history(dest, &content.source_environment, &e.source_id).await?;
    let previous_image = || previous.as_ref().filter(|p| p.target_id == e.target_id).and_then(|p| p.installed.clone());
    let (written_revision, image) = match (e.action, installed) {
        (Action::Ignore, _) => return Ok(None),
        (a, Installed { written, .. }) if a.writes() => (revision, written),
        // A locally modified target stays locally modified: keep the last revision we wrote.
        _ if e.collision == Collision::LocallyModified => match &previous {
            Some(p) => (p.written_revision, previous_image()),
            None => return Ok(None),
        },
        (_, Installed { registered: Some(t), .. }) => (t.revision, Some(ConfigObject { update_time: None, ..t })),
        // Registering a target that keeps content of its own is not writing it: its
        // differences stay the destination's (LOCALLY_MODIFIED next time), never an update
        // a later installation would silently apply.
        _ => match store.get(dest, &ObjectKey::new(&e.obj_code, &e.target_id)).await? {
            Some(_) => {
                let kept = previous.as_ref().filter(|p| p.target_id == e.target_id);
                (kept.map_or(0, |p| p.written_revision), previous_image())
            }
            None => return Ok(None),
        },
    };
    let same_target = previous.as_ref().is_some_and(|p| p.target_id == e.target_id);
    Ok(Some(HistoryEntry {
        source_environment: content.source_environment.clone(),
        source_id: e.source_id.clone(),
        obj_code: e.obj_code.clone(),
        target_id: e.target_id.clone(),
        written_revision,
        created_by_promotion: e.action.creates() || (same_target && previous.is_some_and(|p| p.created_by_promotion)),
        installation_id: installation_id.to_string(),
        installed: image.filter(|_| written_revision != 0),
    }))
}

/// Deletes destination children of overwritten or reused objects that an earlier promotion from
/// the same source created and the package no longer has. Locally created children are
/// never touched.
async fn prune(
    store: &dyn InstallationStore,
    dest: &str,
    content: &PackageContent,
    plan: &Plan,
    changes: &mut EnvWrite,
    undo: &mut Undo,
) -> Result<(), StoreError> {
    let in_package: HashSet<&str> = content.objects.iter().map(|o| o.id.as_str()).collect();
    let kept_targets: HashSet<&str> = plan.entries.iter().map(|e| e.target_id.as_str()).collect();
    // Every existing target the package maps onto, not only overwritten ones: deleting a
    // task at the source leaves its template's own fields unchanged (USEEXISTING).
    let mut seen: HashSet<String> = HashSet::new();
    let mut queue: Vec<String> = plan
        .entries
        .iter()
        .filter(|e| matches!(e.action, Action::Overwriting | Action::UseExisting))
        .map(|e| e.target_id.clone())
        .collect();
    while let Some(parent) = queue.pop() {
        // Each object once, whatever shape the destination holds.
        if !seen.insert(parent.clone()) {
            continue;
        }
        for child in store.children(dest, &parent).await? {
            if kept_targets.contains(child.id.as_str()) || seen.contains(&child.id) {
                continue;
            }
            let Some(h) = store.history_by_target(dest, &child.id).await? else { continue };
            let ours = h.created_by_promotion && h.source_environment == content.source_environment;
            if !ours || in_package.contains(h.source_id.as_str()) {
                continue;
            }
            // The full entry, image included, is what a rollback puts back.
            let h = store.history(dest, &h.source_environment, &h.source_id).await?.unwrap_or(h);
            let before = store.get(dest, &ObjectKey::new(&child.obj_code, &child.id)).await?;
            undo.objects.push(UndoObject { key: child.clone(), before, pruned: true });
            changes.deletes.push(child.clone());
            changes.record(Record::HistoryRemove { env: dest.to_string(), entry: h.without_image() });
            undo.history.push((Some(h.clone()), h.without_image()));
            // Pruning a child prunes what it owns.
            queue.push(child.id);
        }
    }
    Ok(())
}

/// Objects an installation wrote that were changed by a later write (their revision is
/// no longer the installation's), or that were recreated after being pruned.
pub async fn modified_since(
    store: &dyn InstallationStore,
    dest: &str,
    undo: &Undo,
    installed_revision: u64,
) -> Result<Vec<String>, StoreError> {
    let mut modified = Vec::new();
    for u in &undo.objects {
        let now = store.get(dest, &u.key).await?;
        let changed = if u.pruned { now.is_some() } else { now.is_none_or(|o| o.revision != installed_revision) };
        if changed {
            modified.push(u.key.to_string());
        }
    }
    Ok(modified)
}

/// Before-images a rollback would restore that today's rules refuse (written before a
/// rule existed): a rollback never brings such an object back.
pub fn invalid_restores(catalog: &Catalog, write: &EnvWrite) -> Vec<String> {
    write
        .restores
        .iter()
        .filter_map(|o| validate::object(catalog, o, "restore").err().map(|v| format!("{} ({})", o.key(), v.reason())))
        .collect()
}

/// Restores whose owner would be gone, or whose ownership would loop, once the rollback is
/// written: a rollback forced over later edits (an owner deleted, or re-parented under the
/// object) must leave neither an orphan nor a cycle, as no other write may.
pub async fn unowned_or_cyclic_restores(
    store: &dyn InstallationStore,
    dest: &str,
    write: &EnvWrite,
) -> Result<Vec<String>, StoreError> {
    let restored: HashSet<ObjectKey> = write.restores.iter().map(|o| o.key()).collect();
    let deleted: HashSet<&ObjectKey> = write.deletes.iter().collect();
    let mut problems = Vec::new();
    for o in &write.restores {
        let Some(p) = &o.parent else { continue };
        if restored.contains(p) || (!deleted.contains(p) && store.get(dest, p).await?.is_some()) {
            continue;
        }
        problems.push(format!("{} (PARENT_NOT_FOUND: its owner {p} is gone)", o.key()));
    }
    if problems.is_empty() {
        match check_parent_cycles(store, dest, &write.restores).await {
            Ok(()) => {}
            Err(EnvError::Store(e)) => return Err(e),
            Err(e) => problems.push(e.to_string()),
        }
    }
    Ok(problems)
}

/// The write that restores the before-images and history of an installation.
pub fn rollback_changes(dest: &str, undo: &Undo) -> EnvWrite {
    let mut changes = EnvWrite::default();
    for u in &undo.objects {
        match &u.before {
            Some(o) => changes.restores.push(o.clone()),
            None => changes.deletes.push(u.key.clone()),
        }
    }
    // Undo history in reverse so the earliest before-image of an entry wins.
    for (before, after) in undo.history.iter().rev() {
        changes.record(Record::HistoryRemove { env: dest.to_string(), entry: after.clone() });
        if let Some(b) = before {
            changes.record(Record::HistoryPut { env: dest.to_string(), entry: b.clone() });
        }
    }
    changes
}
