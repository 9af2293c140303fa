//! Drift report tests on a real store: what installations wrote stays unchanged until it
//! is edited or deleted locally; edits show as field changes named in the source's ids;
//! a rollback or an overwriting installation ends the drift; pages resume where they end.
use serde_json::json;

use super::apply::rollback_changes;
use super::drift::{drift, DriftEntry, DriftState};
use super::environments;
use super::plan::{self, Action, Override, PackageContent, Plan};
use super::plan_tests::{entry, extract, install, put, scenario};
use crate::testing::{stores, TestStore};
use promotion_core::catalog::Catalog;
use promotion_core::cursor::PageRequest;
use promotion_core::objects::ConfigObject;
use promotion_core::records::Undo;
use promotion_store::InstallationStore;

async fn report(store: &dyn InstallationStore) -> Vec<DriftEntry> {
    let mut all = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let found = drift(store, "qa", &page).await.unwrap();
        all.extend(found.items);
        match found.next {
            Some(next) => page = PageRequest { size: 2, after: Some(next) },
            None => return all,
        }
    }
}

/// The scenario's template promoted from dev into qa.
struct Promoted {
    wf: Catalog,
    o: Vec<ConfigObject>,
    content: PackageContent,
    plan: Plan,
    undo: Undo,
}

async fn promoted(store: &dyn InstallationStore) -> Promoted {
    let (wf, o) = scenario(store).await;
    let content = extract(store, &wf, &o[2]).await;
    let plan = plan::plan(store, "qa", &wf, &content).await.unwrap();
    let undo = install(store, &wf, &content, &plan, false).await;
    Promoted { wf, o, content, plan, undo }
}

fn drifted(entries: &[DriftEntry]) -> Vec<&DriftEntry> {
    entries.iter().filter(|e| e.drifted()).collect()
}

#[tokio::test]
async fn local_edits_and_deletions_drift_and_a_rollback_ends_it() {
    for fixture in stores() {
        let store = fixture.store.as_ref();
        let Promoted { wf, o, plan: p, undo, .. } = promoted(store).await;

        let fresh = report(store).await;
        // Every package object: four created and the name-matched Ops group holding the
        // package's content, all as installed.
        assert_eq!(fresh.len(), 5);
        assert!(drifted(&fresh).is_empty(), "{fresh:?}");

        // Edit the template in qa: point it at qa's Design group (a qa id) and change a field.
        let qa_tmpl = entry(&p, &o[2]).target_id.clone();
        let qa_design = entry(&p, &o[1]).target_id.clone();
        let mut local = store.object("qa", "TMPL", &qa_tmpl).await.unwrap();
        local.fields.insert("duration".into(), json!(8));
        local.references[0].id = qa_design.clone();
        put(store, "qa", &wf, vec![local]).await;
        // Delete a task created by the installation.
        let task = store.object("qa", "TTSK", &entry(&p, &o[4]).target_id).await.unwrap();
        let changes = environments::plan_delete(store, "qa", &task.key(), false).await.unwrap();
        store.write("qa", changes).await.unwrap();

        let after = report(store).await;
        let drift = drifted(&after);
        assert_eq!(drift.len(), 2, "{drift:?}");
        let tmpl = drift.iter().find(|e| e.history.target_id == qa_tmpl).unwrap();
        assert_eq!(tmpl.state, DriftState::LocallyModified);
        assert_eq!(tmpl.history.source_id, o[2].id);
        let paths: Vec<(&str, serde_json::Value, serde_json::Value)> =
            tmpl.changes.iter().map(|c| (c.path.as_str(), c.before.clone(), c.after.clone())).collect();
        assert_eq!(
            paths,
            vec![
                ("fields.duration", json!(5), json!(8)),
                // The source's ids: Ops and Design as dev knows them.
                ("references.owner", json!(o[0].id), json!(o[1].id)),
            ]
        );
        let gone = drift.iter().find(|e| e.state == DriftState::Deleted).unwrap();
        assert_eq!((gone.name.as_str(), gone.current_revision), ("Design", 0));

        // Undo the local edits by rolling the installation back, forced: nothing of it is
        // left to drift.
        store.write("qa", rollback_changes("qa", &undo)).await.unwrap();
        assert!(drifted(&report(store).await).is_empty());
    }
}

#[tokio::test]
async fn an_overwriting_installation_ends_the_drift_and_a_default_one_keeps_it() {
    for fixture in stores() {
        let store = fixture.store.as_ref();
        let Promoted { wf, o, content, plan: p, .. } = promoted(store).await;
        let qa_tmpl = entry(&p, &o[2]).target_id.clone();
        let mut local = store.object("qa", "TMPL", &qa_tmpl).await.unwrap();
        local.name = "Onboarding (qa)".into();
        put(store, "qa", &wf, vec![local]).await;

        // The default plan keeps the local edit (LOCALLY_MODIFIED): still drift.
        let kept = plan::plan(store, "qa", &wf, &content).await.unwrap();
        install(store, &wf, &content, &kept, false).await;
        let names: Vec<_> =
            drifted(&report(store).await).iter().flat_map(|e| e.changes.iter().map(|c| c.path.clone())).collect();
        assert_eq!(names, vec!["name".to_string()]);

        // Overwriting it puts the package's content back: no drift.
        let mut over = plan::plan(store, "qa", &wf, &content).await.unwrap();
        let choice = Override {
            obj_code: "TMPL".into(),
            source_id: o[2].id.clone(),
            action: Some(Action::Overwriting),
            ..Default::default()
        };
        plan::apply_overrides(store, "qa", &mut over, &[choice]).await.unwrap();
        install(store, &wf, &content, &over, false).await;
        assert!(drifted(&report(store).await).is_empty());
    }
}

#[tokio::test]
async fn objects_registered_with_content_of_their_own_are_not_reported() {
    for fixture in stores() {
        let store = fixture.store.as_ref();
        let (wf, o) = scenario(store).await;
        // qa's Ops group differs from dev's: reused, never written.
        let mut ops = store.object("qa", "GROUP", &format!("{:032x}", 100)).await.unwrap();
        ops.fields.insert("lead".into(), json!("qa"));
        put(store, "qa", &wf, vec![ops.clone()]).await;
        let content = extract(store, &wf, &o[2]).await;
        let p = plan::plan(store, "qa", &wf, &content).await.unwrap();
        install(store, &wf, &content, &p, false).await;
        let ids: Vec<String> = report(store).await.into_iter().map(|e| e.history.target_id).collect();
        assert_eq!(ids.len(), 4);
        assert!(!ids.contains(&ops.id), "an object no installation wrote is not in the report");
    }
}
