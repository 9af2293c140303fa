//! Large packages against `promotion dev`: a 10,000-object definition streams in bounded
//! messages, and a kill -9 during extraction leaves no package EXTRACTING after restart.
mod common;

use common::*;
use prost::Message;
use std::time::Duration;

use pb::get_package_definition_response::Part;
use promotion_api::v1 as pb;
use prost_types::{value::Kind, Struct, Value};

type Packages = pb::package_service_client::PackageServiceClient<Authed>;

const TASKS: usize = 10_000;
const BIG_TEMPLATE: &str = "b16b16b16b16b16b16b16b16b16b1600";
const ONE_MIB: usize = 1024 * 1024;

fn text(s: String) -> Value {
    Value { kind: Some(Kind::StringValue(s)) }
}

/// A template with `TASKS` tasks, each carrying a few hundred bytes of fields.
fn big_template() -> Vec<pb::ConfigObject> {
    let template = pb::ConfigObject {
        obj_code: "TMPL".into(),
        id: BIG_TEMPLATE.into(),
        name: "Enterprise Rollout (10,000 tasks)".into(),
        ..Default::default()
    };
    let parent = pb::ObjectKey { obj_code: "TMPL".into(), id: BIG_TEMPLATE.into() };
    let tasks = (0..TASKS).map(|n| pb::ConfigObject {
        obj_code: "TTSK".into(),
        id: format!("{n:032x}"),
        name: format!("Rollout step {n}"),
        fields: Some(Struct {
            fields: [
                (
                    "description".to_string(),
                    text(format!("Step {n} of the enterprise rollout: {}", "plan, build, verify. ".repeat(8))),
                ),
                ("task_number".to_string(), Value { kind: Some(Kind::NumberValue(n as f64)) }),
            ]
            .into(),
        }),
        parent: Some(parent.clone()),
        ..Default::default()
    });
    std::iter::once(template).chain(tasks).collect()
}

async fn put_big_template(dev: &DevServices) {
    let mut admin = dev.clients("admin").await;
    let objects = big_template();
    for batch in objects.chunks(5_001) {
        let req = pb::PutObjectsRequest {
            environment: "dev".into(),
            objects: batch.to_vec(),
            request_id: String::new(),
            ..Default::default()
        };
        admin.environments.put_objects(req).await.unwrap();
    }
}

fn big_package(name: &str) -> pb::CreatePackageRequest {
    pb::CreatePackageRequest {
        name: name.into(),
        source_environment: "dev".into(),
        object_collections: vec![pb::ObjectCollection {
            obj_code: "TMPL".into(),
            entities: vec![pb::EntityRef { id: BIG_TEMPLATE.into(), name: String::new() }],
        }],
        ..Default::default()
    }
}

async fn settled(client: &mut Packages, id: &str) -> pb::Package {
    for _ in 0..2400 {
        let p = client.get_package(pb::GetPackageRequest { id: id.into() }).await.unwrap().into_inner();
        if p.status != pb::PackageStatus::Extracting as i32 {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("package {id} stayed EXTRACTING");
}

async fn all_packages(client: &mut Packages) -> Vec<pb::Package> {
    let req = pb::ListPackagesRequest { page_size: 1000, show_retired: true, ..Default::default() };
    client.list_packages(req).await.unwrap().into_inner().packages
}

#[tokio::test]
async fn a_ten_thousand_object_package_streams_in_messages_under_one_mib_and_survives_kill_9() {
    let dev = DevServices::start().await;
    put_big_template(&dev).await;
    let mut alice = dev.clients("alice").await;
    let created = alice.packages.create_package(big_package("Enterprise rollout")).await.unwrap().into_inner();
    let package = settled(&mut alice.packages, &created.id).await;
    assert_eq!(package.status, pb::PackageStatus::Building as i32, "{}", package.failure_reason);
    assert_eq!(package.entity_counts.get("TTSK"), Some(&(TASKS as i64)));

    let req = pb::GetPackageDefinitionRequest { id: package.id.clone(), version: 0 };
    let mut stream = alice.packages.get_package_definition(req).await.unwrap().into_inner();
    let (mut messages, mut objects, mut largest) = (0, 0, 0);
    while let Some(m) = stream.message().await.unwrap() {
        largest = largest.max(m.encoded_len());
        if let Some(Part::Entities(e)) = &m.part {
            objects += e.objects.len();
        }
        messages += 1;
    }
    assert_eq!(objects, TASKS + 1);
    assert!(messages > 3, "the definition is split: {messages} messages");
    assert!(largest <= ONE_MIB, "largest message {largest} bytes");

    // Several large extractions in flight, then kill -9.
    let mut pending = Vec::new();
    for n in 0..3 {
        let p = alice.packages.create_package(big_package(&format!("Rollout copy {n}"))).await.unwrap().into_inner();
        assert_eq!(p.status, pb::PackageStatus::Extracting as i32);
        pending.push(p.id);
    }
    let data = dev.kill();
    let dev = DevServices::start_in(data).await;
    let mut alice = dev.clients("alice").await;
    let packages = all_packages(&mut alice.packages).await;
    assert_eq!(packages.len(), 4, "every acknowledged package survived");
    for p in &packages {
        assert_ne!(p.status, pb::PackageStatus::Extracting as i32, "{} stayed EXTRACTING", p.id);
        if p.status == pb::PackageStatus::ExtractionFailed as i32 {
            assert!(p.failure_reason.starts_with("interrupted"), "{}", p.failure_reason);
        }
    }
    let interrupted = packages.iter().filter(|p| p.status == pb::PackageStatus::ExtractionFailed as i32).count();
    eprintln!("{interrupted} of 3 extractions were interrupted by the kill");

    // An interrupted package can be re-extracted; the first one still streams.
    for id in &pending {
        let p = packages.iter().find(|p| &p.id == id).unwrap();
        if p.status != pb::PackageStatus::ExtractionFailed as i32 {
            continue;
        }
        let change = pb::Package {
            id: id.clone(),
            etag: p.etag.clone(),
            object_collections: big_package("x").object_collections,
            ..Default::default()
        };
        let mask = prost_types::FieldMask { paths: vec!["object_collections".into()] };
        let update =
            pb::UpdatePackageRequest { package: Some(change), update_mask: Some(mask), request_id: String::new() };
        alice.packages.update_package(update).await.unwrap();
        let done = settled(&mut alice.packages, id).await;
        assert_eq!((done.status, done.digest.as_str()), (pb::PackageStatus::Building as i32, package.digest.as_str()));
        break;
    }
    let req = pb::GetPackageDefinitionRequest { id: package.id.clone(), version: 1 };
    let mut stream = alice.packages.get_package_definition(req).await.unwrap().into_inner();
    let mut objects = 0;
    while let Some(m) = stream.message().await.unwrap() {
        if let Some(Part::Entities(e)) = m.part {
            objects += e.objects.len();
        }
    }
    assert_eq!(objects, TASKS + 1);
}
