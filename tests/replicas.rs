//! Two processes of each service on one PostgreSQL database (`promotion dev
//! --database-url` twice): what one replica writes, the other reads; installations into
//! one environment through both are serialised by the database; a request id retried on
//! the other replica yields the first result.
mod common;

use common::*;
use promotion_api::v1 as pb;

/// Two replicas on a fresh schema: the first seeds the demo data, the second finds it.
async fn replicas() -> Option<(ScratchSchema, DevServices, DevServices)> {
    let schema = ScratchSchema::create()?;
    let a = DevServices::start_replica(&schema.url()).await;
    let b = DevServices::start_replica(&schema.url()).await;
    Some((schema, a, b))
}

fn install(package_id: &str, request_id: &str) -> pb::CreateInstallationRequest {
    pb::CreateInstallationRequest {
        package_id: package_id.into(),
        destination_environment: "qa".into(),
        request_id: request_id.into(),
        ..Default::default()
    }
}

async fn installations_of(c: &mut Clients, package_id: &str) -> Vec<pb::Installation> {
    let req = pb::ListInstallationsRequest { package_id: package_id.into(), page_size: 100, ..Default::default() };
    c.installations.list_installations(req).await.unwrap().into_inner().installations
}

async fn objects_named(c: &mut Clients, code: &str, name: &str) -> usize {
    let req = pb::ListObjectsRequest {
        environment: "qa".into(),
        obj_code: code.into(),
        page_size: 1000,
        ..Default::default()
    };
    c.environments.list_objects(req).await.unwrap().into_inner().objects.iter().filter(|o| o.name == name).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_replica_writes_the_other_reads() {
    let Some((_schema, a, b)) = replicas().await else { return };
    let mut alice_a = a.clients("alice").await;
    let mut alice_b = b.clients("alice").await;
    let p = group_package(&mut alice_a, "Made on replica A", &[pb::PackageStatus::Preview]).await;
    let read = alice_b.packages.get_package(pb::GetPackageRequest { id: p.id.clone() }).await.unwrap().into_inner();
    assert_eq!((read.name.as_str(), read.status), ("Made on replica A", pb::PackageStatus::Preview as i32));
    // The demo data was seeded once, by the first replica.
    let groups = pb::ListObjectsRequest { environment: "dev".into(), obj_code: "GROUP".into(), ..Default::default() };
    let on_a = alice_a.environments.list_objects(groups.clone()).await.unwrap().into_inner().objects;
    let on_b = alice_b.environments.list_objects(groups).await.unwrap().into_inner().objects;
    assert_eq!(on_a, on_b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_installations_through_two_replicas_duplicate_nothing_and_lose_nothing() {
    let Some((_schema, a, b)) = replicas().await else { return };
    let mut alice = a.clients("alice").await;
    let p = group_package(&mut alice, "Raced", &[pb::PackageStatus::Preview]).await;
    let group = p.object_collections[0].entities[0].id.clone();
    let (mut bob_a, mut bob_b) = (a.clients("bob").await, b.clients("bob").await);
    let (first, second) = tokio::join!(
        bob_a.installations.create_installation(install(&p.id, "7d1e0000-0000-4000-8000-00000000000a")),
        bob_b.installations.create_installation(install(&p.id, "7d1e0000-0000-4000-8000-00000000000b")),
    );
    let (first, second) = (first.unwrap().into_inner(), second.unwrap().into_inner());
    assert_ne!(first.id, second.id, "two requests, two installations");
    for i in [&first, &second] {
        assert_eq!(i.status, pb::InstallationStatus::Installed as i32, "{i:?}");
    }
    // Serialised: the second planned against what the first wrote, so it created nothing.
    let mut revisions = [first.destination_revision, second.destination_revision];
    revisions.sort();
    assert_eq!(revisions[1], revisions[0] + 1, "one commit after the other: {revisions:?}");
    let source = alice
        .environments
        .get_object(pb::GetObjectRequest { environment: "dev".into(), obj_code: "GROUP".into(), id: group })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(objects_named(&mut bob_b, "GROUP", &source.name).await, 1, "no duplicate of the group in qa");
    assert_eq!(installations_of(&mut bob_a, &p.id).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_retried_on_the_other_replica_yields_the_first_result() {
    let Some((_schema, a, b)) = replicas().await else { return };
    let mut alice = a.clients("alice").await;
    let p = group_package(&mut alice, "Retried", &[pb::PackageStatus::Preview]).await;
    let (mut bob_a, mut bob_b) = (a.clients("bob").await, b.clients("bob").await);
    let request_id = "7d1e0000-0000-4000-8000-0000000000c1";
    // At the same time through both, as a client that timed out and retried elsewhere.
    let (first, retry) = tokio::join!(
        bob_a.installations.create_installation(install(&p.id, request_id)),
        bob_b.installations.create_installation(install(&p.id, request_id)),
    );
    let (first, retry) = (first.unwrap().into_inner(), retry.unwrap().into_inner());
    assert_eq!(first.id, retry.id, "one installation for one request id");
    let later = bob_b.installations.create_installation(install(&p.id, request_id)).await.unwrap().into_inner();
    assert_eq!(later.id, first.id);
    assert_eq!(installations_of(&mut bob_b, &p.id).await.len(), 1);
}
