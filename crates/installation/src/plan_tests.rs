//! Planner and apply tests on a real store: matching, defaults, collisions, overrides,
//! staleness, prune, rollback, and property tests over random object graphs.
use proptest::prelude::*;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};

use super::apply::{self, build, rollback_changes};
use super::environments::{self, plan_put};
use super::plan::{self, Action, Collision, MatchKind, Override, PackageContent, Plan};
use crate::testing::{stores, TestStore};
use promotion_core::catalog::{workfront, Catalog};
use promotion_core::cursor::PageRequest;
use promotion_core::objects::{ConfigObject, EntityRef, ObjectCollection, ObjectKey, Reference};
use promotion_store::installation::ObjectQuery;
use promotion_store::InstallationStore;

pub(crate) fn obj(code: &str, n: u32, name: &str) -> ConfigObject {
    ConfigObject::new(code, format!("{n:032x}"), name)
}

pub(crate) fn owned(mut o: ConfigObject, parent: &ConfigObject) -> ConfigObject {
    o.parent = Some(parent.key());
    o
}

pub(crate) fn refer(mut o: ConfigObject, field: &str, target: &ConfigObject) -> ConfigObject {
    o.references.push(Reference {
        field: field.into(),
        obj_code: target.obj_code.clone(),
        id: target.id.clone(),
        optional: false,
    });
    o
}

pub(crate) async fn put(store: &dyn InstallationStore, env: &str, catalog: &Catalog, objects: Vec<ConfigObject>) {
    let changes = plan_put(store, env, catalog, objects, &Default::default()).await.unwrap();
    store.write(env, changes).await.unwrap();
}

/// Extracts the template package from `dev`.
pub(crate) async fn extract(store: &dyn InstallationStore, catalog: &Catalog, root: &ConfigObject) -> PackageContent {
    let roots = vec![ObjectCollection {
        obj_code: root.obj_code.clone(),
        entities: vec![EntityRef { id: root.id.clone(), name: String::new() }],
    }];
    let export = environments::export(store, "dev", catalog, &roots).await.unwrap();
    PackageContent {
        package_id: "p".into(),
        version: 1,
        digest: "d".into(),
        source_environment: "dev".into(),
        objects: export.objects,
        external_references: export.external_references,
    }
}

pub(crate) async fn install(
    store: &dyn InstallationStore,
    catalog: &Catalog,
    content: &PackageContent,
    plan: &Plan,
    prune: bool,
) -> promotion_core::records::Undo {
    let revision = store.state("qa").await.revision + 1;
    let applied = build(store, "qa", catalog, content, plan, prune, "i", revision).await.unwrap().unwrap();
    store.write("qa", applied.changes).await.unwrap();
    applied.undo
}

pub(crate) fn entry<'a>(plan: &'a Plan, id: &ConfigObject) -> &'a plan::Entry {
    plan.entries.iter().find(|e| e.source_id == id.id).unwrap()
}

/// dev: template with two tasks referencing groups; qa: one group with the same name.
pub(crate) async fn scenario(store: &dyn InstallationStore) -> (Catalog, Vec<ConfigObject>) {
    let wf = workfront();
    let ops = obj("GROUP", 1, "Ops");
    let design = obj("GROUP", 2, "Design");
    let mut tmpl = refer(obj("TMPL", 3, "Onboarding"), "owner", &ops);
    tmpl.fields = json!({"duration": 5}).as_object().unwrap().clone();
    let t1 = refer(owned(obj("TTSK", 4, "Kick-off"), &tmpl), "group", &ops);
    let t2 = refer(refer(owned(obj("TTSK", 5, "Design"), &tmpl), "group", &design), "predecessor", &t1);
    let objects = vec![ops, design, tmpl, t1, t2];
    put(store, "dev", &wf, objects.clone()).await;
    put(store, "qa", &wf, vec![obj("GROUP", 100, "Ops")]).await;
    (wf, objects)
}

#[tokio::test]
async fn first_promotion_creates_and_name_matches_then_repeats_as_useexisting() {
    for fixture in stores() {
        let store = fixture.store.as_ref();
        let (wf, o) = scenario(store).await;
        let content = extract(store, &wf, &o[2]).await;
        let p = plan::plan(store, "qa", &wf, &content).await.unwrap();
        let ops = entry(&p, &o[0]);
        assert_eq!(
            (ops.action, ops.matched_by, ops.collision),
            (Action::UseExisting, MatchKind::Name, Collision::NameMatch)
        );
        assert_eq!(ops.target_id, format!("{:032x}", 100));
        for created in [&o[1], &o[2], &o[3], &o[4]] {
            assert_eq!(entry(&p, created).action, Action::Create);
        }
        assert!(p.entries.iter().all(|e| e.is_valid));
        install(store, &wf, &content, &p, false).await;

        // Every reference points at qa ids.
        let qa_tmpl = store.object("qa", "TMPL", &entry(&p, &o[2]).target_id).await.unwrap();
        assert_eq!(qa_tmpl.references[0].id, format!("{:032x}", 100));
        let qa_t2 = store.object("qa", "TTSK", &entry(&p, &o[4]).target_id).await.unwrap();
        assert_eq!(qa_t2.parent.unwrap().id, qa_tmpl.id);
        assert!(qa_t2.references.iter().any(|r| r.id == entry(&p, &o[3]).target_id));

        let again = plan::plan(store, "qa", &wf, &content).await.unwrap();
        assert!(again.entries.iter().all(|e| e.action == Action::UseExisting), "{:?}", again.summary());
        assert!(again
            .entries
            .iter()
            .filter(|e| e.obj_code != "GROUP" || e.source_id != o[0].id)
            .all(|e| e.matched_by == MatchKind::History));
    }
}

#[tokio::test]
async fn source_changes_overwrite_and_local_edits_are_never_silently_overwritten() {
    for fixture in stores() {
        let store = fixture.store.as_ref();
        let (wf, o) = scenario(store).await;
        let content = extract(store, &wf, &o[2]).await;
        let first = plan::plan(store, "qa", &wf, &content).await.unwrap();
        install(store, &wf, &content, &first, false).await;

        let mut changed = o[2].clone();
        changed.fields = json!({"duration": 9}).as_object().unwrap().clone();
        put(store, "dev", &wf, vec![changed.clone()]).await;
        let content2 = extract(store, &wf, &o[2]).await;
        let p = plan::plan(store, "qa", &wf, &content2).await.unwrap();
        let e = entry(&p, &o[2]);
        assert_eq!(e.action, Action::Overwriting);
        assert_eq!(e.changes.len(), 1);
        assert_eq!(e.changes[0].path, "fields.duration");
        assert_eq!((e.changes[0].before.clone(), e.changes[0].after.clone()), (json!(5), json!(9)));

        // Edit the template in qa: the next plan keeps it, flagged.
        let mut local = store.object("qa", "TMPL", &e.target_id).await.unwrap();
        local.name = "Onboarding (qa)".into();
        put(store, "qa", &wf, vec![local]).await;
        let p = plan::plan(store, "qa", &wf, &content2).await.unwrap();
        let e = entry(&p, &o[2]);
        assert_eq!((e.action, e.collision), (Action::UseExisting, Collision::LocallyModified));
        assert!(e.changes.iter().any(|c| c.path == "name"));
    }
}

#[tokio::test]
async fn stale_plans_are_detected() {
    for fixture in stores() {
        let store = fixture.store.as_ref();
        let (wf, o) = scenario(store).await;
        let content = extract(store, &wf, &o[2]).await;
        let p = plan::plan(store, "qa", &wf, &content).await.unwrap();
        assert!(plan::stale_entries(store, "qa", &wf, "dev", &p).await.unwrap().is_empty());
        // A matched object changes in qa.
        let mut g = store.object("qa", "GROUP", &format!("{:032x}", 100)).await.unwrap();
        g.fields.insert("x".into(), json!(1));
        put(store, "qa", &wf, vec![g]).await;
        assert_eq!(plan::stale_entries(store, "qa", &wf, "dev", &p).await.unwrap().len(), 1);
        // A planned CREATE of a unique name now collides.
        put(store, "qa", &wf, vec![obj("GROUP", 101, "Design")]).await;
        assert_eq!(plan::stale_entries(store, "qa", &wf, "dev", &p).await.unwrap().len(), 2);
    }
}

#[tokio::test]
async fn overrides_are_validated_and_ignore_cascades() {
    for fixture in stores() {
        let store = fixture.store.as_ref();
        let (wf, o) = scenario(store).await;
        let content = extract(store, &wf, &o[2]).await;
        let mut p = plan::plan(store, "qa", &wf, &content).await.unwrap();
        let create_ops = Override {
            obj_code: "GROUP".into(),
            source_id: o[0].id.clone(),
            action: Some(Action::Create),
            ..Default::default()
        };
        assert!(plan::apply_overrides(store, "qa", &mut p, &[create_ops]).await.unwrap().is_empty());
        plan::validate(store, "qa", &wf, &content, &mut p).await.unwrap();
        assert_eq!(entry(&p, &o[0]).reason, "NAME_CONFLICT");

        let alt = Override {
            obj_code: "GROUP".into(),
            source_id: o[0].id.clone(),
            action: Some(Action::CreateWithAltName),
            alt_name: "Ops (dev)".into(),
            ..Default::default()
        };
        plan::apply_overrides(store, "qa", &mut p, &[alt]).await.unwrap();
        plan::validate(store, "qa", &wf, &content, &mut p).await.unwrap();
        assert!(p.entries.iter().all(|e| e.is_valid), "{:?}", p.invalid_entries());

        let ignore = Override {
            obj_code: "TMPL".into(),
            source_id: o[2].id.clone(),
            action: Some(Action::Ignore),
            ..Default::default()
        };
        plan::apply_overrides(store, "qa", &mut p, &[ignore]).await.unwrap();
        plan::validate(store, "qa", &wf, &content, &mut p).await.unwrap();
        assert_eq!(entry(&p, &o[3]).action, Action::Ignore, "tasks follow their ignored template");

        let unknown = Override { obj_code: "ROLE".into(), source_id: "f".repeat(32), ..Default::default() };
        assert_eq!(plan::apply_overrides(store, "qa", &mut p, &[unknown]).await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn prune_removes_only_promoted_children_and_rollback_restores() {
    for fixture in stores() {
        let store = fixture.store.as_ref();
        let (wf, o) = scenario(store).await;
        let content = extract(store, &wf, &o[2]).await;
        let p = plan::plan(store, "qa", &wf, &content).await.unwrap();
        install(store, &wf, &content, &p, false).await;
        let qa_tmpl = entry(&p, &o[2]).target_id.clone();
        let local_task = owned(obj("TTSK", 200, "QA-only step"), &store.object("qa", "TMPL", &qa_tmpl).await.unwrap());
        put(store, "qa", &wf, vec![local_task.clone()]).await;

        // Delete task 2 at the source (it references task 1 only from its own side).
        let changes = environments::plan_delete(store, "dev", &o[4].key(), false).await.unwrap();
        store.write("dev", changes).await.unwrap();
        let mut changed = o[2].clone();
        changed.fields.insert("duration".into(), json!(7));
        put(store, "dev", &wf, vec![changed]).await;
        let content2 = extract(store, &wf, &o[2]).await;
        let before = qa_snapshot(store).await;
        let p2 = plan::plan(store, "qa", &wf, &content2).await.unwrap();
        let undo = install(store, &wf, &content2, &p2, true).await;
        assert!(store.object("qa", "TTSK", &entry(&p, &o[4]).target_id).await.is_none(), "promoted child pruned");
        assert!(store.object("qa", "TTSK", &local_task.id).await.is_some(), "local child kept");

        let installed_revision = store.state("qa").await.revision;
        assert!(apply::modified_since(store, "qa", &undo, installed_revision).await.unwrap().is_empty());
        store.write("qa", rollback_changes("qa", &undo)).await.unwrap();
        assert_eq!(qa_snapshot(store).await, before, "rollback restores the exact prior state");
    }
}

#[test]
fn integral_numbers_are_the_same_value_whatever_their_json_form() {
    // Seeds store `145.0`; objects that went through a protobuf Struct come back as `145`.
    let mut target = obj("ROLE", 1, "Designer");
    target.fields = json!({"rate": 145.0, "steps": [1.0, 2.5], "limits": {"max": 8.0}}).as_object().unwrap().clone();
    let mut source = obj("ROLE", 2, "Designer");
    source.fields = json!({"rate": 145, "steps": [1, 2.5], "limits": {"max": 8}}).as_object().unwrap().clone();
    assert!(plan::diff(&target, &source, &HashMap::new()).is_empty());
    source.fields.insert("rate".into(), json!(146));
    let changes = plan::diff(&target, &source, &HashMap::new());
    assert_eq!(changes.len(), 1);
    assert_eq!((changes[0].path.as_str(), &changes[0].after), ("fields.rate", &json!(146)));
}

#[tokio::test]
async fn a_name_matched_target_with_content_of_its_own_is_never_overwritten_by_default() {
    for fixture in stores() {
        let store = fixture.store.as_ref();
        let (wf, o) = scenario(store).await;
        let mut qa_ops = obj("GROUP", 100, "Ops");
        qa_ops.fields = json!({"description": "qa's own"}).as_object().unwrap().clone();
        put(store, "qa", &wf, vec![qa_ops]).await;
        let content = extract(store, &wf, &o[2]).await;
        let first = plan::plan(store, "qa", &wf, &content).await.unwrap();
        let ops = entry(&first, &o[0]);
        assert_eq!((ops.action, ops.collision), (Action::UseExisting, Collision::NameMatch));
        assert_eq!(ops.changes.len(), 1);
        install(store, &wf, &content, &first, false).await;

        // Registering it was not writing it: the repeat keeps qa's content, flagged.
        let again = plan::plan(store, "qa", &wf, &content).await.unwrap();
        let ops = entry(&again, &o[0]);
        assert_eq!(
            (ops.action, ops.matched_by, ops.collision),
            (Action::UseExisting, MatchKind::History, Collision::LocallyModified)
        );
        assert!(again.entries.iter().all(|e| e.action == Action::UseExisting), "{:?}", again.summary());
    }
}

#[tokio::test]
async fn prune_removes_children_deleted_at_the_source_under_an_unchanged_parent() {
    for fixture in stores() {
        let store = fixture.store.as_ref();
        let (wf, o) = scenario(store).await;
        let content = extract(store, &wf, &o[2]).await;
        let p = plan::plan(store, "qa", &wf, &content).await.unwrap();
        install(store, &wf, &content, &p, false).await;
        let qa_tmpl = store.object("qa", "TMPL", &entry(&p, &o[2]).target_id).await.unwrap();
        let local_task = owned(obj("TTSK", 200, "QA-only step"), &qa_tmpl);
        put(store, "qa", &wf, vec![local_task.clone()]).await;

        // Only the task goes away at the source: the template itself is unchanged.
        let changes = environments::plan_delete(store, "dev", &o[4].key(), false).await.unwrap();
        store.write("dev", changes).await.unwrap();
        let content2 = extract(store, &wf, &o[2]).await;
        let p2 = plan::plan(store, "qa", &wf, &content2).await.unwrap();
        assert_eq!(entry(&p2, &o[2]).action, Action::UseExisting);
        install(store, &wf, &content2, &p2, true).await;
        assert!(store.object("qa", "TTSK", &entry(&p, &o[4]).target_id).await.is_none(), "promoted child pruned");
        assert!(store.object("qa", "TTSK", &local_task.id).await.is_some(), "local child kept");
        assert!(store.object("qa", "TTSK", &entry(&p, &o[3]).target_id).await.is_some(), "kept child stays");
    }
}

/// Every object in qa, without write metadata.
async fn qa_snapshot(store: &dyn InstallationStore) -> BTreeMap<ObjectKey, ConfigObject> {
    let mut all = BTreeMap::new();
    for t in workfront().types {
        let query = ObjectQuery { obj_code: t.obj_code.clone(), ..Default::default() };
        let mut page = PageRequest::first(1000);
        loop {
            let found = store.list_objects("qa", &query, &page).await.unwrap();
            for o in found.items {
                all.insert(o.key(), o);
            }
            match found.next {
                Some(next) => page.after = Some(next),
                None => break,
            }
        }
    }
    all
}

/// A random template graph: groups, a template, tasks referencing groups and earlier tasks.
fn graph(groups: usize, tasks: Vec<(usize, Option<usize>)>) -> Vec<ConfigObject> {
    let mut out: Vec<ConfigObject> = (0..groups).map(|g| obj("GROUP", 1 + g as u32, &format!("Group {g}"))).collect();
    let tmpl = refer(obj("TMPL", 1000, "Template"), "owner", &out[0]);
    out.push(tmpl.clone());
    let mut task_objs: Vec<ConfigObject> = Vec::new();
    for (i, (g, pred)) in tasks.into_iter().enumerate() {
        let mut t = refer(owned(obj("TTSK", 2000 + i as u32, &format!("Task {i}")), &tmpl), "group", &out[g % groups]);
        if let Some(p) = pred.filter(|p| *p < task_objs.len()) {
            t = refer(t, "predecessor", &task_objs[p]);
        }
        task_objs.push(t);
    }
    out.extend(task_objs);
    out
}

async fn translated_content(store: &dyn InstallationStore, plan: &Plan) -> Vec<ConfigObject> {
    let mut out = Vec::new();
    for e in &plan.entries {
        let mut o = store.object("qa", &e.obj_code, &e.target_id).await.unwrap();
        o.revision = 0;
        o.update_time = None;
        out.push(o);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    /// Install then read back equals the package content modulo id translation; a
    /// repeated plan is all USEEXISTING; rollback restores the exact prior state.
    #[test]
    fn install_is_faithful_repeatable_and_reversible(
        groups in 1usize..5,
        tasks in proptest::collection::vec((0usize..5, proptest::option::of(0usize..20)), 0..20),
        qa_names in proptest::collection::vec(0usize..5, 0..3),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            for fixture in stores() {
            let store = fixture.store.as_ref();
            let wf = workfront();
            let objects = graph(groups, tasks.clone());
            put(store, "dev", &wf, objects.clone()).await;
            let mut qa: Vec<ConfigObject> = Vec::new();
            for (i, g) in qa_names.iter().enumerate() {
                let name = format!("Group {}", g % groups);
                if !qa.iter().any(|o| o.name == name) {
                    qa.push(obj("GROUP", 5000 + i as u32, &name));
                }
            }
            if !qa.is_empty() {
                put(store, "qa", &wf, qa).await;
            }
            let before = qa_snapshot(store).await;
            let tmpl = objects.iter().find(|o| o.obj_code == "TMPL").unwrap();
            let content = extract(store, &wf, tmpl).await;
            let p = plan::plan(store, "qa", &wf, &content).await.unwrap();
            prop_assert!(p.entries.iter().all(|e| e.is_valid), "{:?}", p.invalid_entries());
            let undo = install(store, &wf, &content, &p, false).await;

            let targets: HashMap<String, String> = p.targets().into_iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
            let installed = translated_content(store, &p).await;
            for (e, got) in p.entries.iter().zip(&installed) {
                let source = content.objects.iter().find(|o| o.id == e.source_id).unwrap();
                if e.action == Action::Create {
                    let want = plan::translate(source, &e.target_id, &source.name, &targets).unwrap();
                    prop_assert_eq!(got, &want);
                }
            }
            let again = plan::plan(store, "qa", &wf, &content).await.unwrap();
            prop_assert!(again.entries.iter().all(|e| e.action == Action::UseExisting));

            let revision = store.state("qa").await.revision;
            prop_assert!(apply::modified_since(store, "qa", &undo, revision).await.unwrap().is_empty());
            store.write("qa", rollback_changes("qa", &undo)).await.unwrap();
            prop_assert_eq!(qa_snapshot(store).await, before);
            }
            Ok(())
        })?;
    }
}
