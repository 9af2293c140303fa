//! Hostile shapes at every entry point that brings objects into a store (PutObjects,
//! ReplacePackage with a definition given whole, CreateInstallation with overrides),
//! generated: parent cycles, deep nesting, huge fields, control characters and escapes,
//! non-finite numbers. Each is refused with a documented reason, or stored and afterwards
//! readable, exportable, installable, deletable and roll-backable (in the source and, once
//! installed, in the destination); every call answers within its deadline and the services
//! keep serving.
mod common;

use common::*;
use promotion_api::v1 as pb;
use proptest::prelude::*;
use prost_types::{value::Kind, ListValue, Struct, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tonic::{Code, Request, Status};

/// Every reason a hostile input may be refused with; each is in the README's error model.
const DOCUMENTED: &[&str] = &[
    "INVALID_NAME",
    "INVALID_ID",
    "DUPLICATE_OBJECT",
    "PARENT_REQUIRED",
    "INVALID_PARENT",
    "INVALID_REFERENCE",
    "DUPLICATE_REFERENCE",
    "FIELD_TOO_DEEP",
    "INVALID_FIELD_VALUE",
    "INVALID_FIELD_NAME",
    "LIMIT_EXCEEDED",
    "PARENT_CYCLE",
    "PARENT_TOO_DEEP",
    "PARENT_NOT_FOUND",
    "REFERENCE_NOT_FOUND",
    "NAME_CONFLICT",
    "OBJECT_TOO_LARGE",
    "UNRESOLVED_REFERENCE",
    "INVALID_TRANSLATION_MAP",
    "MALFORMED_MESSAGE",
    "INVALID_ACTION",
];

/// Cases of each entry point that were stored and then used, so that no property passes by
/// refusing everything.
static PUT_ACCEPTED: AtomicU64 = AtomicU64::new(0);
static REPLACE_ACCEPTED: AtomicU64 = AtomicU64::new(0);
static INSTALL_ACCEPTED: AtomicU64 = AtomicU64::new(0);
/// Installed objects read, exported and deleted in the destination.
static USED_IN_DESTINATION: AtomicU64 = AtomicU64::new(0);

/// Every call must answer well before this.
const DEADLINE: Duration = Duration::from_secs(30);

async fn timely<T>(what: &str, call: impl std::future::Future<Output = Result<T, Status>>) -> Result<T, Status> {
    let outcome = tokio::time::timeout(DEADLINE, call).await.unwrap_or_else(|_| panic!("{what} did not answer"));
    if let Err(s) = &outcome {
        assert_ne!(s.code(), Code::DeadlineExceeded, "{what}: {s:?}");
        assert_ne!(s.code(), Code::Internal, "{what}: bad input is never INTERNAL: {s:?}");
        assert_ne!(s.code(), Code::Unknown, "{what}: {s:?}");
    }
    outcome
}

fn with_deadline<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.set_timeout(DEADLINE);
    r
}

/// A refusal must carry a documented reason.
fn documented(what: &str, s: &Status) {
    let reason = reason_of(s).unwrap_or_default();
    assert!(DOCUMENTED.contains(&reason.as_str()), "{what}: undocumented refusal {reason:?}: {s:?}");
    assert!(s.message().len() <= 4096 && s.details().len() <= 8192, "{what}: oversized status");
}

#[derive(Debug, Clone)]
enum NameKind {
    Plain,
    Blank,
    Nul,
    Control,
    Escape,
    Bidi,
    Longest,
    TooLong,
}

#[derive(Debug, Clone)]
enum FieldKind {
    Plain,
    Deep(usize),
    Huge,
    NonFinite(f64),
    Nul,
    ControlKey,
}

#[derive(Debug, Clone)]
struct Shape {
    name: NameKind,
    fields: FieldKind,
    /// Index of the object in the batch that owns this one (may be itself: a cycle).
    parent: Option<usize>,
    references: Vec<usize>,
}

fn name_kind() -> impl Strategy<Value = NameKind> {
    prop_oneof![
        16 => Just(NameKind::Plain),
        1 => Just(NameKind::Blank),
        1 => Just(NameKind::Nul),
        1 => Just(NameKind::Control),
        1 => Just(NameKind::Escape),
        1 => Just(NameKind::Bidi),
        3 => Just(NameKind::Longest),
        1 => Just(NameKind::TooLong),
    ]
}

fn field_kind() -> impl Strategy<Value = FieldKind> {
    prop_oneof![
        8 => Just(FieldKind::Plain),
        6 => (1usize..30).prop_map(FieldKind::Deep),
        1 => (30usize..60).prop_map(FieldKind::Deep),
        1 => Just(FieldKind::Huge),
        1 => prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY)].prop_map(FieldKind::NonFinite),
        1 => Just(FieldKind::Nul),
        1 => Just(FieldKind::ControlKey),
    ]
}

fn batch() -> impl Strategy<Value = Vec<Shape>> {
    let hostile = (1usize..5).prop_flat_map(|n| {
        let shape = (name_kind(), field_kind(), prop::option::weighted(0.5, 0..n), prop::collection::vec(0..n, 0..3))
            .prop_map(|(name, fields, parent, references)| Shape { name, fields, parent, references });
        prop::collection::vec(shape, n)
    });
    // Half the batches keep only what is allowed (deep but not too deep, the longest
    // names, nested owners, references in every direction), so that the "stored, then
    // usable" half of the property is exercised as often as the refusals.
    (hostile, any::<bool>()).prop_map(|(shapes, clean)| if clean { allowed(shapes) } else { shapes })
}

fn allowed(mut shapes: Vec<Shape>) -> Vec<Shape> {
    for (i, s) in shapes.iter_mut().enumerate() {
        if !matches!(s.name, NameKind::Plain | NameKind::Longest) {
            s.name = NameKind::Plain;
        }
        s.fields = match s.fields {
            FieldKind::Deep(d) => FieldKind::Deep(d.min(20)),
            _ => FieldKind::Plain,
        };
        s.parent = s.parent.filter(|&p| p < i);
        s.references.sort();
        s.references.dedup();
    }
    shapes
}

static UNIQUE: AtomicU64 = AtomicU64::new(1);

fn name(kind: &NameKind, tag: &str) -> String {
    match kind {
        NameKind::Plain => format!("Hostile {tag}"),
        NameKind::Blank => "   ".into(),
        NameKind::Nul => format!("nul\0{tag}"),
        NameKind::Control => format!("line\nbreak {tag}"),
        NameKind::Escape => format!("\u{1b}[31mred\u{1b}[0m {tag}"),
        NameKind::Bidi => format!("txt.\u{202e}exe {tag}"),
        NameKind::Longest => format!("{tag}{}", "é".repeat(255 - tag.chars().count())),
        NameKind::TooLong => "n".repeat(256),
    }
}

fn number(n: f64) -> Value {
    Value { kind: Some(Kind::NumberValue(n)) }
}

fn text(s: String) -> Value {
    Value { kind: Some(Kind::StringValue(s)) }
}

fn one(key: &str, v: Value) -> Struct {
    Struct { fields: [(key.to_string(), v)].into_iter().collect() }
}

fn fields(kind: &FieldKind) -> Struct {
    match kind {
        FieldKind::Plain => one("description", text("an ordinary object".into())),
        FieldKind::Deep(depth) => {
            let mut v = number(1.0);
            for level in 1..*depth {
                v = if level % 2 == 0 {
                    Value { kind: Some(Kind::ListValue(ListValue { values: vec![v] })) }
                } else {
                    Value { kind: Some(Kind::StructValue(one("n", v))) }
                };
            }
            one("deep", v)
        }
        FieldKind::Huge => one("notes", text("x".repeat(300 * 1024))),
        FieldKind::NonFinite(n) => one("ratio", number(*n)),
        FieldKind::Nul => one("notes", text("a\0b".into())),
        FieldKind::ControlKey => one("bad\u{7}key", number(1.0)),
    }
}

/// The batch as GROUP objects (groups nest, so every parent shape is expressible).
fn objects(shapes: &[Shape]) -> Vec<pb::ConfigObject> {
    let case = UNIQUE.fetch_add(1, Ordering::Relaxed);
    let ids: Vec<String> = (0..shapes.len()).map(|i| format!("{:016x}{:016x}", 0xbad0_0000 + case, i + 1)).collect();
    shapes
        .iter()
        .enumerate()
        .map(|(i, s)| pb::ConfigObject {
            obj_code: "GROUP".into(),
            id: ids[i].clone(),
            name: name(&s.name, &format!("{case}-{i}")),
            fields: Some(fields(&s.fields)),
            parent: s.parent.map(|p| pb::ObjectKey { obj_code: "GROUP".into(), id: ids[p].clone() }),
            references: s
                .references
                .iter()
                .map(|&r| pb::Reference {
                    field: "peer".into(),
                    obj_code: "GROUP".into(),
                    id: ids[r].clone(),
                    optional: true,
                })
                .collect(),
            revision: 0,
            update_time: None,
        })
        .collect()
}

/// Roots of a batch: its objects without a parent inside it.
fn roots(objects: &[pb::ConfigObject]) -> Vec<pb::ObjectCollection> {
    let entities: Vec<pb::EntityRef> = objects
        .iter()
        .filter(|o| o.parent.is_none())
        .map(|o| pb::EntityRef { id: o.id.clone(), name: String::new() })
        .collect();
    if entities.is_empty() {
        return vec![];
    }
    vec![pb::ObjectCollection { obj_code: "GROUP".into(), entities }]
}

async fn still_serving(c: &mut Clients) {
    let env = pb::GetEnvironmentRequest { id: "dev".into() };
    timely("GetEnvironment", c.environments.get_environment(with_deadline(env))).await.expect("still serving");
    let who = timely("WhoAmI", c.auth.who_am_i(with_deadline(pb::WhoAmIRequest {}))).await;
    who.expect("the package service is still serving");
}

async fn preview(c: &mut Clients, p: &pb::Package) {
    let package = pb::Package {
        id: p.id.clone(),
        etag: p.etag.clone(),
        status: pb::PackageStatus::Preview as i32,
        ..Default::default()
    };
    let mask = Some(prost_types::FieldMask { paths: vec!["status".into()] });
    let req = pb::UpdatePackageRequest { package: Some(package), update_mask: mask, ..Default::default() };
    timely("UpdatePackage", c.packages.update_package(with_deadline(req))).await.expect("PREVIEW");
}

/// Reads the whole definition of a package: every message decodes.
async fn read_definition(c: &mut Clients, id: &str) -> usize {
    let req = pb::GetPackageDefinitionRequest { id: id.into(), version: 0 };
    let s = timely("GetPackageDefinition", c.packages.get_package_definition(with_deadline(req))).await;
    let mut s = s.expect("definition readable").into_inner();
    let mut objects = 0;
    while let Some(m) = timely("definition message", s.message()).await.expect("every message decodes") {
        if let Some(pb::get_package_definition_response::Part::Entities(e)) = m.part {
            objects += e.objects.len();
        }
    }
    objects
}

/// What an installation wrote into qa is readable, exportable and deletable there (the
/// DeleteObject cascade that once spun on a cycle); the rollback that follows must still
/// answer.
async fn use_in_destination(c: &mut Clients, installed: &pb::Installation) {
    let written: Vec<String> = installed
        .translation_map
        .values()
        .flat_map(|t| t.entries.values())
        .filter(|e| e.installation_status == pb::EntryInstallationStatus::Installed as i32)
        .map(|e| e.target_id.clone())
        .collect();
    if written.is_empty() {
        return;
    }
    USED_IN_DESTINATION.fetch_add(written.len() as u64, Ordering::Relaxed);
    for id in &written {
        let get = pb::GetObjectRequest { environment: "qa".into(), obj_code: "GROUP".into(), id: id.clone() };
        timely("GetObject in qa", c.environments.get_object(with_deadline(get))).await.expect("installed objects read");
    }
    let entities = written.iter().map(|id| pb::EntityRef { id: id.clone(), name: String::new() }).collect();
    let roots = vec![pb::ObjectCollection { obj_code: "GROUP".into(), entities }];
    let export = pb::ExportObjectsRequest { environment: "qa".into(), roots };
    let stream = timely("ExportObjects from qa", c.environments.export_objects(with_deadline(export))).await;
    let mut stream = stream.expect("installed objects export").into_inner();
    while timely("qa export message", stream.message()).await.expect("exports decode").is_some() {}
    for id in written {
        let delete = pb::DeleteObjectRequest {
            environment: "qa".into(),
            obj_code: "GROUP".into(),
            id,
            cascade: true,
            ..Default::default()
        };
        match timely("DeleteObject in qa", c.environments.delete_object(with_deadline(delete))).await {
            Ok(_) => {}
            Err(s) => assert_eq!(s.code(), Code::NotFound, "deleted with an earlier one: {s:?}"),
        }
    }
}

/// Installs the package into qa, reads what it wrote, rolls it back.
async fn install_and_roll_back(
    c: &mut Clients,
    package: &str,
    map: std::collections::HashMap<String, pb::TypeTranslation>,
) {
    let req = pb::CreateInstallationRequest {
        package_id: package.into(),
        destination_environment: "qa".into(),
        translation_map: map,
        ..Default::default()
    };
    let installed = match timely("CreateInstallation", c.installations.create_installation(with_deadline(req))).await {
        Ok(i) => i.into_inner(),
        Err(s) => return documented("CreateInstallation", &s),
    };
    let list = pb::ListObjectsRequest {
        environment: "qa".into(),
        obj_code: "GROUP".into(),
        page_size: 1000,
        ..Default::default()
    };
    timely("ListObjects", c.environments.list_objects(with_deadline(list))).await.expect("qa readable after install");
    use_in_destination(c, &installed).await;
    let rollback = pb::RollbackInstallationRequest { id: installed.id.clone(), force: true, ..Default::default() };
    let rolled = timely("RollbackInstallation", c.installations.rollback_installation(with_deadline(rollback))).await;
    rolled.expect("an installation rolls back");
}

/// PutObjects, then everything one may do with what it stored.
async fn put_case(c: &mut Clients, shapes: Vec<Shape>) {
    let objects = objects(&shapes);
    let req = pb::PutObjectsRequest { environment: "dev".into(), objects: objects.clone(), ..Default::default() };
    let written = match timely("PutObjects", c.environments.put_objects(with_deadline(req))).await {
        Ok(w) => w.into_inner(),
        Err(s) => {
            documented("PutObjects", &s);
            return still_serving(c).await;
        }
    };
    PUT_ACCEPTED.fetch_add(1, Ordering::Relaxed);
    for o in &written.objects {
        let get = pb::GetObjectRequest { environment: "dev".into(), obj_code: o.obj_code.clone(), id: o.id.clone() };
        timely("GetObject", c.environments.get_object(with_deadline(get))).await.expect("stored objects read back");
    }
    let roots = roots(&written.objects);
    let export = pb::ExportObjectsRequest { environment: "dev".into(), roots: roots.clone() };
    let mut stream =
        timely("ExportObjects", c.environments.export_objects(with_deadline(export))).await.unwrap().into_inner();
    while timely("export message", stream.message()).await.expect("exports decode").is_some() {}
    let create = pb::CreatePackageRequest {
        name: format!("hostile {}", UNIQUE.fetch_add(1, Ordering::Relaxed)),
        source_environment: "dev".into(),
        object_collections: roots,
        ..Default::default()
    };
    let package = timely("CreatePackage", c.packages.create_package(with_deadline(create))).await.unwrap().into_inner();
    let package = extracted(c, &package.id).await;
    assert_eq!(package.status, pb::PackageStatus::Building as i32, "extraction failed: {}", package.failure_reason);
    read_definition(c, &package.id).await;
    preview(c, &package).await;
    install_and_roll_back(c, &package.id, Default::default()).await;
    for o in written.objects.iter().filter(|o| o.parent.is_none()) {
        let delete = pb::DeleteObjectRequest {
            environment: "dev".into(),
            obj_code: o.obj_code.clone(),
            id: o.id.clone(),
            cascade: true,
            ..Default::default()
        };
        match timely("DeleteObject", c.environments.delete_object(with_deadline(delete))).await {
            Ok(_) => {}
            Err(s) => assert_eq!(s.code(), Code::NotFound, "deleted with an earlier root: {s:?}"),
        }
    }
    still_serving(c).await;
}

/// ReplacePackage with the batch as a definition given whole, then install and roll back.
async fn replace_case(c: &mut Clients, shapes: Vec<Shape>) {
    let create = pb::CreatePackageRequest {
        name: format!("given {}", UNIQUE.fetch_add(1, Ordering::Relaxed)),
        source_environment: "dev".into(),
        ..Default::default()
    };
    let package = timely("CreatePackage", c.packages.create_package(with_deadline(create))).await.unwrap().into_inner();
    let objects = objects(&shapes);
    let replace = pb::ReplacePackageRequest {
        id: package.id.clone(),
        name: package.name.clone(),
        definition: Some(pb::replace_package_request::Definition::Entities(pb::PackageEntities {
            objects,
            external_references: vec![],
        })),
        ..Default::default()
    };
    match timely("ReplacePackage", c.packages.replace_package(with_deadline(replace))).await {
        Ok(replaced) => {
            REPLACE_ACCEPTED.fetch_add(1, Ordering::Relaxed);
            let replaced = replaced.into_inner();
            read_definition(c, &replaced.id).await;
            preview(c, &replaced).await;
            install_and_roll_back(c, &replaced.id, Default::default()).await;
        }
        Err(s) => documented("ReplacePackage", &s),
    }
    let current = timely("GetPackage", c.packages.get_package(pb::GetPackageRequest { id: package.id.clone() })).await;
    let delete = pb::DeletePackageRequest {
        id: package.id.clone(),
        etag: current.unwrap().into_inner().etag,
        ..Default::default()
    };
    timely("DeletePackage", c.packages.delete_package(with_deadline(delete))).await.expect("packages delete");
    still_serving(c).await;
}

#[derive(Debug, Clone)]
struct Override {
    entry: usize,
    action: i32,
    alt_name: NameKind,
    target: u8,
}

fn overrides() -> impl Strategy<Value = Vec<Override>> {
    let one = (0usize..6, 0i32..7, name_kind(), 0u8..4).prop_map(|(entry, action, alt_name, target)| Override {
        entry,
        action,
        alt_name,
        target,
    });
    // Half the cases keep to overrides that can apply (known entries, actions that need no
    // target, printable alternative names), so that installs happen as often as refusals.
    (prop::collection::vec(one, 1..5), any::<bool>()).prop_map(|(mut all, clean)| {
        if clean {
            for o in &mut all {
                o.entry %= 3;
                o.action = [0, 1, 4, 5][o.action as usize % 4];
                o.target = 0;
                if !matches!(o.alt_name, NameKind::Plain | NameKind::Longest) {
                    o.alt_name = NameKind::Plain;
                }
            }
        }
        all
    })
}

/// A package of three well-formed nested groups installed with hostile overrides.
async fn override_case(c: &mut Clients, package: &pb::Package, ids: &[String], overrides: Vec<Override>) {
    let mut map: std::collections::HashMap<String, pb::TypeTranslation> = Default::default();
    let case = UNIQUE.fetch_add(1, Ordering::Relaxed);
    for o in overrides {
        let source_id = ids.get(o.entry).cloned().unwrap_or_else(|| format!("{:032x}", 0xfeed + o.entry));
        let target_id = match o.target {
            0 => String::new(),
            1 => ids[0].clone(),
            2 => "not-an-id".into(),
            _ => format!("{:032x}", 0xdead_beef_u64 + case),
        };
        let entry = pb::TranslationEntry {
            action: o.action,
            alt_name: name(&o.alt_name, &format!("alt {case}-{}", o.entry)),
            target_id,
            ..Default::default()
        };
        map.entry("GROUP".into()).or_default().entries.insert(source_id, entry);
    }
    let req = pb::CreateInstallationRequest {
        package_id: package.id.clone(),
        destination_environment: "qa".into(),
        translation_map: map,
        ..Default::default()
    };
    match timely("CreateInstallation", c.installations.create_installation(with_deadline(req))).await {
        Ok(installed) => {
            INSTALL_ACCEPTED.fetch_add(1, Ordering::Relaxed);
            let installed = installed.into_inner();
            let get = pb::GetInstallationRequest { id: installed.id.clone(), ..Default::default() };
            timely("GetInstallation", c.installations.get_installation(with_deadline(get))).await.expect("readable");
            let list = pb::ListObjectsRequest {
                environment: "qa".into(),
                obj_code: "GROUP".into(),
                page_size: 1000,
                ..Default::default()
            };
            let listed = timely("ListObjects", c.environments.list_objects(with_deadline(list))).await.unwrap();
            for o in listed.into_inner().objects {
                assert!(
                    !o.name.chars().any(|ch| ch.is_control()),
                    "an installation wrote a name PutObjects refuses: {:?}",
                    o.name
                );
                assert!(o.name.chars().count() <= 255, "an installation wrote an over-long name");
            }
            use_in_destination(c, &installed).await;
            let rollback = pb::RollbackInstallationRequest { id: installed.id, force: true, ..Default::default() };
            timely("RollbackInstallation", c.installations.rollback_installation(with_deadline(rollback)))
                .await
                .expect("rolls back");
        }
        Err(s) => documented("CreateInstallation", &s),
    }
    still_serving(c).await;
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

/// A runtime, development mode and the admin's clients, for a property to drive.
fn start() -> (tokio::runtime::Runtime, DevServices, Clients) {
    let rt = runtime();
    let (services, c) = rt.block_on(async {
        let s = DevServices::start().await;
        let c = s.clients("admin").await;
        (s, c)
    });
    (rt, services, c)
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

#[test]
fn put_objects_refuses_or_keeps_every_hostile_shape_usable() {
    let (rt, services, c) = start();
    proptest!(config(24), |(shapes in batch())| {
        rt.block_on(put_case(&mut c.clone(), shapes));
    });
    assert!(PUT_ACCEPTED.load(Ordering::Relaxed) > 0, "some generated cases must be accepted");
    assert!(USED_IN_DESTINATION.load(Ordering::Relaxed) > 0, "installed objects must be used in the destination");
    drop(services);
}

#[test]
fn replace_package_refuses_or_keeps_every_hostile_definition_usable() {
    let (rt, services, c) = start();
    proptest!(config(24), |(shapes in batch())| {
        rt.block_on(replace_case(&mut c.clone(), shapes));
    });
    assert!(REPLACE_ACCEPTED.load(Ordering::Relaxed) > 0, "some generated cases must be accepted");
    assert!(USED_IN_DESTINATION.load(Ordering::Relaxed) > 0, "installed objects must be used in the destination");
    drop(services);
}

#[test]
fn create_installation_refuses_or_applies_every_hostile_override() {
    let rt = runtime();
    let (services, c, package, ids) = rt.block_on(async {
        let s = DevServices::start().await;
        let mut c = s.clients("admin").await;
        let shapes = vec![
            Shape { name: NameKind::Plain, fields: FieldKind::Deep(20), parent: None, references: vec![] },
            Shape { name: NameKind::Plain, fields: FieldKind::Plain, parent: Some(0), references: vec![0] },
            Shape { name: NameKind::Longest, fields: FieldKind::Plain, parent: Some(1), references: vec![] },
        ];
        let objects = objects(&shapes);
        let ids: Vec<String> = objects.iter().map(|o| o.id.clone()).collect();
        let req = pb::PutObjectsRequest { environment: "dev".into(), objects: objects.clone(), ..Default::default() };
        c.environments.put_objects(req).await.expect("a well-formed batch");
        let create = pb::CreatePackageRequest {
            name: "override target".into(),
            source_environment: "dev".into(),
            object_collections: roots(&objects),
            ..Default::default()
        };
        let package = c.packages.create_package(create).await.unwrap().into_inner();
        let package = extracted(&mut c, &package.id).await;
        preview(&mut c, &package).await;
        (s, c, package, ids)
    });
    proptest!(config(24), |(o in overrides())| {
        rt.block_on(override_case(&mut c.clone(), &package, &ids, o));
    });
    assert!(INSTALL_ACCEPTED.load(Ordering::Relaxed) > 0, "some generated cases must be accepted");
    assert!(USED_IN_DESTINATION.load(Ordering::Relaxed) > 0, "installed objects must be used in the destination");
    drop(services);
}

#[test]
fn every_reason_a_hostile_input_gets_is_documented() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let model = readme.split("## Error model").nth(1).expect("an error model section").split("\n## ").next().unwrap();
    for reason in DOCUMENTED {
        assert!(model.contains(&format!("`{reason}`")), "{reason} is not in the README's error model");
    }
}

fn plain_group(id: &str, name: &str, parent: Option<&str>) -> pb::ConfigObject {
    pb::ConfigObject {
        obj_code: "GROUP".into(),
        id: id.into(),
        name: name.into(),
        parent: parent.map(|p| pb::ObjectKey { obj_code: "GROUP".into(), id: p.into() }),
        ..Default::default()
    }
}

/// Installs dev's `X` over qa's `X` (which qa keeps under `Y`), then edits qa with `edit`
/// and rolls back with force: the before-image of `X` names `Y` as its owner again.
async fn forced_rollback_after(c: &mut Clients, case: u64, edit: fn(&str, &str) -> Vec<pb::ConfigObject>) -> Status {
    let (x, y) = (format!("{:032x}", 0x7e57_0000 + case * 2), format!("{:032x}", 0x7e57_0001 + case * 2));
    let put = |env: &str, objects| pb::PutObjectsRequest { environment: env.into(), objects, ..Default::default() };
    let source = vec![plain_group(&x, &format!("Restored {case}"), None)];
    c.environments.put_objects(put("dev", source)).await.unwrap();
    let target =
        vec![plain_group(&y, &format!("Owner {case}"), None), plain_group(&x, &format!("Owned {case}"), Some(&y))];
    c.environments.put_objects(put("qa", target)).await.unwrap();
    let create = pb::CreatePackageRequest {
        name: format!("restore {case}"),
        source_environment: "dev".into(),
        object_collections: vec![pb::ObjectCollection {
            obj_code: "GROUP".into(),
            entities: vec![pb::EntityRef { id: x.clone(), name: String::new() }],
        }],
        ..Default::default()
    };
    let package = c.packages.create_package(create).await.unwrap().into_inner();
    let package = extracted(c, &package.id).await;
    preview(c, &package).await;
    let overwrite = pb::TranslationEntry {
        action: pb::InstallAction::Overwriting as i32,
        target_id: x.clone(),
        ..Default::default()
    };
    let map = [("GROUP".to_string(), pb::TypeTranslation { entries: [(x.clone(), overwrite)].into() })].into();
    let req = pb::CreateInstallationRequest {
        package_id: package.id.clone(),
        destination_environment: "qa".into(),
        translation_map: map,
        ..Default::default()
    };
    let installed = c.installations.create_installation(req).await.unwrap().into_inner();
    let get = pb::GetObjectRequest { environment: "qa".into(), obj_code: "GROUP".into(), id: x.clone() };
    let written = c.environments.get_object(get).await.unwrap().into_inner();
    assert_eq!(written.parent, None, "the installation took {x} out from under {y}");
    let edits = edit(&x, &y);
    if edits.is_empty() {
        let delete = pb::DeleteObjectRequest {
            environment: "qa".into(),
            obj_code: "GROUP".into(),
            id: y.clone(),
            ..Default::default()
        };
        c.environments.delete_object(delete).await.expect("the owner is deleted");
    } else {
        c.environments.put_objects(put("qa", edits)).await.expect("the owner moves under the object");
    }
    let rollback = pb::RollbackInstallationRequest { id: installed.id, force: true, ..Default::default() };
    let refused = timely("RollbackInstallation", c.installations.rollback_installation(with_deadline(rollback))).await;
    let status = refused.expect_err("restoring X under Y would break the ownership rules");
    let get = pb::GetObjectRequest { environment: "qa".into(), obj_code: "GROUP".into(), id: x };
    let kept = c.environments.get_object(get).await.expect("nothing was restored").into_inner();
    assert_eq!(kept.parent, None);
    status
}

#[test]
fn a_forced_rollback_leaves_neither_an_orphan_nor_a_cycle() {
    let (rt, services, mut c) = start();
    rt.block_on(async {
        // The owner deleted since: restoring X would leave it owned by nothing that exists.
        let orphan = forced_rollback_after(&mut c, 1, |_, _| vec![]).await;
        assert_eq!((orphan.code(), reason_of(&orphan).as_deref()), (Code::FailedPrecondition, Some("RESTORE_INVALID")));
        assert!(orphan.message().contains("PARENT_NOT_FOUND"), "{orphan:?}");
        // The owner moved under X since: restoring X under it would close a loop.
        let cycle = forced_rollback_after(&mut c, 2, |x, y| vec![plain_group(y, "Owner 2", Some(x))]).await;
        assert_eq!((cycle.code(), reason_of(&cycle).as_deref()), (Code::FailedPrecondition, Some("RESTORE_INVALID")));
        still_serving(&mut c).await;
    });
    drop(services);
}
