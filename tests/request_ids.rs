//! `request_id` on every mutating RPC, with one behaviour: a replay with the same id and body
//! returns the first response (and writes nothing more); the same id with another body is
//! INVALID_ARGUMENT `REQUEST_ID_REUSED`; a malformed id is INVALID_ARGUMENT
//! `INVALID_REQUEST_ID`. The descriptor set is checked so that no mutating RPC escapes the
//! table.
mod common;

use common::*;
use promotion_api::v1 as pb;
use std::future::Future;
use tonic::{Code, Status};

/// Every mutating RPC; the table below covers each.
const MUTATING: &[&str] = &[
    "CreatePackage",
    "ReplacePackage",
    "UpdatePackage",
    "DeletePackage",
    "RecordInstallation",
    "PutObjects",
    "DeleteObject",
    "UpdateEnvironmentPolicy",
    "CreatePreRun",
    "CreateInstallation",
    "RollbackInstallation",
    "RequestPromotion",
    "AcceptPromotionRequest",
    "AttachPreRun",
    "RejectPromotionRequest",
    "CancelPromotionRequest",
    "CreateSubscription",
    "DeleteSubscription",
];

/// RPCs that change nothing: reads, listings, diffs, streams, and IssueToken (it stores
/// nothing).
fn is_read(method: &str) -> bool {
    ["Get", "List", "Watch", "Export", "Diff", "WhoAmI", "IssueToken", "Check"].iter().any(|p| method.starts_with(p))
}

#[test]
fn every_mutating_rpc_takes_a_request_id_and_is_in_the_table() {
    let pool = prost_reflect::DescriptorPool::decode(promotion_api::FILE_DESCRIPTOR_SET).unwrap();
    for service in pool.services() {
        for method in service.methods() {
            if is_read(method.name()) {
                continue;
            }
            assert!(MUTATING.contains(&method.name()), "{} is mutating but not in the request-id table", method.name());
            assert!(
                method.input().get_field_by_name("request_id").is_some(),
                "{}.{} takes no request_id",
                service.name(),
                method.name()
            );
        }
    }
}

fn rid(n: u32) -> String {
    format!("7d1e0000-0000-4000-8000-{n:012}")
}

/// Calls a mutating RPC four ways: first, replayed, with another body, with a malformed id.
/// `call(request_id, other_body)` returns the part of the response that identifies it.
async fn check<F, Fut>(name: &str, n: u32, mut call: F) -> String
where
    F: FnMut(String, bool) -> Fut,
    Fut: Future<Output = Result<String, Status>>,
{
    let id = rid(n);
    let first = call(id.clone(), false).await.unwrap_or_else(|s| panic!("{name}: first call: {s:?}"));
    let again = call(id.clone(), false).await.unwrap_or_else(|s| panic!("{name}: replay: {s:?}"));
    assert_eq!(again, first, "{name}: a replay returns the first response");
    let other = call(id.clone(), true).await;
    assert_status(other, Code::InvalidArgument, "REQUEST_ID_REUSED");
    let malformed = call("not-a-uuid".into(), true).await;
    assert_status(malformed, Code::InvalidArgument, "INVALID_REQUEST_ID");
    first
}

fn mask(path: &str) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask { paths: vec![path.into()] })
}

async fn new_package(c: &mut Clients, name: &str) -> pb::Package {
    let req = pb::CreatePackageRequest { name: name.into(), source_environment: "dev".into(), ..Default::default() };
    c.packages.create_package(req).await.unwrap().into_inner()
}

/// A PREVIEW package of one dev group, ready to install into qa.
async fn installable(c: &mut Clients, name: &str) -> pb::Package {
    group_package(c, name, &[pb::PackageStatus::Preview]).await
}

#[tokio::test]
async fn a_replay_returns_the_first_response_and_another_body_is_refused() {
    let services = DevServices::start().await;
    let mut admin = services.clients("admin").await;
    let mut alice = services.clients("alice").await;
    let mut bob = services.clients("bob").await;
    let internal = services.clients("installation-service").await;

    // Package service.
    let c = admin.packages.clone();
    let created = check("CreatePackage", 1, |request_id, other| {
        let mut c = c.clone();
        let name = if other { "request id b" } else { "request id a" };
        async move {
            let req = pb::CreatePackageRequest {
                name: name.into(),
                source_environment: "dev".into(),
                request_id,
                ..Default::default()
            };
            c.create_package(req).await.map(|r| r.into_inner().id)
        }
    })
    .await;
    let listed = admin.packages.list_packages(pb::ListPackagesRequest { page_size: 1000, ..Default::default() });
    let named: Vec<_> =
        listed.await.unwrap().into_inner().packages.into_iter().filter(|p| p.name.starts_with("request id")).collect();
    assert_eq!(named.len(), 1, "one package, whatever the replays");

    check("ReplacePackage", 2, |request_id, other| {
        let (mut c, id) = (c.clone(), created.clone());
        async move {
            let req = pb::ReplacePackageRequest {
                id,
                name: if other { "replaced b".into() } else { "replaced a".into() },
                definition: Some(pb::replace_package_request::Definition::Entities(Default::default())),
                request_id,
                ..Default::default()
            };
            c.replace_package(req).await.map(|r| format!("{} v{}", r.get_ref().id, r.get_ref().version))
        }
    })
    .await;
    check("UpdatePackage", 3, |request_id, other| {
        let (mut c, id) = (c.clone(), created.clone());
        async move {
            let description = if other { "b" } else { "a" };
            let package = pb::Package { id, description: description.into(), ..Default::default() };
            let req = pb::UpdatePackageRequest { package: Some(package), update_mask: mask("description"), request_id };
            c.update_package(req).await.map(|r| format!("{} {}", r.get_ref().id, r.get_ref().description))
        }
    })
    .await;
    let doomed = new_package(&mut admin, "request id doomed").await;
    check("DeletePackage", 4, |request_id, other| {
        let (mut c, id) = (c.clone(), doomed.id.clone());
        async move {
            let etag = if other { "W/\"stale\"".to_string() } else { String::new() };
            c.delete_package(pb::DeletePackageRequest { id, etag, request_id }).await.map(|_| "deleted".to_string())
        }
    })
    .await;

    // Environment service.
    let e = admin.environments.clone();
    let put = check("PutObjects", 5, |request_id, other| {
        let mut e = e.clone();
        async move {
            let name = if other { "Request id group b" } else { "Request id group a" };
            let group = pb::ConfigObject { obj_code: "GROUP".into(), name: name.into(), ..Default::default() };
            let req = pb::PutObjectsRequest {
                environment: "dev".into(),
                objects: vec![group],
                request_id,
                ..Default::default()
            };
            e.put_objects(req).await.map(|r| format!("{:?}", r.into_inner()))
        }
    })
    .await;
    let prefix = pb::ListObjectsRequest {
        environment: "dev".into(),
        obj_code: "GROUP".into(),
        name_prefix: "Request id group".into(),
        ..Default::default()
    };
    let groups = admin.environments.list_objects(prefix).await.unwrap().into_inner().objects;
    assert_eq!(groups.len(), 1, "one object, whatever the replays: {put}");
    let group_id = groups[0].id.clone();
    check("DeleteObject", 6, |request_id, other| {
        let (mut e, id) = (e.clone(), group_id.clone());
        async move {
            let req = pb::DeleteObjectRequest {
                environment: "dev".into(),
                obj_code: "GROUP".into(),
                id,
                cascade: other,
                request_id,
            };
            e.delete_object(req).await.map(|r| format!("{:?}", r.into_inner()))
        }
    })
    .await;

    check("UpdateEnvironmentPolicy", 24, |request_id, other| {
        let mut e = e.clone();
        async move {
            let policy = pb::EnvironmentPolicy {
                environment: "dev".into(),
                required_approvals: if other { 3 } else { 2 },
                ..Default::default()
            };
            let mask = mask("required_approvals");
            let req = pb::UpdateEnvironmentPolicyRequest { policy: Some(policy), update_mask: mask, request_id };
            e.update_environment_policy(req)
                .await
                .map(|r| format!("{} {}", r.get_ref().required_approvals, r.get_ref().etag))
        }
    })
    .await;

    // Installation service.
    let package = installable(&mut admin, "request id installable").await;
    let i = admin.installations.clone();
    check("CreatePreRun", 7, |request_id, other| {
        let (mut i, package_id) = (i.clone(), package.id.clone());
        async move {
            let destination_environment = if other { "prod" } else { "qa" };
            let req = pb::CreatePreRunRequest {
                package_id,
                destination_environment: destination_environment.into(),
                request_id,
                ..Default::default()
            };
            i.create_pre_run(req).await.map(|r| r.into_inner().id)
        }
    })
    .await;
    let installation = check("CreateInstallation", 8, |request_id, other| {
        let (mut i, package_id) = (i.clone(), package.id.clone());
        async move {
            let req = pb::CreateInstallationRequest {
                package_id,
                destination_environment: "qa".into(),
                prune_children: other,
                request_id,
                ..Default::default()
            };
            i.create_installation(req).await.map(|r| r.into_inner().id)
        }
    })
    .await;
    let p = internal.packages.clone();
    check("RecordInstallation", 9, |request_id, other| {
        let (mut p, package_id, installation_id) = (p.clone(), package.id.clone(), installation.clone());
        async move {
            let req = pb::RecordInstallationRequest {
                package_id,
                package_version: if other { package.version + 1 } else { package.version },
                installation_id,
                destination_environment: "qa".into(),
                request_id,
            };
            p.record_installation(req).await.map(|r| format!("{:?}", r.into_inner()))
        }
    })
    .await;
    check("RollbackInstallation", 10, |request_id, other| {
        let (mut i, id) = (i.clone(), installation.clone());
        async move {
            let req = pb::RollbackInstallationRequest { id, force: other, request_id, ..Default::default() };
            i.rollback_installation(req).await.map(|r| format!("{} {}", r.get_ref().id, r.get_ref().status))
        }
    })
    .await;

    // Promotion service: one request per decision, each from its own package.
    let mut decided = Vec::new();
    for (n, name) in ["accept", "reject", "cancel"].iter().enumerate() {
        let package = installable(&mut admin, &format!("request id promote {name}")).await;
        let a = alice.promotions.clone();
        let request = check("RequestPromotion", 11 + n as u32, |request_id, other| {
            let (mut a, package_id) = (a.clone(), package.id.clone());
            async move {
                let req = pb::RequestPromotionRequest {
                    package_id,
                    target_environment: "qa".into(),
                    comment: if other { "b".into() } else { "a".into() },
                    request_id,
                    ..Default::default()
                };
                a.request_promotion(req).await.map(|r| r.into_inner().id)
            }
        })
        .await;
        decided.push(request);
    }
    let b = bob.promotions.clone();
    check("AcceptPromotionRequest", 20, |request_id, other| {
        let (mut b, id) = (b.clone(), decided[0].clone());
        async move {
            let req = pb::AcceptPromotionRequestRequest { id, prune_children: other, request_id, ..Default::default() };
            b.accept_promotion_request(req).await.map(|r| format!("{} {}", r.get_ref().id, r.get_ref().installation_id))
        }
    })
    .await;
    let promoted = admin.promotions.get_promotion_request(pb::GetPromotionRequestRequest { id: decided[1].clone() });
    let promoted = promoted.await.unwrap().into_inner();
    let mut pre_runs = Vec::new();
    for _ in 0..2 {
        let req = pb::CreatePreRunRequest {
            package_id: promoted.package_id.clone(),
            package_version: promoted.package_version,
            destination_environment: "qa".into(),
            ..Default::default()
        };
        pre_runs.push(bob.installations.create_pre_run(req).await.unwrap().into_inner().id);
    }
    check("AttachPreRun", 23, |request_id, other| {
        let (mut b, id, pre_run_id) = (b.clone(), decided[1].clone(), pre_runs[usize::from(other)].clone());
        async move {
            let req = pb::AttachPreRunRequest { id, pre_run_id, request_id };
            b.attach_pre_run(req).await.map(|r| format!("{} {}", r.get_ref().id, r.get_ref().pre_run_id))
        }
    })
    .await;
    check("RejectPromotionRequest", 21, |request_id, other| {
        let (mut b, id) = (b.clone(), decided[1].clone());
        async move {
            let comment = if other { "b" } else { "a" };
            let req = pb::RejectPromotionRequestRequest { id, comment: comment.into(), request_id };
            b.reject_promotion_request(req).await.map(|r| format!("{} {}", r.get_ref().id, r.get_ref().status))
        }
    })
    .await;
    let a = alice.promotions.clone();
    check("CancelPromotionRequest", 22, |request_id, other| {
        let (mut a, id) = (a.clone(), decided[2].clone());
        async move {
            let comment = if other { "b" } else { "a" };
            let req = pb::CancelPromotionRequestRequest { id, comment: comment.into(), request_id };
            a.cancel_promotion_request(req).await.map(|r| format!("{} {}", r.get_ref().id, r.get_ref().status))
        }
    })
    .await;

    // Notification service.
    let n = admin.notifications.clone();
    let subscription = check("CreateSubscription", 25, |request_id, other| {
        let mut n = n.clone();
        async move {
            let req = pb::CreateSubscriptionRequest {
                url: if other { "http://127.0.0.1:9/b".into() } else { "http://127.0.0.1:9/a".into() },
                events: vec!["PROMOTION_REQUESTED".into()],
                secret: "a-request-id-test-secret".into(),
                environment: String::new(),
                request_id,
            };
            n.create_subscription(req).await.map(|r| r.into_inner().id)
        }
    })
    .await;
    let listed = admin.notifications.list_subscriptions(pb::ListSubscriptionsRequest {}).await.unwrap().into_inner();
    assert_eq!(listed.subscriptions.len(), 1, "one subscription, whatever the replays");
    check("DeleteSubscription", 26, |request_id, other| {
        let (mut n, id) = (n.clone(), if other { uuid::Uuid::new_v4().to_string() } else { subscription.clone() });
        async move {
            let req = pb::DeleteSubscriptionRequest { id, request_id };
            n.delete_subscription(req).await.map(|_| "deleted".to_string())
        }
    })
    .await;
    let _ = (&mut bob, &mut alice);
}
