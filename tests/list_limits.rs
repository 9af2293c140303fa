//! Every list RPC stays under the message cap when its items are at their maximum size, and
//! its page tokens are bound to the list, its filters and the caller's organization.
mod common;

use common::*;
use promotion_api::v1 as pb;
use prost::Message;
use prost_types::{value::Kind, Struct, Value};
use tonic::Code;

/// What a page may take: the 1 MiB every message of these services stays under.
const CAP: usize = 1024 * 1024;

/// A GROUP as large as an object may be (256 KiB encoded), with the longest name.
fn largest_group(n: usize) -> pb::ConfigObject {
    let name = format!("{n:03} {}", "𝔸".repeat(251));
    let notes = Value { kind: Some(Kind::StringValue("x".repeat(256 * 1024 - 2_000))) };
    pb::ConfigObject {
        obj_code: "GROUP".into(),
        id: format!("{:032x}", 0x0001_a96e_0000 + n),
        name,
        fields: Some(Struct { fields: [("notes".to_string(), notes)].into_iter().collect() }),
        ..Default::default()
    }
}

/// Pages through a list until its end, checking every page against the cap; returns the
/// number of items seen.
macro_rules! page_through {
    ($client:expr, $method:ident, $req:expr, $items:ident) => {{
        let mut req = $req;
        let mut seen = 0;
        let mut pages = 0;
        loop {
            let page = $client.$method(req.clone()).await.expect("list page").into_inner();
            assert!(page.encoded_len() <= CAP, "a page of {} bytes", page.encoded_len());
            seen += page.$items.len();
            pages += 1;
            if page.next_page_token.is_empty() {
                break;
            }
            req.page_token = page.next_page_token;
        }
        (seen, pages)
    }};
}

#[tokio::test]
async fn every_list_stays_under_the_cap_with_items_at_their_largest() {
    let services = DevServices::start().await;
    let mut admin = services.clients("admin").await;
    let mut alice = services.clients("alice").await;

    // Twelve objects of 256 KiB: one page of 1,000 would be 3 MiB.
    for n in 0..12 {
        let req =
            pb::PutObjectsRequest { environment: "dev".into(), objects: vec![largest_group(n)], ..Default::default() };
        admin.environments.put_objects(req).await.expect("an object at its largest is accepted");
    }
    let too_big = pb::ConfigObject { id: String::new(), ..largest_group(99) };
    let mut too_big = too_big;
    if let Some(f) = too_big.fields.as_mut() {
        f.fields.insert("more".into(), Value { kind: Some(Kind::StringValue("y".repeat(4096))) });
    }
    let refused = admin
        .environments
        .put_objects(pb::PutObjectsRequest { environment: "dev".into(), objects: vec![too_big], ..Default::default() })
        .await;
    let status = assert_status(refused, Code::ResourceExhausted, "LIMIT_EXCEEDED");
    assert_eq!(metadata_of(&status).get("limit").map(String::as_str), Some("max_object_bytes"));

    let list = pb::ListObjectsRequest {
        environment: "dev".into(),
        obj_code: "GROUP".into(),
        page_size: 1000,
        ..Default::default()
    };
    let mut envs = admin.environments.clone();
    let (seen, pages) = page_through!(envs, list_objects, list, objects);
    assert!(seen >= 12 && pages >= 3, "{seen} objects in {pages} pages");

    // Drift entries at their largest: those groups installed into qa, then rewritten there,
    // so that every entry carries two values of almost 256 KiB.
    let entities = (0..12).map(|n| pb::EntityRef { id: largest_group(n).id, name: String::new() }).collect();
    let req = pb::CreatePackageRequest {
        name: "largest groups".into(),
        source_environment: "dev".into(),
        object_collections: vec![pb::ObjectCollection { obj_code: "GROUP".into(), entities }],
        ..Default::default()
    };
    let package = alice.packages.create_package(req).await.expect("a package of the largest groups").into_inner();
    extracted(&mut alice, &package.id).await;
    set_package_status(&mut alice, &package.id, pb::PackageStatus::Preview).await;
    let install = pb::CreateInstallationRequest {
        package_id: package.id.clone(),
        destination_environment: "qa".into(),
        ..Default::default()
    };
    let installed = admin.installations.create_installation(install).await.expect("installed").into_inner();
    for target in installed.translation_map["GROUP"].entries.values().map(|e| e.target_id.clone()) {
        let get = pb::GetObjectRequest { environment: "qa".into(), obj_code: "GROUP".into(), id: target };
        let mut object = admin.environments.get_object(get).await.unwrap().into_inner();
        let notes = Value { kind: Some(Kind::StringValue("z".repeat(256 * 1024 - 2_000))) };
        object.fields.as_mut().unwrap().fields.insert("notes".into(), notes);
        let req = pb::PutObjectsRequest { environment: "qa".into(), objects: vec![object], ..Default::default() };
        admin.environments.put_objects(req).await.expect("edited in qa");
    }
    let mut installations = admin.installations.clone();
    let list = pb::GetDriftRequest { environment: "qa".into(), page_size: 1000, ..Default::default() };
    let (seen, pages) = page_through!(installations, get_drift, list, entries);
    assert!(seen >= 12 && pages >= 6, "{seen} drift entries in {pages} pages");

    // Version differences at their largest: the groups rewritten in dev too, and extracted
    // again as version 2 of the package.
    for n in 0..12 {
        let mut group = largest_group(n);
        let notes = Value { kind: Some(Kind::StringValue("v".repeat(256 * 1024 - 2_000))) };
        group.fields.as_mut().unwrap().fields.insert("notes".into(), notes);
        let req = pb::PutObjectsRequest { environment: "dev".into(), objects: vec![group], ..Default::default() };
        admin.environments.put_objects(req).await.expect("edited in dev");
    }
    let building = set_package_status(&mut alice, &package.id, pb::PackageStatus::Building).await;
    let roots = pb::ObjectCollections { collections: building.object_collections.clone() };
    let replace = pb::ReplacePackageRequest {
        id: package.id.clone(),
        name: building.name.clone(),
        etag: building.etag.clone(),
        definition: Some(pb::replace_package_request::Definition::ObjectCollections(roots)),
        ..Default::default()
    };
    alice.packages.replace_package(replace).await.expect("re-extracted");
    assert_eq!(extracted(&mut alice, &package.id).await.version, 2);
    let mut packages = admin.packages.clone();
    let list = pb::DiffPackageVersionsRequest {
        id: package.id.clone(),
        from_version: 1,
        to_version: 2,
        page_size: 1000,
        ..Default::default()
    };
    let (seen, pages) = page_through!(packages, diff_package_versions, list, objects);
    assert!(seen == 12 && pages >= 6, "{seen} changed objects in {pages} pages");

    // Packages naming the most roots, with the longest names: the tester's poison.
    for n in 0..4u64 {
        let entities = (0..500)
            .map(|i: u64| pb::EntityRef {
                id: format!("{:032x}", 0xdead_0000 + n * 1000 + i), name: "𝔹".repeat(255)
            })
            .collect();
        let req = pb::CreatePackageRequest {
            name: format!("many roots {n}"),
            source_environment: "dev".into(),
            object_collections: vec![pb::ObjectCollection { obj_code: "GROUP".into(), entities }],
            description: "𝔻".repeat(4000),
            ..Default::default()
        };
        alice.packages.create_package(req).await.expect("500 roots are allowed");
    }
    let entities = (0..501).map(|i| pb::EntityRef { id: format!("{:032x}", i + 1), name: String::new() }).collect();
    let req = pb::CreatePackageRequest {
        name: "too many roots".into(),
        source_environment: "dev".into(),
        object_collections: vec![pb::ObjectCollection { obj_code: "GROUP".into(), entities }],
        ..Default::default()
    };
    let status = assert_status(alice.packages.create_package(req).await, Code::ResourceExhausted, "LIMIT_EXCEEDED");
    assert_eq!(metadata_of(&status).get("limit").map(String::as_str), Some("max_package_roots"));
    let list = pb::ListPackagesRequest { page_size: 1000, show_retired: true, ..Default::default() };
    let mut packages = admin.packages.clone();
    let (seen, _) = page_through!(packages, list_packages, list, packages);
    assert!(seen >= 4);

    let mut installations = admin.installations.clone();
    let list = pb::ListInstallationsRequest { page_size: 1000, ..Default::default() };
    page_through!(installations, list_installations, list, installations);
    let mut promotions = admin.promotions.clone();
    let list = pb::ListPromotionRequestsRequest { page_size: 1000, ..Default::default() };
    page_through!(promotions, list_promotion_requests, list, promotion_requests);
    let list = pb::ListPromotionTasksRequest { page_size: 1000, ..Default::default() };
    page_through!(promotions, list_promotion_tasks, list, promotion_requests);
    let list = pb::ListEnvironmentsRequest { page_size: 1000, ..Default::default() };
    page_through!(envs, list_environments, list, environments);
    for mut audit in [admin.package_audit.clone(), admin.installation_audit.clone()] {
        let list = pb::ListAuditEventsRequest { page_size: 1000, ..Default::default() };
        let (seen, _) = page_through!(audit, list_audit_events, list, events);
        assert!(seen > 0);
    }
}

#[tokio::test]
async fn page_tokens_hold_only_for_their_list_filters_and_organization() {
    let services = DevServices::start().await;
    let mut admin = services.clients("admin").await;
    let mut gina = services.clients("gina").await;
    let list = |obj_code: &str, token: String| pb::ListObjectsRequest {
        environment: "dev".into(),
        obj_code: obj_code.into(),
        page_size: 1,
        page_token: token,
        ..Default::default()
    };
    let first = admin.environments.list_objects(list("GROUP", String::new())).await.unwrap().into_inner();
    let token = first.next_page_token;
    assert!(!token.is_empty(), "dev holds more than one group");
    admin.environments.list_objects(list("GROUP", token.clone())).await.expect("its own token resumes");

    let bad = |r| assert_status(r, Code::InvalidArgument, "INVALID_PAGE_TOKEN");
    bad(admin.environments.list_objects(list("ROLE", token.clone())).await.map(|_| ()));
    let other_list = pb::ListPackagesRequest { page_token: token.clone(), ..Default::default() };
    bad(admin.packages.list_packages(other_list).await.map(|_| ()));
    let installations = pb::ListInstallationsRequest { page_token: token.clone(), ..Default::default() };
    bad(admin.installations.list_installations(installations).await.map(|_| ()));
    let drift = pb::GetDriftRequest { environment: "qa".into(), page_token: token.clone(), ..Default::default() };
    bad(admin.installations.get_drift(drift).await.map(|_| ()));
    let package = group_package(&mut admin, "One group", &[]).await;
    let diff = pb::DiffPackageVersionsRequest { id: package.id, page_token: token.clone(), ..Default::default() };
    bad(admin.packages.diff_package_versions(diff).await.map(|_| ()));
    let made_up = pb::ListEnvironmentsRequest { page_token: "ZGV2".into(), ..Default::default() };
    bad(admin.environments.list_environments(made_up).await.map(|_| ()));
    for list in [
        pb::ListAuditEventsRequest { page_token: "ZGV2".into(), ..Default::default() },
        pb::ListAuditEventsRequest { page_token: token.clone(), ..Default::default() },
    ] {
        bad(admin.installation_audit.list_audit_events(list.clone()).await.map(|_| ()));
        bad(admin.package_audit.list_audit_events(list).await.map(|_| ()));
    }
    let tasks = pb::ListPromotionTasksRequest { page_token: "ZGV2".into(), ..Default::default() };
    bad(admin.promotions.list_promotion_tasks(tasks).await.map(|_| ()));
    let requests = pb::ListPromotionRequestsRequest { page_token: token.clone(), ..Default::default() };
    bad(admin.promotions.list_promotion_requests(requests).await.map(|_| ()));
    // Another organization's caller cannot resume acme's listing.
    let envs = pb::ListEnvironmentsRequest { page_size: 1, ..Default::default() };
    let acme_token = admin.environments.list_environments(envs).await.unwrap().into_inner().next_page_token;
    let replay = pb::ListEnvironmentsRequest { page_size: 1, page_token: acme_token.clone() };
    bad(gina.environments.list_environments(replay).await.map(|_| ()));
    // Tokens survive a restart: the key is kept in the store.
    let (_, dir) = services.terminate();
    let services = DevServices::start_in(dir).await;
    let mut admin = services.clients("admin").await;
    let replay = pb::ListEnvironmentsRequest { page_size: 1, page_token: acme_token };
    admin.environments.list_environments(replay).await.expect("a token outlives a restart");
}

/// A comment as long as the service takes (4,000 characters), in four-byte characters.
fn longest_comment() -> String {
    "𝔸".repeat(4000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_lists_and_the_audit_trail_stay_under_the_cap_with_the_longest_comments() {
    let services = DevServices::start().await;
    let mut alice = services.clients("alice").await;
    let admin = services.clients("admin").await;
    // Seventy requests of 16 KiB comments and 1 KiB package names: one page of 1,000 would
    // be 1.2 MiB before anything else a request carries.
    let requests = 70;
    for n in 0..requests {
        let name = format!("{n:03} {}", "𝔸".repeat(251));
        let package = group_package(&mut alice, &name, &[pb::PackageStatus::Preview]).await;
        let req = pb::RequestPromotionRequest {
            package_id: package.id,
            target_environment: "qa".into(),
            comment: longest_comment(),
            request_id: uuid::Uuid::new_v4().to_string(),
            ..Default::default()
        };
        alice.promotions.request_promotion(req).await.expect("a request with the longest comment");
    }
    let mut promotions = admin.promotions.clone();
    let list = pb::ListPromotionRequestsRequest { page_size: 1000, ..Default::default() };
    let (seen, pages) = page_through!(promotions, list_promotion_requests, list, promotion_requests);
    assert!(seen >= requests && pages >= 2, "{seen} requests in {pages} pages");
    let list = pb::ListPromotionTasksRequest { page_size: 1000, ..Default::default() };
    let (seen, pages) = page_through!(promotions, list_promotion_tasks, list, promotion_requests);
    assert!(seen >= requests && pages >= 2, "{seen} tasks in {pages} pages");
    for mut audit in [admin.package_audit.clone(), admin.installation_audit.clone()] {
        let list = pb::ListAuditEventsRequest { page_size: 1000, ..Default::default() };
        let (seen, _) = page_through!(audit, list_audit_events, list, events);
        assert!(seen >= requests, "{seen} events");
    }
}
