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

fn ts(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.timestamp(), nanos: 0 }
}

async fn install(c: &mut Clients, package: &str, env: &str, reason: &str) -> Result<pb::Installation, tonic::Status> {
    let req = pb::CreateInstallationRequest {
        package_id: package.into(),
        destination_environment: env.into(),
        window_override_reason: reason.into(),
        ..Default::default()
    };
    c.installations.create_installation(req).await.map(|r| r.into_inner())
}

#[tokio::test]
async fn a_freeze_refuses_accept_install_and_rollback_allows_pre_runs_and_requests_and_lifting_it_allows_them() {
    let dev = DevServices::start().await;
    let mut admin = dev.clients("admin").await;
    let mut alice = dev.clients("alice").await;
    let mut bob = dev.clients("bob").await;
    let now = chrono::Utc::now();
    let until = now + chrono::Duration::hours(2);
    let freeze = pb::PromotionFreeze {
        start_time: Some(ts(now - chrono::Duration::hours(1))),
        end_time: Some(ts(until)),
        reason: "quarter close".into(),
    };
    let read = policy(&mut admin, "qa").await.unwrap();
    let frozen = update_policy(&mut admin, pb::EnvironmentPolicy { freezes: vec![freeze], ..read }, &["freezes"]).await;
    let frozen = frozen.expect("admin freezes qa");
    assert_eq!(frozen.freezes[0].reason, "quarter close");

    let package = group_package(&mut alice, "Frozen qa", &[pb::PackageStatus::Preview]).await;
    let pre_run = pb::CreatePreRunRequest {
        package_id: package.id.clone(),
        destination_environment: "qa".into(),
        ..Default::default()
    };
    bob.installations.create_pre_run(pre_run).await.expect("pre-runs are always allowed");
    let r = request(&mut alice, &package.id, "qa").await;

    let refused =
        assert_status(accept(&mut bob, &r.id, "").await, Code::FailedPrecondition, "OUTSIDE_PROMOTION_WINDOW");
    let metadata = metadata_of(&refused);
    let opens = chrono::DateTime::parse_from_rfc3339(&metadata["next_opening"]).unwrap();
    assert_eq!(opens.timestamp(), until.timestamp(), "the refusal names when qa opens again");
    assert!(metadata["reason"].contains("quarter close"), "{metadata:?}");
    assert_status(install(&mut bob, &package.id, "qa", "").await, Code::FailedPrecondition, "OUTSIDE_PROMOTION_WINDOW");
    let not_admin = install(&mut bob, &package.id, "qa", "urgent").await;
    assert_status(not_admin, Code::PermissionDenied, "PERMISSION_DENIED");
    assert_eq!(installations_into(&mut admin, "qa").await, 0, "nothing landed in the freeze");
    let pending = admin.promotions.get_promotion_request(pb::GetPromotionRequestRequest { id: r.id.clone() });
    let pending = pending.await.unwrap().into_inner();
    assert!(pending.approvals.is_empty() && pending.last_error.is_empty(), "the refusal left the request as it was");

    // Lifted, the same calls go through.
    let read = policy(&mut admin, "qa").await.unwrap();
    update_policy(&mut admin, pb::EnvironmentPolicy { freezes: vec![], ..read }, &["freezes"]).await.unwrap();
    // An override reason is an admin's, open or not: an outside tester's bob got through with one.
    let not_admin = install(&mut bob, &package.id, "qa", "urgent").await;
    assert_status(not_admin, Code::PermissionDenied, "PERMISSION_DENIED");
    assert_eq!(installations_into(&mut admin, "qa").await, 0, "the refused override wrote nothing");
    let accepted = accept(&mut bob, &r.id, "").await.expect("accepted once the freeze is lifted");
    assert_eq!(accepted.status, pb::PromotionStatus::Accepted as i32);

    // Frozen again: a rollback is refused, but an admin may override, and that is audited.
    let read = policy(&mut admin, "qa").await.unwrap();
    let freeze = pb::PromotionFreeze { start_time: Some(ts(now)), end_time: Some(ts(until)), reason: "again".into() };
    update_policy(&mut admin, pb::EnvironmentPolicy { freezes: vec![freeze], ..read }, &["freezes"]).await.unwrap();
    let rollback = |reason: &str| pb::RollbackInstallationRequest {
        id: accepted.installation_id.clone(),
        window_override_reason: reason.into(),
        ..Default::default()
    };
    let refused = bob.installations.rollback_installation(rollback("")).await;
    assert_status(refused, Code::FailedPrecondition, "OUTSIDE_PROMOTION_WINDOW");
    let rolled = admin.installations.rollback_installation(rollback("broken release")).await.expect("admin override");
    assert_eq!(rolled.into_inner().status, pb::InstallationStatus::RolledBack as i32);
    let events = pb::ListAuditEventsRequest { action: "PROMOTION_WINDOW_OVERRIDDEN".into(), ..Default::default() };
    let events = admin.installation_audit.list_audit_events(events).await.unwrap().into_inner().events;
    assert_eq!(events.len(), 1, "{events:?}");
    let details = format!("{:?}", events[0].details);
    assert!(details.contains("broken release") && details.contains("RollbackInstallation"), "{details}");
}

#[tokio::test]
async fn outside_every_window_installs_wait_for_the_next_opening() {
    let dev = DevServices::start().await;
    let mut admin = dev.clients("admin").await;
    let mut bob = dev.clients("bob").await;
    use chrono::Datelike;
    let today = chrono::Utc::now().date_naive();
    let days: Vec<i32> = (1..=7).filter(|d| *d != today.weekday().number_from_monday() as i32).collect();
    let window =
        pb::PromotionWindow { days, start_time: "00:00".into(), end_time: "24:00".into(), time_zone: "UTC".into() };
    let read = policy(&mut admin, "qa").await.unwrap();
    let set = update_policy(&mut admin, pb::EnvironmentPolicy { windows: vec![window], ..read }, &["windows"]).await;
    let set = set.expect("a window on every day but today");
    assert_eq!((set.windows[0].end_time.as_str(), set.windows[0].time_zone.as_str()), ("24:00", "UTC"));
    let package = group_package(&mut admin, "Windowed qa", &[pb::PackageStatus::Preview]).await;
    let refused = assert_status(
        install(&mut bob, &package.id, "qa", "").await,
        Code::FailedPrecondition,
        "OUTSIDE_PROMOTION_WINDOW",
    );
    let tomorrow = (today + chrono::Duration::days(1)).and_hms_opt(0, 0, 0).unwrap().and_utc();
    assert_eq!(metadata_of(&refused)["next_opening"], tomorrow.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    install(&mut admin, &package.id, "qa", "hotfix").await.expect("an admin's override installs");

    let bad = pb::PromotionWindow {
        days: vec![1],
        start_time: "9am".into(),
        end_time: "17:00".into(),
        time_zone: "UTC".into(),
    };
    let read = policy(&mut admin, "qa").await.unwrap();
    let refused = update_policy(&mut admin, pb::EnvironmentPolicy { windows: vec![bad], ..read }, &["windows"]).await;
    assert_status(refused, Code::InvalidArgument, "INVALID_POLICY");
}
