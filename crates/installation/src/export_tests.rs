//! Property tests of extraction: on random object graphs the export is exactly the
//! closure the brief defines (checked against a brute-force oracle), each object once,
//! with every pointer either carried or marked external.
use proptest::prelude::*;
use std::collections::{BTreeSet, HashMap, HashSet};

use super::environments::{export, plan_put};
use crate::testing::{stores, TestStore};
use promotion_core::catalog::{workfront, Catalog};
use promotion_core::objects::{ConfigObject, EntityRef, ObjectCollection, ObjectKey, Reference};

/// Types a random graph draws from: roots with different included sets, and owned types.
const TOP: &[&str] = &["GROUP", "ROLE", "TEAM", "CMPY", "SCHED", "PORT", "TMPL", "PTLSEC", "UIFT"];

fn object(code: &str, n: usize) -> ConfigObject {
    ConfigObject {
        obj_code: code.into(),
        id: format!("{n:032x}"),
        name: format!("{code} {n}"),
        fields: Default::default(),
        parent: None,
        references: vec![],
        revision: 0,
        update_time: None,
    }
}

/// A random environment: top-level objects, template tasks under templates, and
/// references from any object to any earlier one.
fn graph(top: &[usize], tasks: &[usize], refs: &[(usize, usize)]) -> Vec<ConfigObject> {
    let mut objects: Vec<ConfigObject> =
        top.iter().enumerate().map(|(i, t)| object(TOP[t % TOP.len()], i + 1)).collect();
    let templates: Vec<ObjectKey> = objects.iter().filter(|o| o.obj_code == "TMPL").map(|o| o.key()).collect();
    if !templates.is_empty() {
        for (j, t) in tasks.iter().enumerate() {
            let mut task = object("TTSK", 1000 + j);
            task.parent = Some(templates[t % templates.len()].clone());
            objects.push(task);
        }
    }
    let n = objects.len();
    for (k, (from, to)) in refs.iter().enumerate() {
        let (from, to) = (from % n, to % n);
        if to >= from || objects[from].references.iter().any(|r| r.id == objects[to].id) {
            continue;
        }
        let target = objects[to].key();
        objects[from].references.push(Reference {
            field: format!("f{k}"),
            obj_code: target.obj_code,
            id: target.id,
            optional: false,
        });
    }
    objects
}

/// The closure by definition: from each root, follow owned children and references whose
/// types are in that root type's included set.
fn oracle(catalog: &Catalog, objects: &[ConfigObject], roots: &[ObjectCollection]) -> BTreeSet<String> {
    let by_id: HashMap<&str, &ConfigObject> = objects.iter().map(|o| (o.id.as_str(), o)).collect();
    let mut all = BTreeSet::new();
    for c in roots {
        let includes: HashSet<&str> = catalog.get(&c.obj_code).unwrap().includes.iter().map(String::as_str).collect();
        let mut seen: BTreeSet<String> = c.entities.iter().map(|e| e.id.clone()).collect();
        loop {
            let before = seen.len();
            for o in objects {
                let child_of_seen = o.parent.as_ref().is_some_and(|p| seen.contains(&p.id));
                let referenced =
                    objects.iter().any(|s| seen.contains(&s.id) && s.references.iter().any(|r| r.id == o.id));
                if includes.contains(o.obj_code.as_str()) && (child_of_seen || referenced) {
                    seen.insert(o.id.clone());
                }
            }
            if seen.len() == before {
                break;
            }
        }
        all.extend(seen.into_iter().filter(|id| by_id.contains_key(id.as_str())));
    }
    all
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, .. ProptestConfig::default() })]

    #[test]
    fn export_is_exactly_the_closure_with_every_pointer_carried_or_external(
        top in proptest::collection::vec(0usize..TOP.len(), 1..14),
        tasks in proptest::collection::vec(0usize..4, 0..10),
        refs in proptest::collection::vec((0usize..30, 0usize..30), 0..30),
        picks in proptest::collection::vec(0usize..30, 1..4),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let catalog = workfront();
        let objects = graph(&top, &tasks, &refs);
        for fixture in stores() {
        let store = fixture.store.as_ref();
        let exported = rt.block_on(async {
            let changes = plan_put(store, "dev", &catalog, objects.clone(), &Default::default()).await.unwrap();
            store.write("dev", changes).await.unwrap();
        // Roots: picked top-level objects, grouped by type as CreatePackage takes them.
        let mut by_type: std::collections::BTreeMap<String, Vec<EntityRef>> = Default::default();
        for p in &picks {
            let o = &objects[p % top.len()];
            let entities = by_type.entry(o.obj_code.clone()).or_default();
            if !entities.iter().any(|e| e.id == o.id) {
                entities.push(EntityRef { id: o.id.clone(), name: o.name.clone() });
            }
        }
        let roots: Vec<ObjectCollection> = by_type.into_iter().map(|(obj_code, entities)| ObjectCollection { obj_code, entities }).collect();
            (export(store, "dev", &catalog, &roots).await.unwrap(), roots)
        });
        let (exported, roots) = exported;

        let ids: Vec<&str> = exported.objects.iter().map(|o| o.id.as_str()).collect();
        let unique: BTreeSet<String> = ids.iter().map(|s| s.to_string()).collect();
        prop_assert_eq!(unique.len(), ids.len(), "each object once");
        prop_assert_eq!(&unique, &oracle(&catalog, &objects, &roots), "exactly the closure");
        let external: BTreeSet<&str> = exported.external_references.iter().map(|r| r.id.as_str()).collect();
        for o in &exported.objects {
            prop_assert!(o.revision == 0 && o.update_time.is_none());
            for id in o.references.iter().map(|r| r.id.as_str()).chain(o.parent.iter().map(|p| p.id.as_str())) {
                prop_assert!(unique.contains(id) != external.contains(id), "{} is carried xor external", id);
            }
        }
        for r in &exported.external_references {
            prop_assert!(!unique.contains(&r.id));
            let real = objects.iter().find(|o| o.id == r.id).unwrap();
            prop_assert_eq!(&r.name, &real.name, "external references carry the real name");
        }
        prop_assert!(exported.warnings.is_empty(), "requested names are the real ones");
        }
    }
}
