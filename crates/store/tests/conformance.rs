//! One suite every implementation of the storage traits passes: objects with their
//! indexes, counts and revisions; atomic commits however large; records and their
//! indexes; listings that resume where they stopped. New backends join `installation_stores`.
mod common;

use std::sync::Arc;

use chrono::Utc;
use promotion_core::audit::{AuditEvent, AuditFilter};
use promotion_core::cursor::PageRequest;
use promotion_core::identity::Identity;
use promotion_core::notify::{Attempt, Delivery, DeliveryStatus, Subscription};
use promotion_core::objects::{ConfigObject, ObjectKey, Reference};
use promotion_core::policy::EnvironmentPolicy;
use promotion_core::promotion::{Approval, PromotionRecord, PromotionStatus};
use promotion_core::records::{HistoryEntry, InstallationRecord, InstallationStatus};
use promotion_store::installation::{EnvWrite, InstallationFilter, ObjectQuery, Record};
use promotion_store::pg_scratch::ScratchSchema;
use promotion_store::shared::{IdempotencyRecord, RequestKey};
use promotion_store::InstallationStore;

use common::obj;

struct Backend {
    name: &'static str,
    store: Arc<dyn InstallationStore>,
    _dir: Option<tempfile::TempDir>,
    _schema: Option<ScratchSchema>,
}

fn installation_stores() -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let sled = promotion_store::open_installation_store(dir.path()).unwrap();
    let mut backends = vec![
        Backend { name: "memory", store: promotion_store::memory_installation_store(), _dir: None, _schema: None },
        Backend { name: "sled", store: sled, _dir: Some(dir), _schema: None },
    ];
    if let Some(schema) = ScratchSchema::create() {
        let store = promotion_store::open_installation_store_pg(&schema.url()).unwrap();
        backends.push(Backend { name: "postgres", store, _dir: None, _schema: Some(schema) });
    }
    backends
}

async fn commit(store: &dyn InstallationStore, env: &str, write: EnvWrite) -> u64 {
    store.lock(env).await.unwrap().commit(write).await.unwrap().revision
}

fn all() -> PageRequest {
    PageRequest::first(10_000)
}

#[tokio::test]
async fn writes_maintain_indexes_counts_and_revisions() {
    for b in installation_stores() {
        let s = b.store.as_ref();
        let group = obj("GROUP", 1, "Ops");
        let mut task = obj("TTSK", 2, "Kick-off");
        task.parent = Some(ObjectKey::new("TMPL", format!("{:032x}", 3)));
        task.references.push(Reference {
            field: "group".into(),
            obj_code: "GROUP".into(),
            id: group.id.clone(),
            optional: false,
        });
        let rev = commit(s, "dev", EnvWrite { upserts: vec![group.clone(), task.clone()], ..Default::default() }).await;
        assert_eq!(rev, 1, "{}", b.name);
        assert_eq!(s.ids_named("dev", "GROUP", "Ops").await.unwrap(), vec![group.id.clone()], "{}", b.name);
        assert_eq!(s.referrers("dev", &group.id).await.unwrap(), vec![task.key()], "{}", b.name);
        assert_eq!(s.children("dev", &format!("{:032x}", 3)).await.unwrap(), vec![task.key()], "{}", b.name);
        let stored = s.get_by_id("dev", &task.id).await.unwrap().unwrap();
        assert_eq!((stored.name.as_str(), stored.revision), ("Kick-off", 1), "{}", b.name);
        assert!(stored.update_time.is_some(), "{}", b.name);

        // Renaming moves the name index; deleting removes every index entry.
        let write =
            EnvWrite { upserts: vec![obj("GROUP", 1, "Operations")], deletes: vec![task.key()], ..Default::default() };
        assert_eq!(commit(s, "dev", write).await, 2, "{}", b.name);
        assert!(s.ids_named("dev", "GROUP", "Ops").await.unwrap().is_empty(), "{}", b.name);
        assert!(s.referrers("dev", &group.id).await.unwrap().is_empty(), "{}", b.name);
        assert!(s.get_by_id("dev", &task.id).await.unwrap().is_none(), "{}", b.name);
        let state = s.env_state("dev").await.unwrap();
        assert_eq!((state.counts.get("GROUP"), state.counts.get("TTSK")), (Some(&1), None), "{}", b.name);
        assert_eq!(s.env_state("qa").await.unwrap().revision, 0, "{}", b.name);

        // Restores put a version back exactly as it was, revision included.
        let restore = EnvWrite { restores: vec![stored.clone()], ..Default::default() };
        commit(s, "dev", restore).await;
        assert_eq!(s.get("dev", &task.key()).await.unwrap(), Some(stored), "{}", b.name);
    }
}

#[tokio::test]
async fn a_commit_too_large_for_one_batch_is_whole() {
    for b in installation_stores() {
        let s = b.store.as_ref();
        let objects: Vec<ConfigObject> = (0..8_000).map(|n| obj("ROLE", n + 1, &format!("Role {n}"))).collect();
        commit(s, "qa", EnvWrite { upserts: objects, ..Default::default() }).await;
        assert_eq!(s.env_state("qa").await.unwrap().counts["ROLE"], 8_000, "{}", b.name);
        let page = s.list_objects("qa", &ObjectQuery { obj_code: "ROLE".into(), ..Default::default() }, &all()).await;
        assert_eq!(page.unwrap().items.len(), 8_000, "{}", b.name);
    }
}

#[tokio::test]
async fn object_listings_filter_and_resume_where_they_stopped() {
    for b in installation_stores() {
        let s = b.store.as_ref();
        let objects: Vec<ConfigObject> =
            (1..=7).map(|n| obj("ROLE", n, if n % 2 == 0 { "Even" } else { "Odd" })).collect();
        commit(s, "dev", EnvWrite { upserts: objects, ..Default::default() }).await;
        let query = ObjectQuery { obj_code: "ROLE".into(), name_prefix: "Od".into(), ..Default::default() };
        let mut page = PageRequest::first(3);
        let mut seen = Vec::new();
        loop {
            let found = s.list_objects("dev", &query, &page).await.unwrap();
            seen.extend(found.items.into_iter().map(|o| o.id));
            match found.next {
                Some(next) => page.after = Some(next),
                None => break,
            }
        }
        let odd: Vec<String> = [1, 3, 5, 7].iter().map(|n| format!("{n:032x}")).collect();
        assert_eq!(seen, odd, "{}", b.name);
        let foreign = PageRequest { size: 3, after: Some(promotion_core::cursor::Position::from_bytes(b"x".to_vec())) };
        assert!(s.list_objects("dev", &query, &foreign).await.is_err(), "{}: a foreign position is refused", b.name);
    }
}

fn installation(id: u128, package: &str, destination: &str, status: InstallationStatus) -> InstallationRecord {
    InstallationRecord {
        id: uuid::Uuid::from_u128(id).to_string(),
        organization: "acme".into(),
        package_id: package.into(),
        package_version: 1,
        source_environment: "dev".into(),
        destination: destination.into(),
        pre_run_id: String::new(),
        status,
        plan: Default::default(),
        statuses: vec![],
        summary: Default::default(),
        entry_count: 0,
        create_time: Utc::now(),
        finish_time: None,
        created_by: "bob".into(),
        failure_reason: String::new(),
        prune_children: false,
        destination_revision: 1,
        rollback_time: None,
        rolled_back_by: String::new(),
        promotion_request_id: String::new(),
    }
}

#[tokio::test]
async fn installation_records_list_newest_first_by_filter_and_resume() {
    for b in installation_stores() {
        let s = b.store.as_ref();
        let records: Vec<Record> = (1..=6u128)
            .map(|n| {
                let dest = if n % 2 == 0 { "qa" } else { "prod" };
                let status = if n == 5 { InstallationStatus::Installing } else { InstallationStatus::Installed };
                Record::Installation {
                    record: Box::new(installation(n, "p1", dest, status)),
                    with_plan: true,
                    undo: None,
                }
            })
            .collect();
        s.append(records).await.unwrap();
        let filter = InstallationFilter { organization: "acme".into(), destination: "qa".into(), ..Default::default() };
        let visible = |_: &InstallationRecord| true;
        let first = s.list_installations(&filter, &visible, &PageRequest::first(2)).await.unwrap();
        let ids: Vec<u128> = first.items.iter().map(|r| uuid::Uuid::parse_str(&r.id).unwrap().as_u128()).collect();
        assert_eq!(ids, vec![6, 4], "{}", b.name);
        let rest = s.list_installations(&filter, &visible, &PageRequest { size: 2, after: first.next }).await.unwrap();
        assert_eq!(rest.items.len(), 1, "{}", b.name);
        assert!(rest.next.is_none(), "{}", b.name);
        assert_eq!(s.unfinished_installations().await.unwrap().len(), 1, "{}", b.name);
        assert!(s.installed_before("p1", "qa").await.unwrap(), "{}", b.name);
        assert!(!s.installed_before("p2", "qa").await.unwrap(), "{}", b.name);
    }
}

fn promotion(id: u128, status: PromotionStatus) -> PromotionRecord {
    PromotionRecord {
        id: uuid::Uuid::from_u128(id).to_string(),
        organization: "acme".into(),
        package_id: "p1".into(),
        package_version: 1,
        package_name: "Package".into(),
        source_environment: "dev".into(),
        target_environment: "qa".into(),
        status,
        comment: String::new(),
        requested_by: "alice".into(),
        create_time: Utc::now(),
        update_time: Utc::now(),
        is_update: false,
        decided_by: String::new(),
        decision_comment: String::new(),
        installation_id: String::new(),
        last_error: String::new(),
        pre_run_id: String::new(),
        installation_status: None,
        approvals: vec![],
        required_approvals: 1,
    }
}

#[tokio::test]
async fn the_pending_index_follows_a_request_status() {
    for b in installation_stores() {
        let s = b.store.as_ref();
        s.append(vec![Record::Promotion(Box::new(promotion(1, PromotionStatus::ToBeValidated)))]).await.unwrap();
        let pending = s.pending_promotion("qa", "p1").await.unwrap();
        assert_eq!(pending, Some(uuid::Uuid::from_u128(1).to_string()), "{}", b.name);
        s.append(vec![Record::Promotion(Box::new(promotion(1, PromotionStatus::Rejected)))]).await.unwrap();
        assert_eq!(s.pending_promotion("qa", "p1").await.unwrap(), None, "{}", b.name);
        let all_visible = |_: &PromotionRecord| true;
        let page = s.list_promotions("acme", &all_visible, &all()).await.unwrap();
        assert_eq!(page.items.len(), 1, "{}", b.name);
        assert!(s.list_promotions("globex", &all_visible, &all()).await.unwrap().items.is_empty(), "{}", b.name);
    }
}

#[tokio::test]
async fn a_request_keeps_its_plan_and_what_became_of_its_installation() {
    for b in installation_stores() {
        let s = b.store.as_ref();
        let mut installation = installation(7, "p1", "qa", InstallationStatus::Installed);
        installation.promotion_request_id = uuid::Uuid::from_u128(2).to_string();
        let mut accepted = promotion(2, PromotionStatus::Accepted);
        accepted.pre_run_id = uuid::Uuid::from_u128(9).to_string();
        accepted.installation_id = installation.id.clone();
        accepted.installation_status = Some(InstallationStatus::RolledBack);
        s.append(vec![
            Record::Installation { record: Box::new(installation.clone()), with_plan: true, undo: None },
            Record::Promotion(Box::new(accepted.clone())),
        ])
        .await
        .unwrap();
        let read = s.promotion(&accepted.id).await.unwrap().unwrap();
        assert_eq!((read.pre_run_id, read.installation_status), (accepted.pre_run_id, accepted.installation_status));
        let read = s.installation(&installation.id, false).await.unwrap().unwrap();
        assert_eq!(read.promotion_request_id, installation.promotion_request_id, "{}", b.name);
    }
}

#[tokio::test]
async fn a_request_keeps_its_approvals_in_order() {
    for b in installation_stores() {
        let s = b.store.as_ref();
        let mut r = promotion(3, PromotionStatus::ToBeValidated);
        r.required_approvals = 2;
        r.approvals = ["bob", "admin"]
            .iter()
            .map(|who| Approval { approver: (*who).into(), time: Utc::now(), comment: format!("{who} agrees") })
            .collect();
        s.append(vec![Record::Promotion(Box::new(r.clone()))]).await.unwrap();
        let read = s.promotion(&r.id).await.unwrap().unwrap();
        assert_eq!((read.approvals, read.required_approvals), (r.approvals, 2), "{}", b.name);
    }
}

#[tokio::test]
async fn a_policy_is_absent_until_stored_and_the_last_one_stored_wins() {
    for b in installation_stores() {
        let s = b.store.as_ref();
        assert_eq!(s.policy("prod").await.unwrap(), None, "{}", b.name);
        let mut policy = EnvironmentPolicy { required_approvals: 2, ..EnvironmentPolicy::defaults("prod") };
        policy.revision = 1;
        let mut write = EnvWrite::default();
        write.record(Record::Policy(Box::new(policy.clone())));
        commit(s, "prod", write).await;
        assert_eq!(s.policy("prod").await.unwrap().as_ref(), Some(&policy), "{}", b.name);
        policy = EnvironmentPolicy { required_approvals: 3, allow_self_approval: true, revision: 2, ..policy };
        s.append(vec![Record::Policy(Box::new(policy.clone()))]).await.unwrap();
        assert_eq!(s.policy("prod").await.unwrap(), Some(policy), "{}", b.name);
        assert_eq!(s.policy("qa").await.unwrap(), None, "another environment keeps the defaults: {}", b.name);
    }
}

#[tokio::test]
async fn subscriptions_and_deliveries_read_back_and_only_pending_due_ones_are_due() {
    for b in installation_stores() {
        let s = b.store.as_ref();
        let sub = Subscription {
            id: "s1".into(),
            organization: "acme".into(),
            environment: String::new(),
            url: "http://127.0.0.1:1/".into(),
            events: vec!["PROMOTION_REQUESTED".into()],
            secret: "shh".into(),
            create_time: Utc::now(),
            created_by: "admin".into(),
        };
        let first = Delivery::new(&sub, "PROMOTION_REQUESTED", "qa", serde_json::json!({}));
        let mut later = Delivery::new(&sub, "PROMOTION_REQUESTED", "qa", serde_json::json!({}));
        later.next_attempt = Utc::now() + chrono::Duration::hours(1);
        s.append(vec![
            Record::Subscription(Box::new(sub.clone())),
            Record::Delivery(Box::new(first.clone())),
            Record::Delivery(Box::new(later.clone())),
        ])
        .await
        .unwrap();
        assert_eq!(s.subscriptions("acme").await.unwrap(), std::slice::from_ref(&sub), "{}", b.name);
        assert!(s.subscriptions("globex").await.unwrap().is_empty(), "{}", b.name);
        let due = s.due_deliveries(Utc::now(), 10).await.unwrap();
        assert_eq!(due.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), [first.id.as_str()], "{}", b.name);
        let mut delivered = first.clone();
        delivered.record(Attempt { time: Utc::now(), status_code: 200, latency_ms: 2, error: String::new() }, 0.0);
        s.append(vec![Record::Delivery(Box::new(delivered))]).await.unwrap();
        assert!(s
            .due_deliveries(Utc::now() + chrono::Duration::hours(2), 10)
            .await
            .unwrap()
            .iter()
            .all(|d| d.id == later.id));
        let everything = |_: &Delivery| true;
        let listed = s.list_deliveries("acme", &everything, &all()).await.unwrap().items;
        assert_eq!(listed.len(), 2, "{}", b.name);
        assert_eq!(
            (listed[0].id.as_str(), listed[1].status),
            (later.id.as_str(), DeliveryStatus::Delivered),
            "newest first"
        );
        s.append(vec![Record::SubscriptionRemoved { id: sub.id.clone() }]).await.unwrap();
        assert_eq!(s.subscription(&sub.id).await.unwrap(), None, "{}", b.name);
    }
}

#[tokio::test]
async fn idempotency_and_audit_records_read_back() {
    for b in installation_stores() {
        let s = b.store.as_ref();
        let key = RequestKey { organization: "acme".into(), subject: "bob".into(), request_id: "r1".into() };
        let record = IdempotencyRecord {
            key: key.clone(),
            method: "CreatePreRun".into(),
            fingerprint: "f".into(),
            resource_id: "x".into(),
            response: None,
        };
        let caller = Identity { subject: "bob".into(), organization: "acme".into(), bindings: vec![], expires_at: 0 };
        let events: Vec<Record> = (0..5)
            .map(|i| {
                Record::audit(AuditEvent::new("test", &caller, if i % 2 == 0 { "qa" } else { "dev" }, "X", ("r", "1")))
            })
            .collect();
        s.append(vec![Record::Idempotency(record.clone())]).await.unwrap();
        s.append(events).await.unwrap();
        assert_eq!(s.request(&key).await.unwrap(), Some(record), "{}", b.name);
        let filter = AuditFilter { organization: "acme".into(), environment: "qa".into(), ..Default::default() };
        let first = s.list_audit(&filter, &PageRequest::first(2)).await.unwrap();
        assert_eq!(first.items.len(), 2, "{}", b.name);
        let rest = s.list_audit(&filter, &PageRequest { size: 2, after: first.next }).await.unwrap();
        assert_eq!(rest.items.len(), 1, "{}", b.name);
    }
}

#[tokio::test]
async fn secret_keys_are_generated_once_and_survive_a_restart() {
    for b in installation_stores() {
        let s = b.store.as_ref();
        let key = s.secret_key("page-tokens").await.unwrap();
        assert!(key.len() >= 32, "{}", b.name);
        assert_eq!(s.secret_key("page-tokens").await.unwrap(), key, "{}", b.name);
        assert_ne!(s.secret_key("another").await.unwrap(), key, "{}", b.name);
    }
    let dir = tempfile::tempdir().unwrap();
    let first = promotion_store::open_installation_store(dir.path()).unwrap().secret_key("page-tokens").await.unwrap();
    let again = promotion_store::open_installation_store(dir.path()).unwrap().secret_key("page-tokens").await.unwrap();
    assert_eq!(first, again, "the key survives a restart");
    let packages = promotion_store::open_package_store(dir.path()).unwrap();
    let key = packages.secret_key("page-tokens").await.unwrap();
    assert_eq!(packages.secret_key("page-tokens").await.unwrap(), key);
    let memory = promotion_store::memory_package_store();
    assert_eq!(memory.secret_key("page-tokens").await.unwrap().len(), 32);
}

fn history(source_id: u32, target_id: u32, image: Option<ConfigObject>) -> HistoryEntry {
    HistoryEntry {
        source_environment: "dev".into(),
        source_id: format!("{source_id:032x}"),
        obj_code: "GROUP".into(),
        target_id: format!("{target_id:032x}"),
        written_revision: 1,
        created_by_promotion: true,
        installation_id: "i".into(),
        installed: image,
    }
}

#[tokio::test]
async fn history_lists_one_environment_with_images_and_resumes() {
    for b in installation_stores() {
        let s = b.store.as_ref();
        let image = obj("GROUP", 100, "Ops");
        let records = vec![
            Record::HistoryPut { env: "qa".into(), entry: history(2, 102, None) },
            Record::HistoryPut { env: "qa".into(), entry: history(1, 100, Some(image.clone())) },
            Record::HistoryPut { env: "qa".into(), entry: history(3, 103, None) },
            Record::HistoryPut { env: "qa2".into(), entry: history(4, 104, None) },
        ];
        commit(s, "qa", EnvWrite { records, ..Default::default() }).await;
        let first = s.list_history("qa", &PageRequest::first(2)).await.unwrap();
        let ids: Vec<&str> = first.items.iter().map(|h| h.target_id.as_str()).collect();
        assert_eq!(ids, [format!("{:032x}", 100), format!("{:032x}", 102)], "{}", b.name);
        assert_eq!(first.items[0].installed.as_ref(), Some(&image), "{}: the listing carries the image", b.name);
        let rest = s.list_history("qa", &PageRequest { size: 2, after: first.next }).await.unwrap();
        let ids: Vec<&str> = rest.items.iter().map(|h| h.target_id.as_str()).collect();
        assert_eq!((ids, rest.next), (vec![format!("{:032x}", 103).as_str()], None), "{}", b.name);

        let full = s.history("qa", "dev", &format!("{:032x}", 1)).await.unwrap().unwrap();
        assert_eq!(full.installed, Some(image), "{}", b.name);
        let by_target = s.history_by_target("qa", &format!("{:032x}", 100)).await.unwrap().unwrap();
        assert_eq!(by_target, full.without_image(), "{}", b.name);
        let remove = Record::HistoryRemove { env: "qa".into(), entry: full.without_image() };
        commit(s, "qa", EnvWrite { records: vec![remove], ..Default::default() }).await;
        assert_eq!(s.list_history("qa", &all()).await.unwrap().items.len(), 2, "{}", b.name);
        assert!(s.history_by_target("qa", &format!("{:032x}", 100)).await.unwrap().is_none(), "{}", b.name);
    }
}
