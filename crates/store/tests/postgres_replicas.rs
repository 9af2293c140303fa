//! What PostgreSQL adds to the conformance suite: several stores on one database behave as
//! replicas of one service. Each store here has its own in-process locks, so only the
//! database can keep them from losing each other's updates.
mod common;

use std::sync::Arc;

use chrono::Utc;
use promotion_core::objects::{ConfigObject, ObjectKey};
use promotion_core::package::{Metadata, Package, Status};
use promotion_store::installation::EnvWrite;
use promotion_store::package::{LockKey, PackageRecord};
use promotion_store::pg_scratch::ScratchSchema;
use promotion_store::{InstallationStore, PackageStore};

use common::obj;

fn installation_replicas(schema: &ScratchSchema, n: usize) -> Vec<Arc<dyn InstallationStore>> {
    (0..n).map(|_| promotion_store::open_installation_store_pg(&schema.url()).unwrap()).collect()
}

/// Reads a counter kept in an object's name and writes it back one higher, under the lock.
async fn increment(store: &dyn InstallationStore, env: &str) {
    let tx = store.lock(env).await.unwrap();
    let key = ObjectKey::new("COUNTER", format!("{:032x}", 1));
    let n: u32 = match store.get(env, &key).await.unwrap() {
        Some(o) => o.name.parse().unwrap(),
        None => 0,
    };
    tx.commit(EnvWrite { upserts: vec![obj("COUNTER", 1, &(n + 1).to_string())], ..Default::default() }).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_writing_one_environment_lose_no_update() {
    let Some(schema) = ScratchSchema::create() else { return };
    let replicas = installation_replicas(&schema, 2);
    let tasks: Vec<_> = replicas
        .iter()
        .map(|store| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..20 {
                    increment(store.as_ref(), "qa").await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let counter = replicas[1].get("qa", &ObjectKey::new("COUNTER", format!("{:032x}", 1))).await.unwrap().unwrap();
    assert_eq!(counter.name, "40", "every read-modify-write saw the one before it");
    assert_eq!(replicas[0].env_state("qa").await.unwrap().revision, 40, "one revision per commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_replica_never_sees_part_of_a_large_commit() {
    let Some(schema) = ScratchSchema::create() else { return };
    let replicas = installation_replicas(&schema, 2);
    const N: u32 = 30_000;
    let writer = replicas[0].clone();
    let commit = tokio::spawn(async move {
        let objects: Vec<ConfigObject> = (1..=N).map(|n| obj("ROLE", n, &format!("Role {n}"))).collect();
        writer.lock("prod").await.unwrap().commit(EnvWrite { upserts: objects, ..Default::default() }).await.unwrap();
    });
    let reader = replicas[1].as_ref();
    let (first, last) = (ObjectKey::new("ROLE", format!("{:032x}", 1)), ObjectKey::new("ROLE", format!("{N:032x}")));
    let mut observations = 0;
    loop {
        let done = commit.is_finished();
        // Rows are written in key order: a commit applied in pieces would show the first
        // object before the last.
        let first_seen = reader.get("prod", &first).await.unwrap().is_some();
        let last_seen = reader.get("prod", &last).await.unwrap().is_some();
        assert!(!first_seen || last_seen, "saw the first object of the commit without its last");
        let counts = reader.env_state("prod").await.unwrap().counts;
        assert!(matches!(counts.get("ROLE"), None | Some(&30_000)), "counts are all or nothing: {counts:?}");
        observations += 1;
        if done {
            break;
        }
        tokio::task::yield_now().await;
    }
    commit.await.unwrap();
    assert!(reader.get("prod", &first).await.unwrap().is_some());
    assert!(observations > 1, "the reader looked while the commit ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_once_and_agree_on_secrets() {
    let Some(schema) = ScratchSchema::create() else { return };
    let url = schema.url();
    let opened: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || promotion_store::open_installation_store_pg(&url).unwrap())
        })
        .collect();
    let replicas: Vec<_> = opened.into_iter().map(|t| t.join().unwrap()).collect();
    let keys = join_all(replicas.iter().map(|r| {
        let r = r.clone();
        tokio::spawn(async move { r.secret_key("page-tokens").await.unwrap() })
    }))
    .await;
    assert!(keys.iter().all(|k| k == &keys[0]), "one key for every replica");
    let again = promotion_store::open_installation_store_pg(&url).unwrap();
    assert_eq!(again.secret_key("page-tokens").await.unwrap(), keys[0], "and after a restart");
}

async fn join_all<T>(handles: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await.unwrap());
    }
    out
}

fn package(id: &str) -> Package {
    let now = Utc::now();
    Package {
        id: id.into(),
        name: "Counted".into(),
        description: String::new(),
        status: Status::Building,
        version: 1,
        organization: "acme".into(),
        source_environment: "dev".into(),
        object_collections: vec![],
        metadata: Metadata::default(),
        entity_counts: Default::default(),
        digest: String::new(),
        installation_counts: Default::default(),
        is_private: false,
        create_time: now,
        created_by: "alice".into(),
        update_time: now,
        publish_time: None,
        retire_time: None,
        failure_reason: String::new(),
        warnings: vec![],
        revision: 1,
        sequence: 0,
        has_definition: false,
        extraction: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn package_replicas_serialise_changes_of_one_package() {
    let Some(schema) = ScratchSchema::create() else { return };
    let replicas: Vec<Arc<dyn PackageStore>> =
        (0..2).map(|_| promotion_store::open_package_store_pg(&schema.url()).unwrap()).collect();
    replicas[0].commit(None, vec![PackageRecord::Package(Box::new(package("p1")))]).await.unwrap();
    let tasks: Vec<_> = replicas
        .iter()
        .map(|store| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..20 {
                    let lock = store.lock(LockKey::Package("p1".into())).await.unwrap();
                    let mut p = store.package("p1").await.unwrap().unwrap();
                    p.sequence += 1;
                    store.commit(Some(lock), vec![PackageRecord::Package(Box::new(p))]).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(replicas[1].package("p1").await.unwrap().unwrap().sequence, 40);
}

#[tokio::test]
async fn an_unreachable_database_is_unavailable() {
    // Nothing listens on port 1 of the loopback address: the connection is refused at once.
    let Err(e) = promotion_store::open_installation_store_pg("postgres://postgres@127.0.0.1:1/none") else {
        panic!("a store opened on a port nothing listens on");
    };
    assert!(e.is_unavailable(), "{e}");
}
