//! PackageService over gRPC against `promotion dev`: the seed's package, versions,
//! lifecycle, idempotency, installation counts, watching, and bad input.
mod common;

use common::*;
use prost::Message;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use pb::get_package_definition_response::Part;
use promotion_api::v1 as pb;
use tonic::{Code, Status};

type Packages = pb::package_service_client::PackageServiceClient<Authed>;

fn roots(list: &[(&str, &[(&str, &str)])]) -> Vec<pb::ObjectCollection> {
    list.iter()
        .map(|(code, entities)| pb::ObjectCollection {
            obj_code: code.to_string(),
            entities: entities
                .iter()
                .map(|(id, name)| pb::EntityRef { id: id.to_string(), name: name.to_string() })
                .collect(),
        })
        .collect()
}

/// Seed 001's CreatePackage body, with `source_environment: "dev"`.
fn seed_body() -> pb::CreatePackageRequest {
    pb::CreatePackageRequest {
        name: "Agency Onboarding - 2023-06-06".into(),
        description: "This promotion package contains configuration to support the agency onboarding processes..."
            .into(),
        source_environment: "dev".into(),
        object_collections: roots(&[
            ("PROJ", &[(AGENCY_REQUEST_PROJ, "Agency Request")]),
            ("TMPL", &[(ONBOARDING_TMPL, "New Agency Onboarding"), (OFFBOARDING_TMPL, "New Agency Offboarding")]),
            ("PTLTAB", &[(READINESS_PTLTAB, "Agency Performance and Readiness")]),
        ]),
        is_private: true,
        request_id: String::new(),
    }
}

fn onboarding_only(name: &str) -> pb::CreatePackageRequest {
    pb::CreatePackageRequest {
        name: name.into(),
        source_environment: "dev".into(),
        object_collections: roots(&[("TMPL", &[(ONBOARDING_TMPL, "New Agency Onboarding")])]),
        ..Default::default()
    }
}

async fn get(client: &mut Packages, id: &str) -> pb::Package {
    client.get_package(pb::GetPackageRequest { id: id.into() }).await.unwrap().into_inner()
}

/// Polls until the package has left EXTRACTING.
async fn settled(client: &mut Packages, id: &str) -> pb::Package {
    for _ in 0..1200 {
        let p = get(client, id).await;
        if p.status != pb::PackageStatus::Extracting as i32 {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("package {id} stayed EXTRACTING");
}

async fn create_settled(client: &mut Packages, req: pb::CreatePackageRequest) -> pb::Package {
    let created = client.create_package(req).await.unwrap().into_inner();
    settled(client, &created.id).await
}

async fn definition(client: &mut Packages, id: &str, version: i64) -> Vec<pb::GetPackageDefinitionResponse> {
    let mut stream = client
        .get_package_definition(pb::GetPackageDefinitionRequest { id: id.into(), version })
        .await
        .unwrap()
        .into_inner();
    let mut messages = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        messages.push(m);
    }
    messages
}

fn header(messages: &[pb::GetPackageDefinitionResponse]) -> pb::PackageDefinitionHeader {
    match &messages[0].part {
        Some(Part::Header(h)) => h.clone(),
        other => panic!("the first message is not the header: {other:?}"),
    }
}

fn entities(messages: &[pb::GetPackageDefinitionResponse]) -> pb::PackageEntities {
    let mut all = pb::PackageEntities::default();
    for m in &messages[1..] {
        match &m.part {
            Some(Part::Entities(e)) => {
                all.objects.extend(e.objects.iter().cloned());
                all.external_references.extend(e.external_references.iter().cloned());
            }
            other => panic!("only the first message is a header: {other:?}"),
        }
    }
    all
}

fn key(o: &pb::ConfigObject) -> (String, String) {
    (o.obj_code.clone(), o.id.clone())
}

async fn set_status(client: &mut Packages, p: &pb::Package, to: pb::PackageStatus) -> Result<pb::Package, Status> {
    let package = pb::Package { id: p.id.clone(), etag: p.etag.clone(), status: to as i32, ..Default::default() };
    let mask = prost_types::FieldMask { paths: vec!["status".into()] };
    client
        .update_package(pb::UpdatePackageRequest {
            package: Some(package),
            update_mask: Some(mask),
            request_id: String::new(),
        })
        .await
        .map(|r| r.into_inner())
}

/// Only the failure matters in the bad-input table.
fn ok<T>(result: Result<T, Status>) -> Result<(), Status> {
    result.map(|_| ())
}

async fn count_packages(client: &mut Packages) -> usize {
    let req = pb::ListPackagesRequest { page_size: 1000, show_retired: true, ..Default::default() };
    client.list_packages(req).await.unwrap().into_inner().packages.len()
}

#[tokio::test]
async fn the_seed_package_holds_every_root_and_its_closure_once() {
    let dev = DevServices::start().await;
    let mut alice = dev.clients("alice").await;
    let created = alice.packages.create_package(seed_body()).await.unwrap().into_inner();
    assert_eq!(created.status, pb::PackageStatus::Extracting as i32, "returned at once in EXTRACTING");
    assert_eq!((created.version, created.organization.as_str(), created.created_by.as_str()), (1, "acme", "alice"));
    assert!(uuid::Uuid::parse_str(&created.id).is_ok());

    let package = settled(&mut alice.packages, &created.id).await;
    assert_eq!(package.status, pb::PackageStatus::Building as i32, "{}", package.failure_reason);
    assert!(package.warnings.is_empty(), "the seed's names are right: {:?}", package.warnings);
    assert_ne!(package.etag, created.etag);

    let export_req = pb::ExportObjectsRequest { environment: "dev".into(), roots: seed_body().object_collections };
    let mut export = alice.environments.export_objects(export_req).await.unwrap().into_inner();
    let mut exported = Vec::new();
    let mut exported_external = BTreeSet::new();
    while let Some(chunk) = export.message().await.unwrap() {
        exported.extend(chunk.objects);
        exported_external.extend(chunk.external_references.into_iter().map(|r| (r.obj_code, r.id)));
    }

    let messages = definition(&mut alice.packages, &package.id, 0).await;
    let header = header(&messages);
    let content = entities(&messages);
    let keys: Vec<_> = content.objects.iter().map(key).collect();
    let unique: BTreeSet<_> = keys.iter().cloned().collect();
    assert_eq!(keys.len(), unique.len(), "each object appears once");
    assert_eq!(unique, exported.iter().map(key).collect::<BTreeSet<_>>(), "the definition is the export's closure");
    for c in &seed_body().object_collections {
        for e in &c.entities {
            assert!(unique.contains(&(c.obj_code.clone(), e.id.clone())), "root {} {} is included", c.obj_code, e.id);
        }
    }
    let ttsk_of_onboarding = content
        .objects
        .iter()
        .filter(|o| o.obj_code == "TTSK" && o.parent.as_ref().is_some_and(|p| p.id == ONBOARDING_TMPL))
        .count();
    assert!(ttsk_of_onboarding >= 6, "the template's tasks come with it");
    let external: BTreeSet<_> =
        content.external_references.iter().map(|r| (r.obj_code.clone(), r.id.clone())).collect();
    assert_eq!(external, exported_external);

    let mut expected_counts: BTreeMap<String, i64> = BTreeMap::new();
    for o in &exported {
        *expected_counts.entry(o.obj_code.clone()).or_default() += 1;
    }
    let counts: BTreeMap<_, _> = package.entity_counts.clone().into_iter().collect();
    assert_eq!(counts, expected_counts);
    assert_eq!(header.entity_counts.into_iter().collect::<BTreeMap<_, _>>(), expected_counts);
    assert_eq!(header.entity_total, exported.len() as i64);
    assert_eq!((header.version, header.digest.as_str()), (1, package.digest.as_str()));
    assert!(package.digest.starts_with("sha256:"));

    let mut admin = dev.clients("admin").await;
    let req = pb::ListAuditEventsRequest { resource_id: package.id.clone(), ..Default::default() };
    let events = admin.package_audit.list_audit_events(req).await.unwrap().into_inner().events;
    let actions: Vec<_> =
        events.iter().map(|e| (e.action.as_str(), e.actor.as_str(), e.environment.as_str())).collect();
    assert_eq!(actions, vec![("PACKAGE_CREATED", "alice", "dev"), ("PACKAGE_EXTRACTED", "alice", "dev")]);

    let metadata = package.metadata.unwrap();
    assert_eq!(metadata.display_order[..3], ["PROJ", "TMPL", "PTLTAB"]);
    assert_eq!(metadata.display_order.iter().collect::<BTreeSet<_>>(), expected_counts.keys().collect());
    let rank = |code: &str| metadata.install_order.iter().position(|c| c == code).unwrap();
    assert!(rank("GROUP") < rank("TMPL") && rank("TMPL") < rank("TTSK") && rank("ROLE") < rank("TASSGN"));
    // Objects stream in install order.
    let positions: Vec<_> = content.objects.iter().map(|o| rank(&o.obj_code)).collect();
    assert!(positions.windows(2).all(|w| w[0] <= w[1]));
}

#[tokio::test]
async fn re_extraction_adds_a_version_and_earlier_versions_stay_byte_for_byte() {
    let dev = DevServices::start().await;
    let mut alice = dev.clients("alice").await;
    let mut admin = dev.clients("admin").await;
    let v1 = create_settled(&mut alice.packages, onboarding_only("Onboarding template")).await;
    assert_eq!((v1.status, v1.version), (pb::PackageStatus::Building as i32, 1));
    let v1_messages = definition(&mut alice.packages, &v1.id, 0).await;
    let v1_bytes: Vec<Vec<u8>> = v1_messages[1..].iter().map(|m| m.encode_to_vec()).collect();

    // Change the template in the source environment.
    let get = pb::GetObjectRequest { environment: "dev".into(), obj_code: "TMPL".into(), id: ONBOARDING_TMPL.into() };
    let mut template = admin.environments.get_object(get).await.unwrap().into_inner();
    template.name = "New Agency Onboarding (2024)".into();
    let put = pb::PutObjectsRequest {
        environment: "dev".into(),
        objects: vec![template],
        request_id: String::new(),
        ..Default::default()
    };
    admin.environments.put_objects(put).await.unwrap();

    let package = pb::Package {
        id: v1.id.clone(),
        etag: v1.etag.clone(),
        object_collections: onboarding_only("x").object_collections,
        ..Default::default()
    };
    let mask = prost_types::FieldMask { paths: vec!["object_collections".into()] };
    let update =
        pb::UpdatePackageRequest { package: Some(package), update_mask: Some(mask), request_id: String::new() };
    let extracting = alice.packages.update_package(update).await.unwrap().into_inner();
    assert_eq!((extracting.status, extracting.version), (pb::PackageStatus::Extracting as i32, 1));
    let v2 = settled(&mut alice.packages, &v1.id).await;
    assert_eq!((v2.status, v2.version), (pb::PackageStatus::Building as i32, 2));
    assert_ne!(v2.digest, v1.digest);
    assert_eq!(v2.warnings.len(), 1, "the requested name now differs: {:?}", v2.warnings);

    let again = definition(&mut alice.packages, &v1.id, 1).await;
    assert_eq!(header(&again), header(&v1_messages));
    assert_eq!(again[1..].iter().map(|m| m.encode_to_vec()).collect::<Vec<_>>(), v1_bytes, "version 1 is unchanged");
    let v2_messages = definition(&mut alice.packages, &v1.id, 0).await;
    assert_eq!((header(&v2_messages).version, header(&v2_messages).digest), (2, v2.digest.clone()));

    // The same content given whole is version 3 with the same digest.
    let replace = pb::ReplacePackageRequest {
        id: v1.id.clone(),
        name: "Onboarding template, given".into(),
        description: "replaced with its own content".into(),
        is_private: false,
        definition: Some(pb::replace_package_request::Definition::Entities(entities(&v2_messages))),
        etag: v2.etag.clone(),
        request_id: String::new(),
    };
    let v3 = alice.packages.replace_package(replace).await.unwrap().into_inner();
    assert_eq!(
        (v3.status, v3.version, v3.digest.as_str()),
        (pb::PackageStatus::Building as i32, 3, v2.digest.as_str())
    );
    assert!(v3.object_collections.is_empty(), "a given definition names no roots");

    // Re-extracting through ReplacePackage gives the same digest again: nothing changed.
    let replace = pb::ReplacePackageRequest {
        id: v1.id.clone(),
        name: "Onboarding template".into(),
        definition: Some(pb::replace_package_request::Definition::ObjectCollections(pb::ObjectCollections {
            collections: onboarding_only("x").object_collections,
        })),
        etag: v3.etag.clone(),
        ..Default::default()
    };
    alice.packages.replace_package(replace).await.unwrap();
    let v4 = settled(&mut alice.packages, &v1.id).await;
    assert_eq!((v4.version, v4.digest.as_str()), (4, v2.digest.as_str()));
    let v1_later = definition(&mut alice.packages, &v1.id, 1).await;
    assert_eq!(v1_later[1..].iter().map(|m| m.encode_to_vec()).collect::<Vec<_>>(), v1_bytes);
    let missing =
        alice.packages.get_package_definition(pb::GetPackageDefinitionRequest { id: v1.id.clone(), version: 5 }).await;
    assert_status(missing, Code::NotFound, "VERSION_NOT_FOUND");
}

#[tokio::test]
async fn every_allowed_status_transition_works_and_retired_packages_hide() {
    let dev = DevServices::start().await;
    let mut alice = dev.clients("alice").await;
    let mut p = create_settled(&mut alice.packages, onboarding_only("Lifecycle package")).await;
    use pb::PackageStatus::*;
    for to in
        [Preview, Building, Preview, Public, Building, Preview, Public, Retired, Building, Preview, Public, Retired]
    {
        let next = set_status(&mut alice.packages, &p, to).await.unwrap_or_else(|e| panic!("-> {to:?}: {e:?}"));
        assert_eq!(next.status, to as i32);
        assert_ne!(next.etag, p.etag);
        p = next;
    }
    assert!(p.publish_time.is_some() && p.retire_time.is_some());
    assert_eq!(p.version, 1, "status changes leave the definition alone");

    let reader = alice.packages.clone();
    let list = |req: pb::ListPackagesRequest| {
        let mut client = reader.clone();
        async move { client.list_packages(req).await.unwrap().into_inner().packages.len() }
    };
    assert_eq!(list(pb::ListPackagesRequest::default()).await, 0, "retired packages are hidden");
    assert_eq!(list(pb::ListPackagesRequest { show_retired: true, ..Default::default() }).await, 1);
    assert_eq!(list(pb::ListPackagesRequest { status: Retired as i32, ..Default::default() }).await, 1);
    let p = set_status(&mut alice.packages, &p, Building).await.unwrap();
    assert_eq!(list(pb::ListPackagesRequest { source_environment: "dev".into(), ..Default::default() }).await, 1);
    assert_eq!(list(pb::ListPackagesRequest { source_environment: "qa".into(), ..Default::default() }).await, 0);
    assert_eq!(list(pb::ListPackagesRequest { status: Public as i32, ..Default::default() }).await, 0);
    assert_eq!(p.status, Building as i32);
}

#[tokio::test]
async fn listing_is_newest_first_and_pages() {
    let dev = DevServices::start().await;
    let mut alice = dev.clients("alice").await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let req = pb::CreatePackageRequest {
            name: format!("Empty package {n}"),
            source_environment: "dev".into(),
            ..Default::default()
        };
        let p = alice.packages.create_package(req).await.unwrap().into_inner();
        assert_eq!((p.status, p.version), (pb::PackageStatus::Building as i32, 1), "no collections: empty and ready");
        ids.push(p.id);
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let req = pb::ListPackagesRequest { page_size: 2, page_token: token.clone(), ..Default::default() };
        let page = alice.packages.list_packages(req).await.unwrap().into_inner();
        assert!(page.packages.len() <= 2);
        seen.extend(page.packages.into_iter().map(|p| p.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ids);
    let mut gina = dev.clients("gina").await;
    assert_eq!(count_packages(&mut gina.packages).await, 0, "another organization sees none of them");
}

#[tokio::test]
async fn a_repeated_request_id_returns_the_first_package() {
    let dev = DevServices::start().await;
    let mut alice = dev.clients("alice").await;
    let request_id = uuid::Uuid::new_v4().to_string();
    let body = pb::CreatePackageRequest { request_id: request_id.clone(), ..onboarding_only("Idempotent package") };
    let first = alice.packages.create_package(body.clone()).await.unwrap().into_inner();
    let second = alice.packages.create_package(body.clone()).await.unwrap().into_inner();
    assert_eq!(first.id, second.id);
    assert_eq!(count_packages(&mut alice.packages).await, 1);
    let other = pb::CreatePackageRequest { name: "Another body".into(), ..body };
    assert_status(alice.packages.create_package(other).await, Code::InvalidArgument, "REQUEST_ID_REUSED");
    assert_eq!(count_packages(&mut alice.packages).await, 1);
}

#[tokio::test]
async fn a_missing_root_fails_the_extraction_naming_it() {
    let dev = DevServices::start().await;
    let mut alice = dev.clients("alice").await;
    let ghost = "00000000000000000000000000000abc";
    let mut body = onboarding_only("Package with a ghost");
    body.object_collections.push(roots(&[("TMPL", &[(ghost, "Ghost Template")])]).remove(0));
    let created = alice.packages.create_package(body).await.unwrap().into_inner();
    let failed = settled(&mut alice.packages, &created.id).await;
    assert_eq!(failed.status, pb::PackageStatus::ExtractionFailed as i32);
    assert!(
        failed.failure_reason.contains(ghost) && failed.failure_reason.contains("Ghost Template"),
        "{}",
        failed.failure_reason
    );
    let no_definition = alice
        .packages
        .get_package_definition(pb::GetPackageDefinitionRequest { id: created.id.clone(), version: 0 })
        .await;
    assert_status(no_definition, Code::FailedPrecondition, "DEFINITION_NOT_READY");
    // EXTRACTION_FAILED is left only by re-extracting.
    assert_status(
        set_status(&mut alice.packages, &failed, pb::PackageStatus::Building).await,
        Code::FailedPrecondition,
        "INVALID_STATUS_TRANSITION",
    );
    let package = pb::Package {
        id: failed.id.clone(),
        object_collections: onboarding_only("x").object_collections,
        ..Default::default()
    };
    let mask = prost_types::FieldMask { paths: vec!["object_collections".into()] };
    alice
        .packages
        .update_package(pb::UpdatePackageRequest {
            package: Some(package),
            update_mask: Some(mask),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let fixed = settled(&mut alice.packages, &failed.id).await;
    assert_eq!(
        (fixed.status, fixed.version, fixed.failure_reason.as_str()),
        (pb::PackageStatus::Building as i32, 1, "")
    );
}

async fn install_into_qa(deployer: &mut Clients, package_id: &str) -> pb::Installation {
    let req = pb::CreateInstallationRequest {
        package_id: package_id.into(),
        destination_environment: "qa".into(),
        ..Default::default()
    };
    deployer.installations.create_installation(req).await.unwrap().into_inner()
}

/// The package's counts once the installation service's outbox has reported `installs`
/// installations into qa.
async fn counted_in_qa(client: &mut Packages, id: &str, installs: i64) -> BTreeMap<String, i64> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let counts: BTreeMap<_, _> = get(client, id).await.installation_counts.into_iter().collect();
        if counts.get("qa") == Some(&installs) || std::time::Instant::now() > deadline {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn only_installations_the_destination_holds_are_counted_and_each_once() {
    let dev = DevServices::start().await;
    let mut alice = dev.clients("alice").await;
    let mut bob = dev.clients("bob").await;
    let mut service = dev.clients("installation-service").await;
    let p = group_package(&mut alice, "Counted package", &[pb::PackageStatus::Preview]).await;
    let report = |package: &pb::Package, installation: &str, env: &str| pb::RecordInstallationRequest {
        package_id: package.id.clone(),
        package_version: package.version,
        installation_id: installation.into(),
        destination_environment: env.into(),
        request_id: String::new(),
    };

    // The internal client's word alone counts nothing.
    let made_up = uuid::Uuid::now_v7().to_string();
    let refused = service.packages.record_installation(report(&p, &made_up, "qa")).await;
    let status = assert_status(refused, Code::NotFound, "INSTALLATION_NOT_FOUND");
    assert_eq!(metadata_of(&status)["installation_id"], made_up);
    let not_an_id = service.packages.record_installation(report(&p, "inst-1", "qa")).await;
    assert_status(not_an_id, Code::InvalidArgument, "INVALID_INSTALLATION_ID");
    assert!(get(&mut alice.packages, &p.id).await.installation_counts.is_empty(), "nothing was counted");

    // A real installation is counted exactly once: the installation service reports it,
    // and reporting it again changes nothing.
    let installed = install_into_qa(&mut bob, &p.id).await;
    assert_eq!(counted_in_qa(&mut alice.packages, &p.id, 1).await, BTreeMap::from([("qa".to_string(), 1)]));
    let again = service.packages.record_installation(report(&p, &installed.id, "qa")).await.unwrap().into_inner();
    assert!(!again.newly_recorded);
    assert_eq!(again.installation_counts, [("qa".to_string(), 1)].into());

    // A real installation's id counts for nothing else: not another package of the
    // organization, not another organization's package.
    let other = group_package(&mut alice, "Never installed", &[pb::PackageStatus::Preview]).await;
    let borrowed = service.packages.record_installation(report(&other, &installed.id, "qa")).await;
    assert_status(borrowed, Code::NotFound, "INSTALLATION_NOT_FOUND");
    assert!(get(&mut alice.packages, &other.id).await.installation_counts.is_empty());
    let mut gina = dev.clients("gina").await;
    let empty = pb::CreatePackageRequest {
        name: "Globex empty".into(),
        source_environment: "globex-dev".into(),
        ..Default::default()
    };
    let globex = gina.packages.create_package(empty).await.unwrap().into_inner();
    let across = service.packages.record_installation(report(&globex, &installed.id, "qa")).await;
    assert_status(across, Code::NotFound, "ENVIRONMENT_NOT_FOUND");
    // One installation service may host several organizations: globex's environments are
    // checked there too, and hold no such installation.
    let elsewhere = service.packages.record_installation(report(&globex, &made_up, "globex-prod")).await;
    assert_status(elsewhere, Code::NotFound, "INSTALLATION_NOT_FOUND");

    let mut admin = dev.clients("admin").await;
    assert_status(
        admin.packages.record_installation(report(&p, &installed.id, "qa")).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    let after = get(&mut alice.packages, &p.id).await;
    assert_eq!(after.installation_counts, [("qa".to_string(), 1)].into(), "still counted once");
    assert_eq!(after.etag, p.etag, "counts kept by other services never make an update stale");
}

#[tokio::test]
async fn watching_streams_the_package_then_every_change_until_deleted() {
    let dev = DevServices::start().await;
    let mut alice = dev.clients("alice").await;
    let p = create_settled(&mut alice.packages, onboarding_only("Watched package")).await;
    let mut stream =
        alice.packages.watch_package(pb::WatchPackageRequest { id: p.id.clone() }).await.unwrap().into_inner();
    let first = tokio::time::timeout(Duration::from_secs(20), stream.message()).await.unwrap().unwrap();
    assert_eq!(first, Some(p.clone()), "the package as it is now comes first");
    let preview = set_status(&mut alice.packages, &p, pb::PackageStatus::Preview).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(20), stream.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(seen, preview);
    // The installation service reports the installation itself (its outbox).
    let mut bob = dev.clients("bob").await;
    install_into_qa(&mut bob, &p.id).await;
    let counted = tokio::time::timeout(Duration::from_secs(20), stream.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(counted.installation_counts.get("qa"), Some(&1));
    alice
        .packages
        .delete_package(pb::DeletePackageRequest {
            id: p.id.clone(),
            etag: preview.etag.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(20), stream.message()).await.unwrap().unwrap();
    assert!(end.is_none(), "the stream ends when the package is deleted");
    assert_status(
        alice.packages.get_package(pb::GetPackageRequest { id: p.id.clone() }).await,
        Code::NotFound,
        "PACKAGE_NOT_FOUND",
    );
}

#[tokio::test]
async fn bad_input_gets_its_code_and_reason_and_writes_nothing() {
    let dev = DevServices::start().await;
    let mut alice = dev.clients("alice").await;
    let mut victor = dev.clients("victor").await;
    let mut bob = dev.clients("bob").await;
    let mut gina = dev.clients("gina").await;
    let mut admin = dev.clients("admin").await;
    let mut anonymous = dev.anonymous().await;
    let p = create_settled(&mut alice.packages, onboarding_only("Target package")).await;
    let preview = create_settled(&mut alice.packages, onboarding_only("Preview package")).await;
    let preview = set_status(&mut alice.packages, &preview, pb::PackageStatus::Preview).await.unwrap();
    let before = count_packages(&mut admin.packages).await;

    let create = |f: &dyn Fn(&mut pb::CreatePackageRequest)| {
        let mut body = onboarding_only("A good package name");
        f(&mut body);
        body
    };
    let update = |paths: &[&str], f: &dyn Fn(&mut pb::Package)| {
        let mut package = pb::Package { id: p.id.clone(), etag: p.etag.clone(), ..p.clone() };
        f(&mut package);
        let mask = prost_types::FieldMask { paths: paths.iter().map(|s| s.to_string()).collect() };
        pb::UpdatePackageRequest { package: Some(package), update_mask: Some(mask), request_id: String::new() }
    };
    let list = |f: &dyn Fn(&mut pb::ListPackagesRequest)| {
        let mut req = pb::ListPackagesRequest::default();
        f(&mut req);
        req
    };
    let status_to = |to: pb::PackageStatus| update(&["status"], &move |q: &mut pb::Package| q.status = to as i32);
    // The template without its groups: its references to them resolve nowhere.
    let mut given = entities(&definition(&mut alice.packages, &p.id, 0).await);
    given.objects.retain(|o| o.obj_code != "GROUP");
    given.external_references.clear();
    let foreign_token = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("pkgorg/globex\0{}", p.id))
    };
    let replace = |definition| pb::ReplacePackageRequest {
        id: p.id.clone(),
        name: "Replaced package".into(),
        definition,
        etag: p.etag.clone(),
        ..Default::default()
    };
    use pb::replace_package_request::Definition as Def;
    let cases: Vec<(&str, Result<(), Status>, Code, &str)> = vec![
        (
            "short name",
            ok(alice.packages.create_package(create(&|b| b.name = "abc".into())).await),
            Code::InvalidArgument,
            "INVALID_NAME",
        ),
        (
            "long description",
            ok(alice.packages.create_package(create(&|b| b.description = "d".repeat(4001))).await),
            Code::InvalidArgument,
            "DESCRIPTION_TOO_LONG",
        ),
        (
            "unknown type",
            ok(alice.packages.create_package(create(&|b| b.object_collections[0].obj_code = "NOPE".into())).await),
            Code::InvalidArgument,
            "UNKNOWN_TYPE",
        ),
        (
            "non-root type",
            ok(alice.packages.create_package(create(&|b| b.object_collections[0].obj_code = "TTSK".into())).await),
            Code::InvalidArgument,
            "NOT_A_ROOT_TYPE",
        ),
        (
            "malformed id",
            ok(alice
                .packages
                .create_package(create(&|b| b.object_collections[0].entities[0].id = ONBOARDING_TMPL.to_uppercase()))
                .await),
            Code::InvalidArgument,
            "INVALID_ID",
        ),
        (
            "empty collection",
            ok(alice.packages.create_package(create(&|b| b.object_collections[0].entities.clear())).await),
            Code::InvalidArgument,
            "EMPTY_COLLECTION",
        ),
        (
            "bad request id",
            ok(alice.packages.create_package(create(&|b| b.request_id = "req-1".into())).await),
            Code::InvalidArgument,
            "INVALID_REQUEST_ID",
        ),
        (
            "unknown environment",
            ok(alice.packages.create_package(create(&|b| b.source_environment = "staging".into())).await),
            Code::NotFound,
            "ENVIRONMENT_NOT_FOUND",
        ),
        (
            "another organization's environment",
            ok(gina.packages.create_package(create(&|_| {})).await),
            Code::NotFound,
            "ENVIRONMENT_NOT_FOUND",
        ),
        (
            "viewer creating",
            ok(victor.packages.create_package(create(&|_| {})).await),
            Code::PermissionDenied,
            "PERMISSION_DENIED",
        ),
        (
            "deployer creating from dev",
            ok(bob.packages.create_package(create(&|_| {})).await),
            Code::PermissionDenied,
            "PERMISSION_DENIED",
        ),
        (
            "no token",
            ok(anonymous.packages.create_package(create(&|_| {})).await),
            Code::Unauthenticated,
            "TOKEN_MISSING",
        ),
        (
            "negative page size",
            ok(alice.packages.list_packages(list(&|r| r.page_size = -1)).await),
            Code::InvalidArgument,
            "INVALID_PAGE_SIZE",
        ),
        (
            "bad page token",
            ok(alice.packages.list_packages(list(&|r| r.page_token = "!!!".into())).await),
            Code::InvalidArgument,
            "INVALID_PAGE_TOKEN",
        ),
        (
            "another organization's page token",
            ok(alice.packages.list_packages(list(&|r| r.page_token = foreign_token.clone())).await),
            Code::InvalidArgument,
            "INVALID_PAGE_TOKEN",
        ),
        (
            "unknown status filter",
            ok(alice.packages.list_packages(list(&|r| r.status = 99)).await),
            Code::InvalidArgument,
            "INVALID_STATUS",
        ),
        (
            "stale etag",
            ok(alice.packages.update_package(update(&["name"], &|q| q.etag = "stale".into())).await),
            Code::Aborted,
            "ETAG_MISMATCH",
        ),
        (
            "BUILDING to PUBLIC",
            ok(alice.packages.update_package(status_to(pb::PackageStatus::Public)).await),
            Code::FailedPrecondition,
            "INVALID_STATUS_TRANSITION",
        ),
        (
            "BUILDING to RETIRED",
            ok(alice.packages.update_package(status_to(pb::PackageStatus::Retired)).await),
            Code::FailedPrecondition,
            "INVALID_STATUS_TRANSITION",
        ),
        (
            "EXTRACTING by hand",
            ok(alice.packages.update_package(status_to(pb::PackageStatus::Extracting)).await),
            Code::FailedPrecondition,
            "INVALID_STATUS_TRANSITION",
        ),
        (
            "EXTRACTION_FAILED by hand",
            ok(alice.packages.update_package(status_to(pb::PackageStatus::ExtractionFailed)).await),
            Code::FailedPrecondition,
            "INVALID_STATUS_TRANSITION",
        ),
        (
            "PREVIEW to RETIRED",
            ok(set_status(&mut alice.packages, &preview, pb::PackageStatus::Retired).await),
            Code::FailedPrecondition,
            "INVALID_STATUS_TRANSITION",
        ),
        (
            "unknown mask path",
            ok(alice.packages.update_package(update(&["version"], &|_| {})).await),
            Code::InvalidArgument,
            "INVALID_FIELD_MASK",
        ),
        (
            "empty mask",
            ok(alice.packages.update_package(update(&[], &|_| {})).await),
            Code::InvalidArgument,
            "INVALID_FIELD_MASK",
        ),
        (
            "short name by update",
            ok(alice.packages.update_package(update(&["name"], &|q| q.name = "ab".into())).await),
            Code::InvalidArgument,
            "INVALID_NAME",
        ),
        (
            "re-extracting a PREVIEW package",
            ok(alice
                .packages
                .update_package(pb::UpdatePackageRequest {
                    package: Some(pb::Package {
                        id: preview.id.clone(),
                        object_collections: onboarding_only("x").object_collections,
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask { paths: vec!["object_collections".into()] }),
                    request_id: String::new(),
                })
                .await),
            Code::FailedPrecondition,
            "PACKAGE_NOT_EDITABLE",
        ),
        (
            "viewer updating",
            ok(victor.packages.update_package(update(&["name"], &|q| q.name = "Viewer's name".into())).await),
            Code::PermissionDenied,
            "PERMISSION_DENIED",
        ),
        (
            "malformed package id",
            ok(alice.packages.get_package(pb::GetPackageRequest { id: "not-a-uuid".into() }).await),
            Code::InvalidArgument,
            "INVALID_PACKAGE_ID",
        ),
        (
            "unknown package",
            ok(alice.packages.get_package(pb::GetPackageRequest { id: uuid::Uuid::new_v4().to_string() }).await),
            Code::NotFound,
            "PACKAGE_NOT_FOUND",
        ),
        (
            "another organization's package",
            ok(gina.packages.get_package(pb::GetPackageRequest { id: p.id.clone() }).await),
            Code::NotFound,
            "PACKAGE_NOT_FOUND",
        ),
        (
            "negative version",
            ok(alice
                .packages
                .get_package_definition(pb::GetPackageDefinitionRequest { id: p.id.clone(), version: -1 })
                .await),
            Code::InvalidArgument,
            "INVALID_VERSION",
        ),
        (
            "unknown version",
            ok(alice
                .packages
                .get_package_definition(pb::GetPackageDefinitionRequest { id: p.id.clone(), version: 9 })
                .await),
            Code::NotFound,
            "VERSION_NOT_FOUND",
        ),
        (
            "replace without a definition",
            ok(alice.packages.replace_package(replace(None)).await),
            Code::InvalidArgument,
            "MISSING_FIELD",
        ),
        (
            "replace with a dangling reference",
            ok(alice.packages.replace_package(replace(Some(Def::Entities(given.clone())))).await),
            Code::InvalidArgument,
            "UNRESOLVED_REFERENCE",
        ),
        (
            "replace with a short name",
            ok(alice
                .packages
                .replace_package(pb::ReplacePackageRequest {
                    name: "x".into(),
                    ..replace(Some(Def::ObjectCollections(pb::ObjectCollections::default())))
                })
                .await),
            Code::InvalidArgument,
            "INVALID_NAME",
        ),
        (
            "delete with a stale etag",
            ok(alice
                .packages
                .delete_package(pb::DeletePackageRequest {
                    id: p.id.clone(),
                    etag: "stale".into(),
                    request_id: String::new(),
                })
                .await),
            Code::Aborted,
            "ETAG_MISMATCH",
        ),
        (
            "viewer deleting",
            ok(victor
                .packages
                .delete_package(pb::DeletePackageRequest {
                    id: p.id.clone(),
                    etag: String::new(),
                    request_id: String::new(),
                })
                .await),
            Code::PermissionDenied,
            "PERMISSION_DENIED",
        ),
        (
            "another organization deleting",
            ok(gina
                .packages
                .delete_package(pb::DeletePackageRequest {
                    id: p.id.clone(),
                    etag: String::new(),
                    request_id: String::new(),
                })
                .await),
            Code::NotFound,
            "PACKAGE_NOT_FOUND",
        ),
        (
            "admin recording an installation",
            ok(admin
                .packages
                .record_installation(pb::RecordInstallationRequest {
                    package_id: p.id.clone(),
                    package_version: 1,
                    installation_id: "i".into(),
                    destination_environment: "qa".into(),
                    request_id: String::new(),
                })
                .await),
            Code::PermissionDenied,
            "PERMISSION_DENIED",
        ),
    ];
    assert!(cases.len() >= 15);
    for (label, result, code, reason) in cases {
        let status = result.expect_err(label);
        assert_eq!(status.code(), code, "{label}: {status:?}");
        assert_eq!(reason_of(&status).as_deref(), Some(reason), "{label}: {status:?}");
    }
    assert_eq!(count_packages(&mut admin.packages).await, before, "no package was created or deleted");
    assert_eq!(get(&mut alice.packages, &p.id).await, p, "the target package is unchanged");
    assert_eq!(get(&mut alice.packages, &preview.id).await, preview);
    assert_eq!(
        definition(&mut alice.packages, &p.id, 0).await.len(),
        definition(&mut alice.packages, &p.id, 1).await.len()
    );
}
