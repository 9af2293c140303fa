//! The installation service seen from outside (issue 4): pre-runs, installations,
//! translation history, rollback and installation counts, over gRPC against the real
//! binary. Packages are built by alice (publisher on dev, qa) from the seeded `dev`
//! environment and installed by bob (deployer on qa, prod).
mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use promotion_api::convert::{map_to_struct, struct_to_map};
use promotion_api::v1 as pb;
use serde_json::{json, Value};
use tonic::{Code, Status};

/// Upper bound for anything polled (extraction, outbox delivery): generous for a loaded
/// 2-core machine, never reached when things work.
const POLL_LIMIT: Duration = Duration::from_secs(90);
const POLL_EVERY: Duration = Duration::from_millis(50);

use pb::InstallAction as A;
use pb::PackageStatus as P;

// ----------------------------------------------------------------------------------
// Packages (alice)
// ----------------------------------------------------------------------------------

fn collection(obj_code: &str, ids: &[&str]) -> pb::ObjectCollection {
    pb::ObjectCollection {
        obj_code: obj_code.into(),
        entities: ids.iter().map(|id| pb::EntityRef { id: (*id).into(), name: String::new() }).collect(),
    }
}

fn mask(path: &str) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask { paths: vec![path.into()] })
}

async fn get_package(c: &mut Clients, id: &str) -> pb::Package {
    c.packages.get_package(pb::GetPackageRequest { id: id.into() }).await.unwrap().into_inner()
}

/// Polls until the package has left EXTRACTING at `min_version` or later; it must be BUILDING.
async fn wait_extracted(c: &mut Clients, id: &str, min_version: i64) -> pb::Package {
    let deadline = Instant::now() + POLL_LIMIT;
    loop {
        let p = get_package(c, id).await;
        if p.status != P::Extracting as i32 && p.version >= min_version {
            assert_eq!(p.status, P::Building as i32, "extraction did not end in BUILDING: {p:?}");
            return p;
        }
        assert!(Instant::now() < deadline, "package {id} still extracting: {p:?}");
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// UpdatePackage with the field mask `path` and the current etag, read again and retried
/// when something else (an installation count arriving) changed the package in between.
async fn update_package(c: &mut Clients, id: &str, path: &str, set: impl Fn(&mut pb::Package)) -> pb::Package {
    for _ in 0..20 {
        let current = get_package(c, id).await;
        let mut package = pb::Package { id: id.into(), etag: current.etag.clone(), ..Default::default() };
        set(&mut package);
        let req =
            pb::UpdatePackageRequest { package: Some(package), update_mask: mask(path), request_id: String::new() };
        match c.packages.update_package(req).await {
            Ok(updated) => return updated.into_inner(),
            Err(s) if s.code() == Code::Aborted => continue,
            Err(s) => panic!("UpdatePackage {path} of {id}: {s:?}"),
        }
    }
    panic!("UpdatePackage {path} of {id}: the etag never held still");
}

async fn set_status(c: &mut Clients, id: &str, status: P) -> pb::Package {
    let updated = update_package(c, id, "status", |p| p.status = status as i32).await;
    assert_eq!(updated.status, status as i32);
    updated
}

/// alice packages `collections` from dev and moves the package to PREVIEW.
async fn preview_package(alice: &mut Clients, name: &str, collections: Vec<pb::ObjectCollection>) -> pb::Package {
    let req = pb::CreatePackageRequest {
        name: name.into(),
        description: "integration test package".into(),
        source_environment: "dev".into(),
        object_collections: collections,
        is_private: false,
        request_id: String::new(),
    };
    let created = alice.packages.create_package(req).await.unwrap().into_inner();
    wait_extracted(alice, &created.id, 1).await;
    set_status(alice, &created.id, P::Preview).await
}

/// The seed's "New Agency Onboarding" template, in PREVIEW.
async fn onboarding_package(alice: &mut Clients) -> pb::Package {
    preview_package(alice, "Agency onboarding template", vec![collection("TMPL", &[ONBOARDING_TMPL])]).await
}

/// Re-extracts the package's roots from dev: back to BUILDING, UpdatePackage
/// object_collections, wait for the new version, PREVIEW again.
async fn reextract(alice: &mut Clients, id: &str) -> pb::Package {
    let mut current = get_package(alice, id).await;
    if current.status != P::Building as i32 {
        current = set_status(alice, id, P::Building).await;
    }
    let roots = current.object_collections.clone();
    update_package(alice, id, "object_collections", |p| p.object_collections = roots.clone()).await;
    wait_extracted(alice, id, current.version + 1).await;
    set_status(alice, id, P::Preview).await
}

/// The package's objects (current version), by source id.
async fn definition(c: &mut Clients, id: &str) -> BTreeMap<String, pb::ConfigObject> {
    let req = pb::GetPackageDefinitionRequest { id: id.into(), version: 0 };
    let mut stream = c.packages.get_package_definition(req).await.unwrap().into_inner();
    let mut objects = BTreeMap::new();
    while let Some(msg) = stream.message().await.unwrap() {
        if let Some(pb::get_package_definition_response::Part::Entities(e)) = msg.part {
            objects.extend(e.objects.into_iter().map(|o| (o.id.clone(), o)));
        }
    }
    assert!(!objects.is_empty(), "package {id} has no objects");
    objects
}

/// Source id of the package object of `obj_code` named `name` (unique in the package).
fn source_id(objects: &BTreeMap<String, pb::ConfigObject>, obj_code: &str, name: &str) -> String {
    let found: Vec<&String> =
        objects.values().filter(|o| o.obj_code == obj_code && o.name == name).map(|o| &o.id).collect();
    assert_eq!(found.len(), 1, "{obj_code} {name:?} in the package: {found:?}");
    found[0].clone()
}

// ----------------------------------------------------------------------------------
// Environments
// ----------------------------------------------------------------------------------

fn fields_of(o: &pb::ConfigObject) -> serde_json::Map<String, Value> {
    o.fields.as_ref().map(struct_to_map).unwrap_or_default()
}

async fn get_object(c: &mut Clients, env: &str, obj_code: &str, id: &str) -> Result<pb::ConfigObject, Status> {
    let req = pb::GetObjectRequest { environment: env.into(), obj_code: obj_code.into(), id: id.into() };
    c.environments.get_object(req).await.map(|r| r.into_inner())
}

async fn list_objects(c: &mut Clients, env: &str, obj_code: &str, parent_id: &str) -> Vec<pb::ConfigObject> {
    let mut req = pb::ListObjectsRequest {
        environment: env.into(),
        obj_code: obj_code.into(),
        parent_id: parent_id.into(),
        ..Default::default()
    };
    let mut out = Vec::new();
    loop {
        let page = c.environments.list_objects(req.clone()).await.unwrap().into_inner();
        out.extend(page.objects);
        if page.next_page_token.is_empty() {
            return out;
        }
        req.page_token = page.next_page_token;
    }
}

/// admin rewrites one object with `field` set to `value`.
async fn edit_field(admin: &mut Clients, env: &str, obj_code: &str, id: &str, field: &str, value: Value) {
    let mut o = get_object(admin, env, obj_code, id).await.unwrap();
    let mut fields = fields_of(&o);
    fields.insert(field.into(), value);
    o.fields = Some(map_to_struct(&fields));
    let req = pb::PutObjectsRequest {
        environment: env.into(),
        objects: vec![o],
        request_id: String::new(),
        ..Default::default()
    };
    admin.environments.put_objects(req).await.unwrap();
}

async fn environment(c: &mut Clients, env: &str) -> pb::Environment {
    c.environments.get_environment(pb::GetEnvironmentRequest { id: env.into() }).await.unwrap().into_inner()
}

/// What a user sees of one object, without revision and update time.
fn visible(o: &pb::ConfigObject) -> Value {
    let mut refs: Vec<Value> = o.references.iter().map(|r| json!([r.field, r.obj_code, r.id, r.optional])).collect();
    refs.sort_by_key(|r| r.to_string());
    json!({
        "name": o.name,
        "fields": fields_of(o),
        "parent": o.parent.as_ref().map(|p| format!("{}:{}", p.obj_code, p.id)),
        "references": refs,
    })
}

/// Every object of every catalog type of `env`: (obj_code, id) -> visible content.
type Snapshot = BTreeMap<(String, String), Value>;

async fn snapshot(c: &mut Clients, env: &str) -> Snapshot {
    let req = pb::GetCatalogRequest { name: String::new(), environment: env.into() };
    let catalog = c.environments.get_catalog(req).await.unwrap().into_inner();
    let mut out = Snapshot::new();
    for t in catalog.types {
        for o in list_objects(c, env, &t.obj_code, "").await {
            out.insert((o.obj_code.clone(), o.id.clone()), visible(&o));
        }
    }
    out
}

/// Ids of the template tasks under `tmpl` in qa.
async fn task_ids(c: &mut Clients, tmpl: &str) -> BTreeSet<String> {
    list_objects(c, "qa", "TTSK", tmpl).await.into_iter().map(|t| t.id).collect()
}

/// Names of the objects of one type in `env`, each with its id.
async fn ids_by_name(c: &mut Clients, env: &str, obj_code: &str) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for o in list_objects(c, env, obj_code, "").await {
        out.entry(o.name).or_default().push(o.id);
    }
    out
}

// ----------------------------------------------------------------------------------
// Pre-runs and installations (bob)
// ----------------------------------------------------------------------------------

fn pre_run_request(package_id: &str, dest: &str) -> pb::CreatePreRunRequest {
    pb::CreatePreRunRequest {
        package_id: package_id.into(),
        destination_environment: dest.into(),
        ..Default::default()
    }
}

async fn pre_run(c: &mut Clients, package_id: &str, dest: &str) -> pb::PreRun {
    c.installations.create_pre_run(pre_run_request(package_id, dest)).await.unwrap().into_inner()
}

fn install_request(package_id: &str, dest: &str) -> pb::CreateInstallationRequest {
    pb::CreateInstallationRequest {
        package_id: package_id.into(),
        destination_environment: dest.into(),
        ..Default::default()
    }
}

fn following(pre: &pb::PreRun) -> pb::CreateInstallationRequest {
    pb::CreateInstallationRequest {
        pre_run_id: pre.id.clone(),
        ..install_request(&pre.package_id, &pre.destination_environment)
    }
}

async fn install(c: &mut Clients, req: pb::CreateInstallationRequest) -> Result<pb::Installation, Status> {
    c.installations.create_installation(req).await.map(|r| r.into_inner())
}

/// Installs the package's defaults into `dest` and checks it is INSTALLED.
async fn install_defaults(c: &mut Clients, package_id: &str, dest: &str) -> pb::Installation {
    let done = install(c, install_request(package_id, dest)).await.unwrap();
    assert_eq!(done.status, pb::InstallationStatus::Installed as i32, "{done:?}");
    done
}

type Entries = BTreeMap<(String, String), pb::TranslationEntry>;

/// (obj_code, source id) -> entry.
fn entries(map: &HashMap<String, pb::TypeTranslation>) -> Entries {
    let mut out = Entries::new();
    for (code, t) in map {
        for (id, e) in &t.entries {
            out.insert((code.clone(), id.clone()), e.clone());
        }
    }
    out
}

fn entry<'a>(all: &'a Entries, obj_code: &str, id: &str) -> &'a pb::TranslationEntry {
    all.get(&(obj_code.to_string(), id.to_string())).unwrap_or_else(|| panic!("no entry for {obj_code}:{id}"))
}

fn action(e: &pb::TranslationEntry) -> A {
    A::try_from(e.action).unwrap()
}

/// Entries whose action is not USEEXISTING, with their changes (for failure messages).
fn not_useexisting(all: &Entries) -> Vec<String> {
    all.iter()
        .filter(|(_, e)| action(e) != A::Useexisting)
        .map(|((code, _), e)| format!("{code} {:?} {:?}: {:?}", e.name, action(e), e.changes))
        .collect()
}

/// The summary a user would compute from the entries: action name -> count.
fn counted(all: &Entries) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for e in all.values() {
        let name = action(e).as_str_name().trim_start_matches("INSTALL_ACTION_").to_string();
        *out.entry(name).or_insert(0) += 1;
        if !e.is_valid {
            *out.entry("INVALID".to_string()).or_insert(0) += 1;
        }
    }
    out
}

fn sorted(summary: &HashMap<String, i64>) -> BTreeMap<String, i64> {
    summary.iter().map(|(k, v)| (k.clone(), *v)).collect()
}

fn override_of(obj_code: &str, id: &str, e: pb::TranslationEntry) -> HashMap<String, pb::TypeTranslation> {
    let mut t = pb::TypeTranslation::default();
    t.entries.insert(id.into(), e);
    HashMap::from([(obj_code.to_string(), t)])
}

/// Before and after of the numeric field change at `path`, if the entry lists one.
fn number_change(e: &pb::TranslationEntry, path: &str) -> Option<(f64, f64)> {
    let n = |x: &Option<prost_types::Value>| match x.as_ref().and_then(|v| v.kind.clone()) {
        Some(prost_types::value::Kind::NumberValue(n)) => n,
        other => panic!("{path} is not a number: {other:?}"),
    };
    e.changes.iter().find(|c| c.path == path).map(|c| (n(&c.before), n(&c.after)))
}

fn number(o: &pb::ConfigObject, field: &str) -> f64 {
    fields_of(o).get(field).and_then(Value::as_f64).unwrap_or_else(|| panic!("{field} of {} is not a number", o.id))
}

fn status_of(e: &pb::TranslationEntry) -> pb::EntryInstallationStatus {
    pb::EntryInstallationStatus::try_from(e.installation_status).unwrap()
}

async fn list_installations(c: &mut Clients, package_id: &str, dest: &str) -> Vec<pb::Installation> {
    let req = pb::ListInstallationsRequest {
        package_id: package_id.into(),
        destination_environment: dest.into(),
        ..Default::default()
    };
    c.installations.list_installations(req).await.unwrap().into_inner().installations
}

async fn rollback(c: &mut Clients, id: &str, force: bool) -> Result<pb::Installation, Status> {
    let req = pb::RollbackInstallationRequest { id: id.into(), force, ..Default::default() };
    c.installations.rollback_installation(req).await.map(|r| r.into_inner())
}

fn metadata(status: &Status, key: &str) -> String {
    metadata_of(status).get(key).cloned().unwrap_or_default()
}

struct Demo {
    dev: DevServices,
    admin: Clients,
    alice: Clients,
    bob: Clients,
}

async fn demo() -> Demo {
    let dev = DevServices::start().await;
    let (admin, alice, bob) = (dev.clients("admin").await, dev.clients("alice").await, dev.clients("bob").await);
    Demo { dev, admin, alice, bob }
}

// ----------------------------------------------------------------------------------
// 1. First promotion
// ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_promotion_creates_new_objects_and_name_matches_qa_groups_and_roles() {
    let Demo { mut admin, mut alice, mut bob, dev: _dev } = demo().await;
    let package = onboarding_package(&mut alice).await;
    let objects = definition(&mut bob, &package.id).await;
    let qa_groups = ids_by_name(&mut admin, "qa", "GROUP").await;
    let qa_roles = ids_by_name(&mut admin, "qa", "ROLE").await;
    let before = snapshot(&mut admin, "qa").await;

    let pre = pre_run(&mut bob, &package.id, "qa").await;
    assert_eq!(pre.status, pb::PreRunStatus::Ready as i32, "{}", pre.failure_reason);
    assert_eq!((pre.package_version, pre.destination_environment.as_str()), (package.version, "qa"));
    assert_eq!(pre.source_environment, "dev");
    assert!(pre.expire_time.as_ref().unwrap().seconds > pre.create_time.as_ref().unwrap().seconds);
    let planned = entries(&pre.translation_map);
    assert_eq!(planned.len(), objects.len(), "one entry per package object");
    let mut name_matched = BTreeSet::new();
    for ((code, src), e) in &planned {
        let qa_ids = match code.as_str() {
            "GROUP" => qa_groups.get(&e.name),
            "ROLE" => qa_roles.get(&e.name),
            _ => None,
        };
        assert!(e.is_valid, "{code}:{src} invalid: {}", e.reason);
        match qa_ids {
            Some(ids) => {
                assert_eq!(action(e), A::Useexisting, "{code} {:?}", e.name);
                assert_eq!(e.matched_by, pb::MatchKind::Name as i32, "{code} {:?}", e.name);
                assert_eq!(e.collision, pb::Collision::NameMatch as i32, "{code} {:?}", e.name);
                assert_eq!(&vec![e.target_id.clone()], ids, "{code} {:?} maps to the qa object", e.name);
                name_matched.insert(e.name.clone());
            }
            None => {
                assert_eq!(action(e), A::Create, "{code} {:?}", e.name);
                assert_eq!(e.matched_by, pb::MatchKind::Unspecified as i32);
                assert_eq!(e.collision, pb::Collision::Unspecified as i32);
                assert!(e.target_id.len() == 32 && &e.target_id != src, "a new id for {code}:{src}");
                assert!(!before.contains_key(&(code.clone(), e.target_id.clone())));
            }
        }
    }
    for name in ["Agency Operations", "Creative Services", "Project Manager", "Designer"] {
        assert!(name_matched.contains(name), "{name} should be a name match: {name_matched:?}");
    }
    // qa's Designer bills 130 an hour, dev's 125: a field-level change the pre-run shows.
    let designer = entry(&planned, "ROLE", &source_id(&objects, "ROLE", "Designer"));
    assert_eq!(number_change(designer, "fields.billing_per_hour"), Some((130.0, 125.0)));
    assert_eq!(designer.changes.len(), 1, "the other fields are equal: {:?}", designer.changes);
    let pm = entry(&planned, "ROLE", &source_id(&objects, "ROLE", "Project Manager"));
    assert!(pm.changes.is_empty(), "145.0 and 145 are the same rate: {:?}", pm.changes);
    assert_eq!(sorted(&pre.summary), counted(&planned));
    assert_eq!(pre.summary.get("USEEXISTING"), Some(&(name_matched.len() as i64)));
    let stored =
        bob.installations.get_pre_run(pb::GetPreRunRequest { id: pre.id.clone(), ..Default::default() }).await.unwrap();
    assert_eq!(stored.into_inner(), pre, "GetPreRun returns the stored plan");

    let done = install(&mut bob, following(&pre)).await.unwrap();
    assert_eq!(done.status, pb::InstallationStatus::Installed as i32);
    assert_eq!((done.pre_run_id.as_str(), done.created_by.as_str()), (pre.id.as_str(), "bob"));
    assert!(done.finish_time.is_some());
    assert_eq!(done.summary, pre.summary);
    let installed = entries(&done.translation_map);
    for (key, e) in &installed {
        assert_eq!(e.target_id, planned[key].target_id, "installed exactly the plan");
        let expected = if action(e) == A::Create {
            pb::EntryInstallationStatus::Installed
        } else {
            pb::EntryInstallationStatus::Registered
        };
        assert_eq!(status_of(e), expected, "{key:?}");
    }
    let got = bob
        .installations
        .get_installation(pb::GetInstallationRequest { id: done.id.clone(), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(got.into_inner(), done);

    // The template and its tasks exist in qa under new ids.
    let tmpl = entry(&installed, "TMPL", ONBOARDING_TMPL);
    assert_ne!(tmpl.target_id, ONBOARDING_TMPL);
    let templates = list_objects(&mut bob, "qa", "TMPL", "").await;
    let onboarding: Vec<_> = templates.iter().filter(|t| t.name == "New Agency Onboarding").collect();
    assert_eq!(onboarding.len(), 1);
    assert_eq!(onboarding[0].id, tmpl.target_id);
    let tasks: BTreeSet<String> =
        list_objects(&mut bob, "qa", "TTSK", &tmpl.target_id).await.into_iter().map(|t| t.name).collect();
    let package_tasks: BTreeSet<String> = objects
        .values()
        .filter(|o| o.obj_code == "TTSK" && o.parent.as_ref().is_some_and(|p| p.id == ONBOARDING_TMPL))
        .map(|o| o.name.clone())
        .collect();
    assert!(package_tasks.len() >= 6);
    assert_eq!(tasks, package_tasks);

    // Every installed object carries the package's content, and every reference and parent
    // points at a qa object: the translated one when the package carries the target.
    let targets: HashMap<String, String> =
        installed.iter().map(|((_, s), e)| (s.clone(), e.target_id.clone())).collect();
    for ((code, src), e) in &installed {
        let object = get_object(&mut bob, "qa", code, &e.target_id).await.unwrap_or_else(|s| panic!("{code}: {s}"));
        if status_of(e) != pb::EntryInstallationStatus::Installed {
            continue;
        }
        let source = &objects[src];
        assert_eq!((object.name.as_str(), fields_of(&object)), (source.name.as_str(), fields_of(source)));
        for r in &object.references {
            assert!(get_object(&mut bob, "qa", &r.obj_code, &r.id).await.is_ok(), "{code}:{} -> {r:?}", object.id);
            assert!(!objects.contains_key(&r.id) || targets.values().any(|t| *t == r.id), "untranslated {r:?}");
        }
        for r in &source.references {
            if let Some(t) = targets.get(&r.id) {
                assert!(object.references.iter().any(|x| x.field == r.field && &x.id == t), "{code} {:?}", r.field);
            }
        }
        if let Some(p) = &source.parent {
            assert_eq!(object.parent.as_ref().map(|x| &x.id), Some(&targets[&p.id]), "parent of {code}:{src}");
            assert!(get_object(&mut bob, "qa", &p.obj_code, &targets[&p.id]).await.is_ok());
        }
    }
    // Name-matched objects were registered, not rewritten: qa's Designer still bills 130.
    let qa_designer = get_object(&mut bob, "qa", "ROLE", &designer.target_id).await.unwrap();
    assert_eq!(number(&qa_designer, "billing_per_hour"), 130.0);
}

// ----------------------------------------------------------------------------------
// 2. Repeated installation, then a change at the source
// ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reinstall_is_all_useexisting_and_a_source_change_overwrites_in_place() {
    let Demo { mut admin, mut alice, mut bob, dev: _dev } = demo().await;
    let package = onboarding_package(&mut alice).await;
    let designer = source_id(&definition(&mut bob, &package.id).await, "ROLE", "Designer");
    let first = install_defaults(&mut bob, &package.id, "qa").await;
    let tmpl_target = entry(&entries(&first.translation_map), "TMPL", ONBOARDING_TMPL).target_id.clone();
    let counts = environment(&mut bob, "qa").await.object_counts;
    let after_first = snapshot(&mut admin, "qa").await;

    let again = install_defaults(&mut bob, &package.id, "qa").await;
    let again_entries = entries(&again.translation_map);
    let all_useexisting = HashMap::from([("USEEXISTING".to_string(), again_entries.len() as i64)]);
    assert_eq!(again.summary, all_useexisting, "{:#?}", not_useexisting(&again_entries));
    for (key, e) in &again_entries {
        assert_eq!(status_of(e), pb::EntryInstallationStatus::Registered, "{key:?}");
        assert_eq!(e.matched_by, pb::MatchKind::History as i32, "{key:?} matched by history");
    }
    // qa's Designer kept its own rate when first registered: still qa's, flagged, not overwritten.
    let kept = entry(&again_entries, "ROLE", &designer);
    assert_eq!(kept.collision, pb::Collision::LocallyModified as i32);
    assert_eq!(number_change(kept, "fields.billing_per_hour"), Some((130.0, 125.0)));
    assert_eq!(environment(&mut bob, "qa").await.object_counts, counts, "no duplicate");
    assert_eq!(snapshot(&mut admin, "qa").await, after_first, "nothing rewritten");

    // Change the template in dev and re-extract.
    edit_field(&mut admin, "dev", "TMPL", ONBOARDING_TMPL, "planned_duration_days", json!(28)).await;
    let v2 = reextract(&mut alice, &package.id).await;
    assert_eq!(v2.version, package.version + 1);

    let pre = pre_run(&mut bob, &package.id, "qa").await;
    assert_eq!(pre.package_version, v2.version);
    let planned = entries(&pre.translation_map);
    let tmpl = entry(&planned, "TMPL", ONBOARDING_TMPL);
    assert_eq!(action(tmpl), A::Overwriting);
    assert_eq!(tmpl.matched_by, pb::MatchKind::History as i32);
    assert_eq!(tmpl.collision, pb::Collision::Unspecified as i32);
    assert_eq!(tmpl.target_id, tmpl_target);
    assert_eq!(number_change(tmpl, "fields.planned_duration_days"), Some((21.0, 28.0)));
    assert_eq!(tmpl.changes.len(), 1, "only the changed field: {:?}", tmpl.changes);
    assert_eq!(pre.summary.get("OVERWRITING"), Some(&1));
    assert_eq!(pre.summary.get("USEEXISTING"), Some(&(planned.len() as i64 - 1)));

    let updated = install(&mut bob, following(&pre)).await.unwrap();
    assert_eq!(
        status_of(entry(&entries(&updated.translation_map), "TMPL", ONBOARDING_TMPL)),
        pb::EntryInstallationStatus::Installed
    );
    let in_qa = get_object(&mut bob, "qa", "TMPL", &tmpl_target).await.unwrap();
    assert_eq!(number(&in_qa, "planned_duration_days"), 28.0, "updated in place");
    assert_eq!(environment(&mut bob, "qa").await.object_counts, counts, "still no duplicate");

    // Rolling the update back restores the template as the first installation left it.
    rollback(&mut bob, &updated.id, false).await.unwrap();
    assert_eq!(snapshot(&mut admin, "qa").await, after_first);
}

// ----------------------------------------------------------------------------------
// 3. Local edits in the destination
// ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_edit_is_kept_by_default_and_overwritten_only_on_request() {
    let Demo { mut admin, mut alice, mut bob, dev: _dev } = demo().await;
    let package = onboarding_package(&mut alice).await;
    let first = install_defaults(&mut bob, &package.id, "qa").await;
    let target = entry(&entries(&first.translation_map), "TMPL", ONBOARDING_TMPL).target_id.clone();
    edit_field(&mut admin, "qa", "TMPL", &target, "priority", json!(5)).await;

    let pre = pre_run(&mut bob, &package.id, "qa").await;
    let planned = entries(&pre.translation_map);
    let tmpl = entry(&planned, "TMPL", ONBOARDING_TMPL);
    assert_eq!(action(tmpl), A::Useexisting, "never silently overwrite a local edit");
    assert_eq!(tmpl.collision, pb::Collision::LocallyModified as i32);
    assert_eq!(tmpl.matched_by, pb::MatchKind::History as i32);
    assert_eq!(number_change(tmpl, "fields.priority"), Some((5.0, 2.0)));
    assert_eq!(pre.summary, HashMap::from([("USEEXISTING".to_string(), planned.len() as i64)]));

    let overwrite = pb::TranslationEntry { action: A::Overwriting as i32, ..Default::default() };
    let req = pb::CreateInstallationRequest {
        translation_map: override_of("TMPL", ONBOARDING_TMPL, overwrite),
        ..following(&pre)
    };
    let done = install(&mut bob, req).await.unwrap();
    let tmpl = entry(&entries(&done.translation_map), "TMPL", ONBOARDING_TMPL).clone();
    assert_eq!((action(&tmpl), status_of(&tmpl)), (A::Overwriting, pb::EntryInstallationStatus::Installed));
    assert_eq!(done.summary.get("OVERWRITING"), Some(&1));
    let in_qa = get_object(&mut bob, "qa", "TMPL", &target).await.unwrap();
    assert_eq!(number(&in_qa, "priority"), 2.0, "the package's value, same id");

    // Now qa holds what the package says again: nothing to report.
    let pre = pre_run(&mut bob, &package.id, "qa").await;
    let tmpl = entry(&entries(&pre.translation_map), "TMPL", ONBOARDING_TMPL).clone();
    assert_eq!((action(&tmpl), tmpl.collision), (A::Useexisting, pb::Collision::Unspecified as i32));
    assert!(tmpl.changes.is_empty(), "{:?}", tmpl.changes);
}

// ----------------------------------------------------------------------------------
// 4. Stale pre-runs
// ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_run_made_stale_by_a_destination_change_installs_nothing() {
    let Demo { mut admin, mut alice, mut bob, dev: _dev } = demo().await;
    let package = onboarding_package(&mut alice).await;
    let objects = definition(&mut bob, &package.id).await;
    let pre = pre_run(&mut bob, &package.id, "qa").await;
    let ops = source_id(&objects, "GROUP", "Agency Operations");
    let ops_target = entry(&entries(&pre.translation_map), "GROUP", &ops).target_id.clone();
    edit_field(&mut admin, "qa", "GROUP", &ops_target, "description", json!("Edited in qa after the pre-run")).await;
    let before = snapshot(&mut admin, "qa").await;
    let revision = environment(&mut bob, "qa").await.revision;

    let refused = assert_status(install(&mut bob, following(&pre)).await, Code::Aborted, "PRE_RUN_STALE");
    assert!(metadata(&refused, "entries").contains(&format!("GROUP:{ops}")), "{refused:?}");
    assert_eq!(snapshot(&mut admin, "qa").await, before, "nothing written");
    assert_eq!(environment(&mut bob, "qa").await.revision, revision);
    assert!(list_installations(&mut bob, &package.id, "qa").await.is_empty(), "no installation record");

    // A fresh pre-run sees the edit and installs.
    let fresh = pre_run(&mut bob, &package.id, "qa").await;
    install(&mut bob, following(&fresh)).await.unwrap();
}

// ----------------------------------------------------------------------------------
// 5. CREATE of a unique name, CREATEWITHALTNAME
// ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_an_existing_group_name_is_refused_and_an_alternative_name_installs() {
    let Demo { mut admin, mut alice, mut bob, dev: _dev } = demo().await;
    let package = onboarding_package(&mut alice).await;
    let objects = definition(&mut bob, &package.id).await;
    let ops = source_id(&objects, "GROUP", "Agency Operations");
    let pre = pre_run(&mut bob, &package.id, "qa").await;
    let qa_ops = entry(&entries(&pre.translation_map), "GROUP", &ops).target_id.clone();
    let qa_ops_before = get_object(&mut bob, "qa", "GROUP", &qa_ops).await.unwrap();
    let before = snapshot(&mut admin, "qa").await;

    let create = pb::TranslationEntry { action: A::Create as i32, ..Default::default() };
    let req = pb::CreateInstallationRequest { translation_map: override_of("GROUP", &ops, create), ..following(&pre) };
    let refused = assert_status(install(&mut bob, req).await, Code::FailedPrecondition, "INVALID_TRANSLATION_MAP");
    let listed = metadata(&refused, "entries");
    assert!(listed.contains(&format!("GROUP:{ops}")) && listed.contains("NAME_CONFLICT"), "{listed}");
    let no_name = pb::TranslationEntry { action: A::Createwithaltname as i32, ..Default::default() };
    let req = pb::CreateInstallationRequest { translation_map: override_of("GROUP", &ops, no_name), ..following(&pre) };
    let refused = assert_status(install(&mut bob, req).await, Code::FailedPrecondition, "INVALID_TRANSLATION_MAP");
    assert!(metadata(&refused, "entries").contains("ALT_NAME_REQUIRED"), "{refused:?}");
    assert_eq!(snapshot(&mut admin, "qa").await, before, "nothing written");

    let alt = pb::TranslationEntry {
        action: A::Createwithaltname as i32,
        alt_name: "Agency Operations (from dev)".into(),
        ..Default::default()
    };
    let req = pb::CreateInstallationRequest { translation_map: override_of("GROUP", &ops, alt), ..following(&pre) };
    let done = install(&mut bob, req).await.unwrap();
    let installed = entries(&done.translation_map);
    let group = entry(&installed, "GROUP", &ops);
    assert_eq!((action(group), status_of(group)), (A::Createwithaltname, pb::EntryInstallationStatus::Installed));
    assert_ne!(group.target_id, qa_ops);
    let created = get_object(&mut bob, "qa", "GROUP", &group.target_id).await.unwrap();
    assert_eq!(created.name, "Agency Operations (from dev)");
    assert_eq!(get_object(&mut bob, "qa", "GROUP", &qa_ops).await.unwrap(), qa_ops_before, "qa's own group untouched");
    // What refers to the dev group now refers to the renamed copy.
    let tmpl = get_object(&mut bob, "qa", "TMPL", &entry(&installed, "TMPL", ONBOARDING_TMPL).target_id).await.unwrap();
    let group_ref = tmpl.references.iter().find(|r| r.field == "group").expect("the template's group");
    assert_eq!(group_ref.id, group.target_id);
}

// ----------------------------------------------------------------------------------
// 6. Installability by package status and environment kind
// ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_package_installs_into_sandboxes_only_and_public_anywhere() {
    let Demo { mut admin, mut alice, mut bob, dev: _dev } = demo().await;
    let req = pb::CreatePackageRequest {
        name: "Agency onboarding template".into(),
        source_environment: "dev".into(),
        object_collections: vec![collection("TMPL", &[ONBOARDING_TMPL])],
        ..Default::default()
    };
    let package = alice.packages.create_package(req).await.unwrap().into_inner();
    wait_extracted(&mut alice, &package.id, 1).await;
    let prod_before = snapshot(&mut admin, "prod").await;
    let qa_before = snapshot(&mut admin, "qa").await;

    // BUILDING: installable nowhere.
    assert_status(
        bob.installations.create_pre_run(pre_run_request(&package.id, "qa")).await,
        Code::FailedPrecondition,
        "PACKAGE_NOT_INSTALLABLE",
    );
    assert_status(
        install(&mut bob, install_request(&package.id, "qa")).await,
        Code::FailedPrecondition,
        "PACKAGE_NOT_INSTALLABLE",
    );

    // PREVIEW: sandboxes only.
    set_status(&mut alice, &package.id, P::Preview).await;
    let refused = assert_status(
        bob.installations.create_pre_run(pre_run_request(&package.id, "prod")).await,
        Code::FailedPrecondition,
        "PACKAGE_NOT_INSTALLABLE",
    );
    assert_eq!(metadata(&refused, "status"), "PREVIEW");
    assert_status(
        install(&mut bob, install_request(&package.id, "prod")).await,
        Code::FailedPrecondition,
        "PACKAGE_NOT_INSTALLABLE",
    );
    assert_eq!(snapshot(&mut admin, "prod").await, prod_before, "nothing written to prod");
    assert_eq!(snapshot(&mut admin, "qa").await, qa_before, "nothing written to qa");
    assert!(list_installations(&mut bob, &package.id, "").await.is_empty());

    // PUBLIC: anywhere.
    set_status(&mut alice, &package.id, P::Public).await;
    let done = install_defaults(&mut bob, &package.id, "prod").await;
    let tmpl = entry(&entries(&done.translation_map), "TMPL", ONBOARDING_TMPL).target_id.clone();
    assert_eq!(get_object(&mut bob, "prod", "TMPL", &tmpl).await.unwrap().name, "New Agency Onboarding");
    let prod_ops = ids_by_name(&mut bob, "prod", "GROUP").await["Agency Operations"].clone();
    assert_eq!(prod_ops.len(), 1, "prod's own Agency Operations group was reused, not duplicated");
}

// ----------------------------------------------------------------------------------
// 7. Rollback
// ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_restores_the_exact_prior_state_and_refuses_after_later_edits_unless_forced() {
    let Demo { mut admin, mut alice, mut bob, dev: _dev } = demo().await;
    let package = onboarding_package(&mut alice).await;
    let pristine = snapshot(&mut admin, "qa").await;

    let first = install_defaults(&mut bob, &package.id, "qa").await;
    assert_ne!(snapshot(&mut admin, "qa").await, pristine);
    let rolled = rollback(&mut bob, &first.id, false).await.unwrap();
    assert_eq!(rolled.status, pb::InstallationStatus::RolledBack as i32);
    assert_eq!(rolled.rolled_back_by, "bob");
    assert!(rolled.rollback_time.is_some());
    assert_eq!(snapshot(&mut admin, "qa").await, pristine, "qa exactly as before the installation");
    let got = bob
        .installations
        .get_installation(pb::GetInstallationRequest { id: first.id.clone(), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(got.into_inner().status, pb::InstallationStatus::RolledBack as i32);
    assert_status(rollback(&mut bob, &first.id, false).await, Code::FailedPrecondition, "ALREADY_ROLLED_BACK");
    assert_status(rollback(&mut bob, &first.id, true).await, Code::FailedPrecondition, "ALREADY_ROLLED_BACK");

    // The translation history was rolled back too: the next installation creates again.
    let second = install_defaults(&mut bob, &package.id, "qa").await;
    let second_entries = entries(&second.translation_map);
    assert_eq!(sorted(&second.summary), sorted(&first.summary));
    let target = entry(&second_entries, "TMPL", ONBOARDING_TMPL).target_id.clone();
    edit_field(&mut admin, "qa", "TMPL", &target, "priority", json!(5)).await;
    let edited = snapshot(&mut admin, "qa").await;

    let refused = assert_status(
        rollback(&mut bob, &second.id, false).await,
        Code::FailedPrecondition,
        "OBJECTS_MODIFIED_SINCE_INSTALL",
    );
    assert!(metadata(&refused, "objects").contains(&format!("TMPL:{target}")), "{refused:?}");
    assert_eq!(snapshot(&mut admin, "qa").await, edited, "a refused rollback writes nothing");
    let installed = bob
        .installations
        .get_installation(pb::GetInstallationRequest { id: second.id.clone(), ..Default::default() })
        .await;
    assert_eq!(installed.unwrap().into_inner().status, pb::InstallationStatus::Installed as i32);

    let forced = rollback(&mut bob, &second.id, true).await.unwrap();
    assert_eq!(forced.status, pb::InstallationStatus::RolledBack as i32);
    assert_eq!(snapshot(&mut admin, "qa").await, pristine, "force discards the later edit too");
}

// ----------------------------------------------------------------------------------
// 8. prune_children
// ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_children_removes_tasks_deleted_at_the_source_but_never_local_ones() {
    let Demo { mut admin, mut alice, mut bob, dev: _dev } = demo().await;
    let package = onboarding_package(&mut alice).await;
    let objects = definition(&mut bob, &package.id).await;
    let first = install_defaults(&mut bob, &package.id, "qa").await;
    let first_entries = entries(&first.translation_map);
    let tmpl = entry(&first_entries, "TMPL", ONBOARDING_TMPL).target_id.clone();
    let go_live = source_id(&objects, "TTSK", "Go-Live Review");
    let go_live_target = entry(&first_entries, "TTSK", &go_live).target_id.clone();
    // go_live's own assignments and predecessors, in qa.
    let owned: Vec<(String, String)> = objects
        .values()
        .filter(|o| o.parent.as_ref().is_some_and(|p| p.id == go_live))
        .map(|o| (o.obj_code.clone(), entry(&first_entries, &o.obj_code, &o.id).target_id.clone()))
        .collect();
    assert!(!owned.is_empty());

    // A task created locally in qa under the promoted template.
    let local = pb::ConfigObject {
        obj_code: "TTSK".into(),
        name: "QA Sign-off".into(),
        parent: Some(pb::ObjectKey { obj_code: "TMPL".into(), id: tmpl.clone() }),
        fields: Some(map_to_struct(&json!({ "task_number": 7, "duration": 1 }).as_object().unwrap().clone())),
        ..Default::default()
    };
    let req = pb::PutObjectsRequest {
        environment: "qa".into(),
        objects: vec![local],
        request_id: String::new(),
        ..Default::default()
    };
    let local_id = admin.environments.put_objects(req).await.unwrap().into_inner().objects[0].id.clone();

    // The task is deleted at the source and the package re-extracted.
    let req = pb::DeleteObjectRequest {
        environment: "dev".into(),
        obj_code: "TTSK".into(),
        id: go_live.clone(),
        cascade: true,
        request_id: String::new(),
    };
    admin.environments.delete_object(req).await.unwrap();
    reextract(&mut alice, &package.id).await;

    // Without prune_children the destination keeps children the package no longer has.
    install_defaults(&mut bob, &package.id, "qa").await;
    let tasks = task_ids(&mut bob, &tmpl).await;
    assert!(tasks.contains(&go_live_target) && tasks.contains(&local_id));

    let req = pb::CreateInstallationRequest { prune_children: true, ..install_request(&package.id, "qa") };
    let pruned = install(&mut bob, req).await.unwrap();
    assert!(pruned.prune_children);
    let tasks = task_ids(&mut bob, &tmpl).await;
    assert!(!tasks.contains(&go_live_target), "the task deleted at the source is pruned");
    assert!(tasks.contains(&local_id), "a task created in qa is never pruned");
    assert_eq!(tasks.len(), 6, "five promoted tasks left plus the local one: {tasks:?}");
    for (code, id) in &owned {
        assert_status(get_object(&mut bob, "qa", code, id).await, Code::NotFound, "OBJECT_NOT_FOUND");
    }

    // Rolling the pruning installation back brings the pruned task back.
    rollback(&mut bob, &pruned.id, false).await.unwrap();
    assert!(get_object(&mut bob, "qa", "TTSK", &go_live_target).await.is_ok());
}

// ----------------------------------------------------------------------------------
// 9. Concurrent installations
// ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_installations_never_duplicate_or_lose_an_update() {
    let Demo { mut admin, mut alice, mut bob, dev } = demo().await;
    let mut bob2 = dev.clients("bob").await;
    let onboarding = onboarding_package(&mut alice).await;
    let counts_before = environment(&mut bob, "qa").await.object_counts;

    // Without pre-runs: both succeed; the second sees the first one's result.
    let (a, b) = tokio::join!(
        install(&mut bob, install_request(&onboarding.id, "qa")),
        install(&mut bob2, install_request(&onboarding.id, "qa")),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let creates = |i: &pb::Installation| i.summary.get("CREATE").copied().unwrap_or(0);
    let (first, second) = if creates(&a) > 0 { (a, b) } else { (b, a) };
    assert!(creates(&first) > 0, "one of them created the objects");
    let second_entries = entries(&second.translation_map);
    assert_eq!(second.summary, HashMap::from([("USEEXISTING".to_string(), second_entries.len() as i64)]));
    let counts = environment(&mut bob, "qa").await.object_counts;
    let grown: i64 = counts.values().sum::<i64>() - counts_before.values().sum::<i64>();
    assert_eq!(grown, creates(&first), "exactly one installation's objects were created");

    // With pre-runs computed on the same state: one installs, the other is stale.
    let offboarding =
        preview_package(&mut alice, "Agency offboarding template", vec![collection("TMPL", &[OFFBOARDING_TMPL])]).await;
    let pre_a = pre_run(&mut bob, &offboarding.id, "qa").await;
    let pre_b = pre_run(&mut bob2, &offboarding.id, "qa").await;
    let counts_before = environment(&mut bob, "qa").await.object_counts;
    let (a, b) = tokio::join!(install(&mut bob, following(&pre_a)), install(&mut bob2, following(&pre_b)));
    let (won, lost) = match (a, b) {
        (Ok(x), Err(e)) | (Err(e), Ok(x)) => (x, e),
        other => panic!("exactly one racing installation should win: {other:?}"),
    };
    assert_eq!(lost.code(), Code::Aborted, "{lost:?}");
    assert_eq!(reason_of(&lost).as_deref(), Some("PRE_RUN_STALE"));
    let counts = environment(&mut bob, "qa").await.object_counts;
    let grown: i64 = counts.values().sum::<i64>() - counts_before.values().sum::<i64>();
    assert_eq!(grown, creates(&won));

    for code in ["TMPL", "GROUP", "ROLE", "TEAM", "CMPY", "SCHED"] {
        for (name, ids) in ids_by_name(&mut admin, "qa", code).await {
            assert_eq!(ids.len(), 1, "{code} {name:?} duplicated: {ids:?}");
        }
    }
    let templates = ids_by_name(&mut admin, "qa", "TMPL").await;
    assert!(templates.contains_key("New Agency Onboarding") && templates.contains_key("New Agency Offboarding"));
}

// ----------------------------------------------------------------------------------
// Records: per-entry statuses, summaries, GetInstallation, ListInstallations
// ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installation_records_show_entry_statuses_and_list_newest_first() {
    let Demo { mut alice, mut bob, dev: _dev, .. } = demo().await;
    let onboarding = onboarding_package(&mut alice).await;
    let objects = definition(&mut bob, &onboarding.id).await;
    let go_live = source_id(&objects, "TTSK", "Go-Live Review");
    let owned: BTreeSet<String> =
        objects.values().filter(|o| o.parent.as_ref().is_some_and(|p| p.id == go_live)).map(|o| o.id.clone()).collect();

    // IGNORE on a task cascades to what it owns; all of it is SKIPPED.
    let ignore = pb::TranslationEntry { action: A::Ignore as i32, ..Default::default() };
    let req = pb::CreateInstallationRequest {
        translation_map: override_of("TTSK", &go_live, ignore),
        ..install_request(&onboarding.id, "qa")
    };
    let i1 = install(&mut bob, req).await.unwrap();
    let e1 = entries(&i1.translation_map);
    assert_eq!(i1.summary, counted(&e1).into_iter().collect::<HashMap<_, _>>());
    assert_eq!(i1.summary.get("IGNORE"), Some(&(1 + owned.len() as i64)));
    let mut seen = BTreeSet::new();
    for ((_, src), e) in &e1 {
        let expected = match action(e) {
            A::Ignore => pb::EntryInstallationStatus::Skipped,
            A::Useexisting => pb::EntryInstallationStatus::Registered,
            _ => pb::EntryInstallationStatus::Installed,
        };
        assert_eq!(status_of(e), expected, "{src}");
        seen.insert(status_of(e));
        if action(e) == A::Ignore {
            assert!(*src == go_live || owned.contains(src), "only the task and what it owns are ignored");
        }
    }
    assert_eq!(seen.len(), 3, "INSTALLED, REGISTERED and SKIPPED all appear");
    let tmpl = entry(&e1, "TMPL", ONBOARDING_TMPL).target_id.clone();
    let task_names: Vec<String> =
        list_objects(&mut bob, "qa", "TTSK", &tmpl).await.into_iter().map(|t| t.name).collect();
    assert!(!task_names.iter().any(|n| n == "Go-Live Review"), "{task_names:?}");

    let i2 = install_defaults(&mut bob, &onboarding.id, "qa").await;
    assert_eq!(entry(&entries(&i2.translation_map), "TTSK", &go_live).action, A::Create as i32, "installed now");
    let offboarding =
        preview_package(&mut alice, "Agency offboarding template", vec![collection("TMPL", &[OFFBOARDING_TMPL])]).await;
    let i3 = install_defaults(&mut bob, &offboarding.id, "qa").await;

    let ids = |list: Vec<pb::Installation>| list.into_iter().map(|i| i.id).collect::<Vec<_>>();
    assert_eq!(ids(list_installations(&mut bob, "", "qa").await), vec![i3.id.clone(), i2.id.clone(), i1.id.clone()]);
    assert_eq!(ids(list_installations(&mut bob, &onboarding.id, "qa").await), vec![i2.id.clone(), i1.id.clone()]);
    assert_eq!(ids(list_installations(&mut bob, &offboarding.id, "").await), vec![i3.id.clone()]);
    assert!(list_installations(&mut bob, "", "prod").await.is_empty());
    let mut paged = Vec::new();
    let mut req =
        pb::ListInstallationsRequest { destination_environment: "qa".into(), page_size: 1, ..Default::default() };
    for _ in 0..10 {
        let page = bob.installations.list_installations(req.clone()).await.unwrap().into_inner();
        assert!(page.installations.len() <= 1);
        paged.extend(ids(page.installations));
        if page.next_page_token.is_empty() {
            break;
        }
        req.page_token = page.next_page_token;
    }
    assert_eq!(paged, vec![i3.id.clone(), i2.id.clone(), i1.id.clone()]);
    let req = pb::ListInstallationsRequest { page_size: -1, ..Default::default() };
    assert_status(bob.installations.list_installations(req).await, Code::InvalidArgument, "INVALID_PAGE_SIZE");
    let got = bob
        .installations
        .get_installation(pb::GetInstallationRequest { id: i1.id.clone(), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(got.into_inner(), i1);
}

// ----------------------------------------------------------------------------------
// Who may do what; bad input
// ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installations_are_scoped_to_the_organization_and_the_deployer_role() {
    let Demo { mut admin, mut alice, mut bob, dev } = demo().await;
    let (mut gina, mut victor) = (dev.clients("gina").await, dev.clients("victor").await);
    let package = onboarding_package(&mut alice).await;
    let qa_before = snapshot(&mut admin, "qa").await;

    // Another organization sees nothing of qa or its installations.
    assert_status(
        gina.installations.create_pre_run(pre_run_request(&package.id, "qa")).await,
        Code::NotFound,
        "ENVIRONMENT_NOT_FOUND",
    );
    assert_status(
        install(&mut gina, install_request(&package.id, "qa")).await,
        Code::NotFound,
        "ENVIRONMENT_NOT_FOUND",
    );
    // A viewer, and a publisher, may not install.
    for c in [&mut victor, &mut alice] {
        assert_status(
            c.installations.create_pre_run(pre_run_request(&package.id, "qa")).await,
            Code::PermissionDenied,
            "PERMISSION_DENIED",
        );
        assert_status(
            install(c, install_request(&package.id, "qa")).await,
            Code::PermissionDenied,
            "PERMISSION_DENIED",
        );
    }
    // Malformed ids are INVALID_ARGUMENT; a well-formed unknown pre-run is NOT_FOUND.
    let bad = pb::CreateInstallationRequest { pre_run_id: "not-a-uuid".into(), ..install_request(&package.id, "qa") };
    assert_status(install(&mut bob, bad).await, Code::InvalidArgument, "INVALID_ID");
    let unknown = pb::CreateInstallationRequest {
        pre_run_id: uuid::Uuid::now_v7().to_string(),
        ..install_request(&package.id, "qa")
    };
    assert_status(install(&mut bob, unknown).await, Code::NotFound, "PRE_RUN_NOT_FOUND");
    assert_status(install(&mut bob, install_request("nope", "qa")).await, Code::InvalidArgument, "INVALID_ID");
    let get = pb::GetPreRunRequest { id: "nope".into(), ..Default::default() };
    assert_status(bob.installations.get_pre_run(get).await, Code::InvalidArgument, "INVALID_ID");
    assert_eq!(snapshot(&mut admin, "qa").await, qa_before, "nothing written by refused calls");

    let pre = pre_run(&mut bob, &package.id, "qa").await;
    let done = install(&mut bob, following(&pre)).await.unwrap();
    // Reads: a viewer may, another organization gets NOT_FOUND, and nobody but a deployer rolls back.
    let get = || pb::GetInstallationRequest { id: done.id.clone(), ..Default::default() };
    assert_eq!(victor.installations.get_installation(get()).await.unwrap().into_inner().id, done.id);
    assert!(victor
        .installations
        .get_pre_run(pb::GetPreRunRequest { id: pre.id.clone(), ..Default::default() })
        .await
        .is_ok());
    assert_status(gina.installations.get_installation(get()).await, Code::NotFound, "INSTALLATION_NOT_FOUND");
    let gina_pre =
        gina.installations.get_pre_run(pb::GetPreRunRequest { id: pre.id.clone(), ..Default::default() }).await;
    assert_status(gina_pre, Code::NotFound, "PRE_RUN_NOT_FOUND");
    let req = pb::ListInstallationsRequest { destination_environment: "qa".into(), ..Default::default() };
    assert_status(gina.installations.list_installations(req).await, Code::NotFound, "ENVIRONMENT_NOT_FOUND");
    assert!(gina
        .installations
        .list_installations(pb::ListInstallationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .installations
        .is_empty());
    assert_status(rollback(&mut victor, &done.id, false).await, Code::PermissionDenied, "PERMISSION_DENIED");
    assert_status(rollback(&mut gina, &done.id, false).await, Code::NotFound, "INSTALLATION_NOT_FOUND");
}

// ----------------------------------------------------------------------------------
// 10. The package service stopped
// ----------------------------------------------------------------------------------

/// The two services as separate processes (development mode's configuration, written to
/// TOML files), so that one can be stopped alone. No demo data: tests put their own.
struct SplitServices {
    dir: tempfile::TempDir,
    package_addr: SocketAddr,
    installation_addr: SocketAddr,
    installation_config: promotion_core::config::Config,
    package: Option<Child>,
    installation: Option<Child>,
}

impl SplitServices {
    /// Both services; the installation service authenticates its own calls (the outbox)
    /// with `service_secret`.
    async fn start(service_secret: &str) -> SplitServices {
        let dir = tempfile::tempdir().unwrap();
        let (package_addr, installation_addr) = (free_addr(), free_addr());
        let opts = DevAddrs { package_addr, installation_addr };
        let (package, installation_config) =
            dev_configs(dir.path().to_path_buf(), opts.package_addr, opts.installation_addr);
        std::fs::write(dir.path().join("package.toml"), toml::to_string(&package).unwrap()).unwrap();
        let mut split = SplitServices {
            dir,
            package_addr,
            installation_addr,
            installation_config,
            package: None,
            installation: None,
        };
        split.start_package().await;
        split.start_installation(service_secret).await;
        split
    }

    async fn start_package(&mut self) {
        assert!(self.package.is_none());
        self.package = Some(spawn("package-service", &self.dir.path().join("package.toml")));
        wait_serving(self.package_addr).await;
    }

    async fn start_installation(&mut self, service_secret: &str) {
        assert!(self.installation.is_none());
        let mut config = self.installation_config.clone();
        config.service_credentials.as_mut().expect("dev mode sets service credentials").client_secret =
            service_secret.into();
        let path = self.dir.path().join("installation.toml");
        std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
        self.installation = Some(spawn("installation-service", &path));
        wait_serving(self.installation_addr).await;
    }

    fn kill_package(&mut self) {
        kill(self.package.take().expect("the package service runs"));
    }

    fn kill_installation(&mut self) {
        kill(self.installation.take().expect("the installation service runs"));
    }

    async fn token(&self, client: &str) -> String {
        issue_token(self.package_addr, client, &format!("{client}-secret")).await
    }

    async fn clients(&self, client: &str) -> Clients {
        Clients::connect(self.package_addr, self.installation_addr, Some(self.token(client).await)).await
    }
}

impl Drop for SplitServices {
    fn drop(&mut self) {
        self.package.take().into_iter().chain(self.installation.take()).for_each(kill);
    }
}

fn kill(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn spawn(service: &str, config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_promotion"))
        .arg(service)
        .arg("--config")
        .arg(PathBuf::from(config))
        // The outbox warns while it cannot deliver, which this test causes on purpose.
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("start {service}: {e}"))
}

async fn wait_serving(addr: SocketAddr) {
    let deadline = Instant::now() + POLL_LIMIT;
    while health_status(addr).await != Some(1) {
        assert!(Instant::now() < deadline, "{addr} did not become SERVING");
        tokio::time::sleep(POLL_EVERY).await;
    }
}

fn obj(obj_code: &str, n: u32, name: &str) -> pb::ConfigObject {
    pb::ConfigObject {
        obj_code: obj_code.into(),
        id: format!("feedface0000000000000000{n:08x}"),
        name: name.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_package_service_down_nothing_is_written_and_counts_catch_up() {
    // Until the installation service is restarted with its real secret, its outbox cannot
    // deliver installation counts: the count of the installation below is certainly still
    // pending while the package service is down.
    let mut split = SplitServices::start("not-the-installation-service-secret").await;
    let mut admin = split.clients("admin").await;
    let mut alice = split.clients("alice").await;
    let mut bob = split.clients("bob").await;

    let group = obj("GROUP", 1, "Release Engineering");
    let mut template = obj("TMPL", 2, "Release Checklist");
    template.references.push(pb::Reference {
        field: "group".into(),
        obj_code: "GROUP".into(),
        id: group.id.clone(),
        optional: false,
    });
    let parent = Some(pb::ObjectKey { obj_code: "TMPL".into(), id: template.id.clone() });
    let tasks = [obj("TTSK", 3, "Tag Release"), obj("TTSK", 4, "Publish Notes")]
        .map(|t| pb::ConfigObject { parent: parent.clone(), ..t });
    let mut objects = vec![group, template.clone()];
    objects.extend(tasks);
    let req =
        pb::PutObjectsRequest { environment: "dev".into(), objects, request_id: String::new(), ..Default::default() };
    admin.environments.put_objects(req).await.unwrap();
    let package = preview_package(&mut alice, "Release checklist", vec![collection("TMPL", &[&template.id])]).await;
    let qa_before = snapshot(&mut admin, "qa").await;

    split.kill_package();
    let refused = bob.installations.create_pre_run(pre_run_request(&package.id, "qa")).await;
    assert_status(refused, Code::Unavailable, "PACKAGE_SERVICE_UNAVAILABLE");
    let refused = install(&mut bob, install_request(&package.id, "qa")).await;
    assert_status(refused, Code::Unavailable, "PACKAGE_SERVICE_UNAVAILABLE");
    assert_eq!(snapshot(&mut admin, "qa").await, qa_before, "nothing written");
    assert!(list_installations(&mut bob, "", "qa").await.is_empty(), "no installation record");

    split.start_package().await;
    let mut bob = split.clients("bob").await;
    let done = install_defaults(&mut bob, &package.id, "qa").await;
    assert_eq!(done.summary.get("CREATE"), Some(&4));
    assert_eq!(list_objects(&mut bob, "qa", "TTSK", "").await.len(), 2);
    let mut alice = split.clients("alice").await;
    assert!(get_package(&mut alice, &package.id).await.installation_counts.is_empty(), "not delivered yet");

    // Both services go down; the installation service comes back first (now able to
    // authenticate) and serves reads while the package service is still down.
    let bob_token = format!("Bearer {}", split.token("bob").await);
    split.kill_package();
    split.kill_installation();
    split.start_installation("installation-service-secret").await;
    let channel = channel(split.installation_addr).await;
    let mut installations = pb::installation_service_client::InstallationServiceClient::with_interceptor(
        channel,
        Bearer(bob_token.parse().ok()),
    );
    let got = installations.get_installation(pb::GetInstallationRequest { id: done.id.clone(), ..Default::default() });
    assert_eq!(got.await.unwrap().into_inner().status, pb::InstallationStatus::Installed as i32);
    split.start_package().await;
    let mut alice = split.clients("alice").await;
    let deadline = Instant::now() + POLL_LIMIT;
    loop {
        let counts = get_package(&mut alice, &package.id).await.installation_counts;
        if !counts.is_empty() {
            assert_eq!(counts, HashMap::from([("qa".to_string(), 1)]), "counted once");
            break;
        }
        assert!(Instant::now() < deadline, "the installation count never arrived");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ----------------------------------------------------------------------------------
// 11. Promotion requests install the plan that was reviewed (issue 10)
// ----------------------------------------------------------------------------------

/// alice asks for `package` to go to qa; the request carries a pre-run the service made.
async fn request_into_qa(alice: &mut Clients, package: &pb::Package) -> pb::PromotionRequest {
    let req = pb::RequestPromotionRequest {
        package_id: package.id.clone(),
        target_environment: "qa".into(),
        ..Default::default()
    };
    let r = alice.promotions.request_promotion(req).await.unwrap().into_inner();
    assert_eq!(r.pre_run_id.len(), 36, "the request carries a pre-run: {r:?}");
    r
}

async fn get_pre_run(c: &mut Clients, id: &str) -> pb::PreRun {
    c.installations
        .get_pre_run(pb::GetPreRunRequest { id: id.into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
}

async fn get_installation(c: &mut Clients, id: &str) -> pb::Installation {
    let req = pb::GetInstallationRequest { id: id.into(), ..Default::default() };
    c.installations.get_installation(req).await.unwrap().into_inner()
}

async fn get_request(c: &mut Clients, id: &str) -> pb::PromotionRequest {
    c.promotions.get_promotion_request(pb::GetPromotionRequestRequest { id: id.into() }).await.unwrap().into_inner()
}

async fn accept(c: &mut Clients, id: &str, replan: bool) -> Result<pb::PromotionRequest, Status> {
    let req = pb::AcceptPromotionRequestRequest { id: id.into(), replan, ..Default::default() };
    c.promotions.accept_promotion_request(req).await.map(|r| r.into_inner())
}

async fn attach(c: &mut Clients, id: &str, pre_run_id: &str) -> Result<pb::PromotionRequest, Status> {
    let req = pb::AttachPreRunRequest { id: id.into(), pre_run_id: pre_run_id.into(), request_id: String::new() };
    c.promotions.attach_pre_run(req).await.map(|r| r.into_inner())
}

async fn offboarding_package(alice: &mut Clients) -> pb::Package {
    preview_package(alice, "Agency offboarding template", vec![collection("TMPL", &[OFFBOARDING_TMPL])]).await
}

/// (obj_code, source id) -> target id of every planned CREATE.
fn planned_creates(all: &Entries) -> BTreeMap<(String, String), String> {
    all.iter().filter(|(_, e)| action(e) == A::Create).map(|(k, e)| (k.clone(), e.target_id.clone())).collect()
}

/// Makes the request's plan stale: qa's "Agency Operations" group, which the plan matched
/// by name, is edited after the plan was made.
async fn edit_matched_group(admin: &mut Clients, bob: &mut Clients, package: &pb::Package, pre: &pb::PreRun) -> String {
    let ops = source_id(&definition(bob, &package.id).await, "GROUP", "Agency Operations");
    let target = entry(&entries(&pre.translation_map), "GROUP", &ops).target_id.clone();
    edit_field(admin, "qa", "GROUP", &target, "description", json!("Edited in qa after the plan")).await;
    ops
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepting_installs_the_plan_the_request_carries_with_the_very_ids_it_showed() {
    let Demo { mut admin, mut alice, mut bob, dev: _dev } = demo().await;
    let package = onboarding_package(&mut alice).await;
    let request = request_into_qa(&mut alice, &package).await;
    let shown = get_pre_run(&mut bob, &request.pre_run_id).await;
    assert_eq!((shown.package_version, shown.destination_environment.as_str()), (package.version, "qa"));
    let planned = entries(&shown.translation_map);
    let creates = planned_creates(&planned);
    assert!(creates.len() >= 7, "the template, its tasks and more are created: {creates:?}");
    let before = snapshot(&mut admin, "qa").await;
    assert!(creates.values().all(|id| !before.keys().any(|(_, existing)| existing == id)));

    let accepted = accept(&mut bob, &request.id, false).await.unwrap();
    assert_eq!(accepted.status, pb::PromotionStatus::Accepted as i32);
    assert_eq!(accepted.installation_status, pb::InstallationStatus::Installed as i32);
    let done = get_installation(&mut bob, &accepted.installation_id).await;
    assert_eq!(
        (done.pre_run_id.as_str(), done.promotion_request_id.as_str()),
        (shown.id.as_str(), request.id.as_str())
    );
    let installed = entries(&done.translation_map);
    assert_eq!(planned_creates(&installed), creates, "the very target ids the pre-run showed");
    for ((code, _), id) in &creates {
        assert!(get_object(&mut bob, "qa", code, id).await.is_ok(), "{code}:{id} exists in qa");
    }
    for (key, e) in &installed {
        assert_eq!(e.target_id, planned[key].target_id, "{key:?}: installed exactly the plan");
    }

    // Rolled back: every entry that installed or registered says so, and so does the request.
    rollback(&mut bob, &done.id, false).await.unwrap();
    assert_eq!(snapshot(&mut admin, "qa").await, before);
    let rolled = get_installation(&mut bob, &done.id).await;
    for (key, e) in entries(&rolled.translation_map) {
        assert_eq!(status_of(&e), pb::EntryInstallationStatus::RolledBack, "{key:?}");
    }
    let request = get_request(&mut alice, &request.id).await;
    assert_eq!(request.status, pb::PromotionStatus::Accepted as i32, "the decision stands");
    assert_eq!(request.installation_status, pb::InstallationStatus::RolledBack as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_plan_is_refused_writing_nothing_until_an_approver_attaches_a_fresh_one() {
    let Demo { mut admin, mut alice, mut bob, dev: _dev } = demo().await;
    let package = onboarding_package(&mut alice).await;
    let request = request_into_qa(&mut alice, &package).await;
    let shown = get_pre_run(&mut bob, &request.pre_run_id).await;
    let ops = edit_matched_group(&mut admin, &mut bob, &package, &shown).await;
    let before = snapshot(&mut admin, "qa").await;
    let revision = environment(&mut bob, "qa").await.revision;

    let refused = assert_status(accept(&mut bob, &request.id, false).await, Code::Aborted, "PRE_RUN_STALE");
    assert!(metadata(&refused, "entries").contains(&format!("GROUP:{ops}")), "{refused:?}");
    assert_eq!(metadata(&refused, "promotion_request_id"), request.id);
    assert_eq!(metadata(&refused, "pre_run_id"), shown.id);
    let message = refused.message();
    assert!(message.contains("--replan") && message.contains("AttachPreRun"), "says how to re-plan: {message}");
    assert_eq!(snapshot(&mut admin, "qa").await, before, "nothing written");
    assert_eq!(environment(&mut bob, "qa").await.revision, revision);
    assert!(list_installations(&mut bob, &package.id, "qa").await.is_empty(), "no installation record");
    let pending = get_request(&mut bob, &request.id).await;
    assert_eq!(pending.status, pb::PromotionStatus::ToBeValidated as i32);
    assert!(pending.last_error.contains("--replan"), "{}", pending.last_error);

    // Only an approver attaches, and only a plan of this package version into the target.
    let fresh = pre_run(&mut bob, &package.id, "qa").await;
    assert_status(attach(&mut alice, &request.id, &fresh.id).await, Code::PermissionDenied, "PERMISSION_DENIED");
    let other = offboarding_package(&mut alice).await;
    let other_plan = pre_run(&mut bob, &other.id, "qa").await;
    assert_status(attach(&mut bob, &request.id, &other_plan.id).await, Code::InvalidArgument, "PRE_RUN_MISMATCH");
    let attached = attach(&mut bob, &request.id, &fresh.id).await.unwrap();
    assert_eq!(attached.pre_run_id, fresh.id);
    let accepted = accept(&mut bob, &request.id, false).await.unwrap();
    let done = get_installation(&mut bob, &accepted.installation_id).await;
    assert_eq!(done.pre_run_id, fresh.id);
    assert_eq!(planned_creates(&entries(&done.translation_map)), planned_creates(&entries(&fresh.translation_map)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replanning_on_accept_is_an_explicit_choice_and_a_requester_may_bring_a_plan() {
    let Demo { mut admin, mut alice, mut bob, dev: _dev } = demo().await;
    let package = onboarding_package(&mut alice).await;

    // The requester may name the plan; it must be one of this package into the target.
    let other = offboarding_package(&mut alice).await;
    let other_plan = pre_run(&mut bob, &other.id, "qa").await;
    let named = |pre_run_id: &str| pb::RequestPromotionRequest {
        package_id: package.id.clone(),
        target_environment: "qa".into(),
        pre_run_id: pre_run_id.into(),
        ..Default::default()
    };
    let refused = alice.promotions.request_promotion(named(&other_plan.id)).await;
    assert_status(refused, Code::InvalidArgument, "PRE_RUN_MISMATCH");
    let reviewed = pre_run(&mut bob, &package.id, "qa").await;
    let request = alice.promotions.request_promotion(named(&reviewed.id)).await.unwrap().into_inner();
    assert_eq!(request.pre_run_id, reviewed.id);

    edit_matched_group(&mut admin, &mut bob, &package, &reviewed).await;
    assert_status(accept(&mut bob, &request.id, false).await, Code::Aborted, "PRE_RUN_STALE");
    let accepted = accept(&mut bob, &request.id, true).await.unwrap();
    assert_eq!(accepted.status, pb::PromotionStatus::Accepted as i32);
    let done = get_installation(&mut bob, &accepted.installation_id).await;
    assert_eq!(done.status, pb::InstallationStatus::Installed as i32);
    assert!(done.pre_run_id.is_empty(), "a fresh plan, not the stale pre-run");
    let template = entry(&entries(&done.translation_map), "TMPL", ONBOARDING_TMPL).target_id.clone();
    assert!(get_object(&mut bob, "qa", "TMPL", &template).await.is_ok());
}

// ----------------------------------------------------------------------------------
// 12. Logs: a line per step, one trace across both services (issue 10)
// ----------------------------------------------------------------------------------

/// `message` sent as part of the W3C trace `trace_id`.
fn traced<T>(message: T, trace_id: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    let header = format!("00-{trace_id}-00f067aa0ba902b7-01");
    req.metadata_mut().insert("traceparent", header.parse().unwrap());
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_step_logs_a_line_in_the_callers_trace_and_the_trace_reaches_the_other_service() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("dev.log");
    // Debug for the serving layer: its line at the end of every call shows each call's span.
    let dev = DevServices::start_logging(&log, "info,promotion_serving=debug").await;
    let (mut alice, mut bob) = (dev.clients("alice").await, dev.clients("bob").await);
    let [extract, request, decide, undo] = ["1", "2", "3", "4"].map(|n| format!("4bf92f3577b34da6a3ce929d0e0e473{n}"));

    let create = pb::CreatePackageRequest {
        name: "Traced onboarding".into(),
        source_environment: "dev".into(),
        object_collections: vec![collection("TMPL", &[ONBOARDING_TMPL])],
        ..Default::default()
    };
    let package = alice.packages.create_package(traced(create, &extract)).await.unwrap().into_inner();
    wait_extracted(&mut alice, &package.id, 1).await;
    set_status(&mut alice, &package.id, P::Preview).await;
    let ask = pb::RequestPromotionRequest {
        package_id: package.id.clone(),
        target_environment: "qa".into(),
        ..Default::default()
    };
    let asked = alice.promotions.request_promotion(traced(ask, &request)).await.unwrap().into_inner();
    let yes = pb::AcceptPromotionRequestRequest { id: asked.id.clone(), ..Default::default() };
    let accepted = bob.promotions.accept_promotion_request(traced(yes, &decide)).await.unwrap().into_inner();
    let back = pb::RollbackInstallationRequest { id: accepted.installation_id.clone(), ..Default::default() };
    bob.installations.rollback_installation(traced(back, &undo)).await.unwrap();

    let text = dev.stop_and_read(&log);
    let logged = |trace: &str, what: &str| text.lines().any(|l| l.contains(trace) && l.contains(what));
    for (trace, what) in [
        (&extract, "extraction finished"),
        (&extract, "EnvironmentService/ExportObjects"),
        (&request, "promotion requested"),
        (&request, "PackageService/GetPackageDefinition"),
        (&decide, "installation finished"),
        (&decide, "promotion accepted"),
        (&decide, "PackageService/GetPackage"),
        (&undo, "installation rolled back"),
    ] {
        assert!(logged(trace, what), "no {what:?} line in trace {trace}:\n{text}");
    }
    let untraced = text.lines().filter(|l| l.contains("promotion requested") && !l.contains(&request)).count();
    assert_eq!(untraced, 0, "{text}");
}
