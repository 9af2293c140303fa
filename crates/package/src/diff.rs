//! DiffPackageVersions: what changed between two versions of a package, object by object
//! (added, removed, changed with every changed field and reference), a page at a time.
use std::collections::BTreeMap;

use promotion_core::cursor::{bounded, Page, PageRequest, Position, Scope, PAGE_BYTES};
use promotion_core::diff::diff;
use promotion_core::identity::Identity;
use promotion_core::objects::ConfigObject;
use promotion_core::package::DefinitionHeader;
use promotion_core::plan::FieldChange;

use crate::error::Result;
use crate::read::{self, bad_page_token, page_request};
use crate::state::State;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffKind {
    Added,
    Removed,
    Changed,
}

impl DiffKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DiffKind::Added => "ADDED",
            DiffKind::Removed => "REMOVED",
            DiffKind::Changed => "CHANGED",
        }
    }
}

/// One object that differs between the versions.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectDiff {
    pub obj_code: String,
    pub id: String,
    /// In the later version, or in the earlier one when removed.
    pub name: String,
    pub kind: DiffKind,
    /// Changed objects: before in `from`, after in `to`.
    pub changes: Vec<FieldChange>,
}

impl ObjectDiff {
    /// Where a listing resumes after this object: its type and id.
    fn position(&self) -> Position {
        Position::from_bytes(format!("{}\0{}", self.obj_code, self.id).into_bytes())
    }
}

/// The two versions compared, the count of differences by kind, and one page of them.
#[derive(Debug, Clone)]
pub struct VersionDiff {
    pub from: DefinitionHeader,
    pub to: DefinitionHeader,
    pub summary: BTreeMap<String, i64>,
    pub objects: Vec<ObjectDiff>,
    pub next_page_token: String,
}

/// DiffPackageVersions' arguments.
#[derive(Debug, Clone, Default)]
pub struct DiffQuery {
    pub id: String,
    /// 0 = current, for either.
    pub from_version: i64,
    pub to_version: i64,
    pub page_size: i32,
    pub page_token: String,
}

/// The differences between two versions the caller may read, in (type, id) order, a page
/// of at most [`PAGE_BYTES`] as `item_size` measures them.
pub async fn diff_versions(
    state: &State,
    caller: &Identity,
    query: DiffQuery,
    item_size: impl Fn(&ObjectDiff) -> usize,
) -> Result<VersionDiff> {
    let from = read::definition(state, caller, &query.id, query.from_version).await?;
    let to = read::definition(state, caller, &query.id, query.to_version).await?;
    let scope = Scope::new("DiffPackageVersions", &caller.organization)
        .filter(&from.package_id)
        .filter(from.version)
        .filter(to.version);
    let page = page_request(state, &scope, query.page_size, &query.page_token).await?;
    let all = differences(&objects_of(state, &from).await?, &objects_of(state, &to).await?);
    let mut summary = BTreeMap::new();
    for d in &all {
        *summary.entry(d.kind.as_str().to_string()).or_insert(0) += 1;
    }
    let all = &all;
    let found = bounded(page.clone(), PAGE_BYTES, item_size, |p| std::future::ready(page_of(all, &p))).await?;
    let next_page_token = state.page_tokens().await?.token(&scope, found.next.as_ref());
    Ok(VersionDiff { from, to, summary, objects: found.items, next_page_token })
}

/// Every object of a version by (type, id).
async fn objects_of(state: &State, header: &DefinitionHeader) -> Result<BTreeMap<(String, String), ConfigObject>> {
    let mut objects = BTreeMap::new();
    let mut n = 0;
    while let Some(chunk) = state.store.definition_chunk(&header.package_id, header.version, n).await? {
        for o in chunk.objects {
            objects.insert((o.obj_code.clone(), o.id.clone()), o);
        }
        n += 1;
    }
    Ok(objects)
}

/// What differs between `from` and `to`, in (type, id) order.
pub fn differences(
    from: &BTreeMap<(String, String), ConfigObject>,
    to: &BTreeMap<(String, String), ConfigObject>,
) -> Vec<ObjectDiff> {
    let item = |o: &ConfigObject, kind, changes| ObjectDiff {
        obj_code: o.obj_code.clone(),
        id: o.id.clone(),
        name: o.name.clone(),
        kind,
        changes,
    };
    let mut keys: Vec<&(String, String)> = from.keys().chain(to.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| match (from.get(k), to.get(k)) {
            (Some(before), Some(after)) => {
                let changes = diff(before, after, &Default::default());
                (!changes.is_empty()).then(|| item(after, DiffKind::Changed, changes))
            }
            (None, Some(after)) => Some(item(after, DiffKind::Added, vec![])),
            (Some(before), None) => Some(item(before, DiffKind::Removed, vec![])),
            (None, None) => None,
        })
        .collect()
}

/// The `page.size` differences after `page.after`.
fn page_of(all: &[ObjectDiff], page: &PageRequest) -> Result<Page<ObjectDiff>> {
    let start = match &page.after {
        None => 0,
        Some(after) => match all.iter().position(|d| &d.position() == after) {
            Some(i) => i + 1,
            // A signed position no difference has: the versions cannot have changed (they
            // are immutable), so the token is not this listing's.
            None => return Err(bad_page_token()),
        },
    };
    let items: Vec<ObjectDiff> = all.iter().skip(start).take(page.size).cloned().collect();
    let next = (start + items.len() < all.len()).then(|| items.last().map(ObjectDiff::position)).flatten();
    Ok(Page { items, next })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(code: &str, n: u32, name: &str, duration: i64) -> ConfigObject {
        ConfigObject {
            obj_code: code.into(),
            id: format!("{n:032x}"),
            name: name.into(),
            fields: json!({"duration": duration}).as_object().unwrap().clone(),
            parent: None,
            references: vec![],
            revision: 0,
            update_time: None,
        }
    }

    fn by_key(objects: Vec<ConfigObject>) -> BTreeMap<(String, String), ConfigObject> {
        objects.into_iter().map(|o| ((o.obj_code.clone(), o.id.clone()), o)).collect()
    }

    #[test]
    fn added_removed_and_changed_objects_with_exactly_the_changed_fields() {
        let from = by_key(vec![obj("TMPL", 1, "Onboarding", 10), obj("GROUP", 2, "Ops", 0), obj("ROLE", 3, "Dev", 1)]);
        let to = by_key(vec![obj("TMPL", 1, "Onboarding", 12), obj("GROUP", 4, "Design", 0), obj("ROLE", 3, "Dev", 1)]);
        let found = differences(&from, &to);
        let kinds: Vec<(&str, DiffKind)> = found.iter().map(|d| (d.name.as_str(), d.kind)).collect();
        assert_eq!(kinds, [("Ops", DiffKind::Removed), ("Design", DiffKind::Added), ("Onboarding", DiffKind::Changed)]);
        let changed = &found[2].changes;
        assert_eq!(changed.len(), 1);
        assert_eq!(
            (changed[0].path.as_str(), &changed[0].before, &changed[0].after),
            ("fields.duration", &json!(10), &json!(12))
        );
    }

    #[test]
    fn pages_resume_after_their_last_difference_and_refuse_a_foreign_position() {
        let from = by_key((0..5).map(|n| obj("GROUP", n, "g", 0)).collect());
        let all = differences(&from, &BTreeMap::new());
        let first = page_of(&all, &PageRequest::first(2)).unwrap();
        let second = page_of(&all, &PageRequest { size: 2, after: first.next.clone() }).unwrap();
        let third = page_of(&all, &PageRequest { size: 2, after: second.next.clone() }).unwrap();
        let ids: Vec<String> =
            [first.items, second.items, third.items.clone()].concat().into_iter().map(|d| d.id).collect();
        assert_eq!(ids, (0..5).map(|n| format!("{n:032x}")).collect::<Vec<_>>());
        assert_eq!((third.items.len(), third.next), (1, None));
        let foreign = PageRequest { size: 2, after: Some(Position::from_bytes(b"GROUP\0nope".to_vec())) };
        assert!(page_of(&all, &foreign).is_err());
    }
}
