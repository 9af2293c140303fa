//! Governance against the real binary: environment policies (read by viewers, changed by
//! admins with an etag, audited) and approvals — development mode's `prod` needs two
//! distinct approvers, nobody approves their own request.
mod common;

use common::*;
use promotion_api::v1 as pb;
use tonic::Code;

/// A PUBLIC package of one dev group (installable into prod), by alice.
async fn public_package(alice: &mut Clients, name: &str) -> pb::Package {
    group_package(alice, name, &[pb::PackageStatus::Preview, pb::PackageStatus::Public]).await
}

async fn request(c: &mut Clients, package: &str, target: &str) -> pb::PromotionRequest {
    let req = pb::RequestPromotionRequest {
        package_id: package.into(),
        target_environment: target.into(),
        ..Default::default()
    };
    c.promotions.request_promotion(req).await.expect("request the promotion").into_inner()
}

async fn accept(c: &mut Clients, id: &str, comment: &str) -> Result<pb::PromotionRequest, tonic::Status> {
    let req = pb::AcceptPromotionRequestRequest { id: id.into(), comment: comment.into(), ..Default::default() };
    c.promotions.accept_promotion_request(req).await.map(|r| r.into_inner())
}

async fn installations_into(c: &mut Clients, env: &str) -> usize {
    let req = pb::ListInstallationsRequest { destination_environment: env.into(), ..Default::default() };
    c.installations.list_installations(req).await.unwrap().into_inner().installations.len()
}

async fn policy(c: &mut Clients, env: &str) -> Result<pb::EnvironmentPolicy, tonic::Status> {
    let req = pb::GetEnvironmentPolicyRequest { environment: env.into() };
    c.environments.get_environment_policy(req).await.map(|r| r.into_inner())
}

async fn update_policy(
    c: &mut Clients,
    policy: pb::EnvironmentPolicy,
    paths: &[&str],
) -> Result<pb::EnvironmentPolicy, tonic::Status> {
    let req = pb::UpdateEnvironmentPolicyRequest {
        policy: Some(policy),
        update_mask: Some(prost_types::FieldMask { paths: paths.iter().map(|p| p.to_string()).collect() }),
        request_id: String::new(),
    };
    c.environments.update_environment_policy(req).await.map(|r| r.into_inner())
}

#[tokio::test]
async fn prod_needs_two_distinct_approvers_and_nobody_approves_their_own_request() {
    let dev = DevServices::start().await;
    let mut alice = dev.clients("alice").await;
    let mut bob = dev.clients("bob").await;
    let mut admin = dev.clients("admin").await;
    let package = public_package(&mut alice, "Two approvals for prod").await;
    let r = request(&mut alice, &package.id, "prod").await;
    assert_eq!((r.required_approvals, r.approvals.len()), (2, 0), "the demo's prod policy shows on the request");

    let first = accept(&mut bob, &r.id, "bob agrees").await.expect("bob's approval");
    assert_eq!(first.status, pb::PromotionStatus::ToBeValidated as i32, "one approval of two installs nothing");
    assert!(first.installation_id.is_empty());
    assert_eq!(first.approvals.iter().map(|a| a.approver.as_str()).collect::<Vec<_>>(), ["bob"]);
    assert_eq!(first.approvals[0].comment, "bob agrees");
    assert!(first.approvals[0].time.is_some());
    assert_eq!(installations_into(&mut admin, "prod").await, 0, "nothing installed into prod");
    let tasks = bob.promotions.list_promotion_tasks(pb::ListPromotionTasksRequest::default()).await.unwrap();
    assert!(tasks.into_inner().promotion_requests.iter().any(|t| t.id == r.id), "still a task");

    assert_status(accept(&mut bob, &r.id, "again").await, Code::FailedPrecondition, "ALREADY_APPROVED");

    let done = accept(&mut admin, &r.id, "admin agrees").await.expect("the second approval installs");
    assert_eq!(done.status, pb::PromotionStatus::Accepted as i32);
    assert!(!done.installation_id.is_empty());
    assert_eq!(done.approvals.iter().map(|a| a.approver.as_str()).collect::<Vec<_>>(), ["bob", "admin"]);
    assert_eq!(installations_into(&mut admin, "prod").await, 1);
    let installed = admin
        .installations
        .get_installation(pb::GetInstallationRequest { id: done.installation_id.clone(), ..Default::default() });
    assert_eq!(installed.await.unwrap().into_inner().pre_run_id, r.pre_run_id, "the reviewed plan was installed");

    // The trail has each approval, and the accept names both approvers.
    let events = |action: &str| pb::ListAuditEventsRequest {
        resource_id: r.id.clone(),
        action: action.into(),
        ..Default::default()
    };
    let approved = admin.installation_audit.list_audit_events(events("PROMOTION_APPROVED")).await.unwrap().into_inner();
    assert_eq!(approved.events.iter().map(|e| e.actor.as_str()).collect::<Vec<_>>(), ["bob"]);
    let accepted = admin.installation_audit.list_audit_events(events("PROMOTION_ACCEPTED")).await.unwrap().into_inner();
    assert_eq!(accepted.events.len(), 1);
    assert_eq!(accepted.events[0].actor, "admin");

    // The admin may approve anything, but not what they requested themselves.
    let own = public_package(&mut admin, "Admin's own").await;
    let mine = request(&mut admin, &own.id, "qa").await;
    assert_eq!(mine.required_approvals, 1, "qa keeps the default");
    let refused = assert_status(accept(&mut admin, &mine.id, "").await, Code::PermissionDenied, "SELF_APPROVAL");
    assert_eq!(metadata_of(&refused).get("requested_by").map(String::as_str), Some("admin"));
    let still = admin.promotions.get_promotion_request(pb::GetPromotionRequestRequest { id: mine.id.clone() });
    assert_eq!(still.await.unwrap().into_inner().status, pb::PromotionStatus::ToBeValidated as i32);
    let accepted = accept(&mut bob, &mine.id, "").await.expect("another approver accepts it");
    assert_eq!(accepted.status, pb::PromotionStatus::Accepted as i32);
}

#[tokio::test]
async fn a_rejection_by_any_approver_ends_a_request_with_approvals() {
    let dev = DevServices::start().await;
    let mut alice = dev.clients("alice").await;
    let mut bob = dev.clients("bob").await;
    let mut admin = dev.clients("admin").await;
    let package = public_package(&mut alice, "Rejected for prod").await;
    let r = request(&mut alice, &package.id, "prod").await;
    accept(&mut bob, &r.id, "").await.expect("bob approves");
    let req = pb::RejectPromotionRequestRequest { id: r.id.clone(), comment: "not now".into(), ..Default::default() };
    let rejected = admin.promotions.reject_promotion_request(req).await.unwrap().into_inner();
    assert_eq!(rejected.status, pb::PromotionStatus::Rejected as i32);
    assert_status(accept(&mut admin, &r.id, "").await, Code::FailedPrecondition, "PROMOTION_NOT_PENDING");
    assert_eq!(installations_into(&mut admin, "prod").await, 0);
}

#[tokio::test]
async fn admins_change_a_policy_with_its_etag_viewers_read_it_and_every_change_is_audited() {
    let dev = DevServices::start().await;
    let mut admin = dev.clients("admin").await;
    let mut victor = dev.clients("victor").await;
    let mut gina = dev.clients("gina").await;

    let qa = policy(&mut victor, "qa").await.expect("viewers read the policy");
    assert_eq!((qa.required_approvals, qa.allow_self_approval, qa.updated_by.as_str()), (1, false, ""));
    assert!(qa.update_time.is_none(), "the defaults were never updated");
    let prod = policy(&mut victor, "prod").await.unwrap();
    assert_eq!((prod.required_approvals, prod.updated_by.as_str()), (2, "promotion-dev"));
    assert_status(policy(&mut gina, "qa").await, Code::NotFound, "ENVIRONMENT_NOT_FOUND");

    let change = pb::EnvironmentPolicy { required_approvals: 3, ..qa.clone() };
    assert_status(
        update_policy(&mut victor, change.clone(), &["required_approvals"]).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    let updated = update_policy(&mut admin, change.clone(), &["required_approvals"]).await.expect("admin updates");
    assert_eq!(
        (updated.required_approvals, updated.allow_self_approval, updated.updated_by.as_str()),
        (3, false, "admin")
    );
    assert_ne!(updated.etag, qa.etag);
    assert_eq!(policy(&mut victor, "qa").await.unwrap(), updated);

    // The etag read before is stale now: nothing is written.
    let stale = pb::EnvironmentPolicy { allow_self_approval: true, ..qa };
    assert_status(update_policy(&mut admin, stale, &["allow_self_approval"]).await, Code::Aborted, "ETAG_MISMATCH");
    let zero = pb::EnvironmentPolicy { required_approvals: 0, ..updated.clone() };
    assert_status(
        update_policy(&mut admin, zero, &["required_approvals"]).await,
        Code::InvalidArgument,
        "INVALID_POLICY",
    );
    assert_status(
        update_policy(&mut admin, updated.clone(), &["etag"]).await,
        Code::InvalidArgument,
        "INVALID_FIELD_MASK",
    );
    assert_eq!(policy(&mut admin, "qa").await.unwrap(), updated);

    let events =
        pb::ListAuditEventsRequest { action: "POLICY_UPDATED".into(), environment: "qa".into(), ..Default::default() };
    let events = admin.installation_audit.list_audit_events(events).await.unwrap().into_inner().events;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].actor, "admin");
    let details = events[0].details.as_ref().expect("details");
    let json = format!("{details:?}");
    assert!(json.contains("before") && json.contains("after"), "{json}");

    // The new count applies to the next decision.
    let mut alice = dev.clients("alice").await;
    let mut bob = dev.clients("bob").await;
    let package = group_package(&mut alice, "Three approvals for qa", &[pb::PackageStatus::Preview]).await;
    let r = request(&mut alice, &package.id, "qa").await;
    assert_eq!(r.required_approvals, 3);
    let approved = accept(&mut bob, &r.id, "").await.unwrap();
    assert_eq!((approved.status, approved.approvals.len()), (pb::PromotionStatus::ToBeValidated as i32, 1));
}
