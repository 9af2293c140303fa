//! The audit trail seen from outside, on both services of `promotion dev`: who requested,
//! accepted, rejected, cancelled and was denied, with outcomes; the ListAuditEvents filters
//! and pagination; audit.read; a denied call leaving one ACCESS_DENIED event and nothing
//! else; and events that no RPC can change and that survive a restart.
mod common;

use std::time::{Duration, Instant};

use common::*;
use promotion_api::convert::struct_to_map;
use promotion_api::v1 as pb;
use prost::Message;
use tonic::Code;

type AuditClient = pb::audit_service_client::AuditServiceClient<Authed>;

/// Every event a query yields, following next_page_token to the end.
async fn all_events(audit: &mut AuditClient, mut req: pb::ListAuditEventsRequest) -> Vec<pb::AuditEvent> {
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let page = audit.list_audit_events(req.clone()).await.expect("list audit events").into_inner();
        if req.page_size > 0 {
            assert!(page.events.len() <= req.page_size as usize, "a page holds at most page_size events");
        }
        out.extend(page.events);
        if page.next_page_token.is_empty() {
            return out;
        }
        req.page_token = page.next_page_token;
    }
    panic!("pagination never ended");
}

fn filter(f: impl FnOnce(&mut pb::ListAuditEventsRequest)) -> pb::ListAuditEventsRequest {
    let mut req = pb::ListAuditEventsRequest::default();
    f(&mut req);
    req
}

/// (action, actor, resource_id, outcome) of each event: what a reader of the trail sees.
fn trail(events: &[pb::AuditEvent]) -> Vec<(String, String, String, String)> {
    events.iter().map(|e| (e.action.clone(), e.actor.clone(), e.resource_id.clone(), e.outcome.clone())).collect()
}

fn row(action: &str, actor: &str, resource: &str, outcome: &str) -> (String, String, String, String) {
    (action.into(), actor.into(), resource.into(), outcome.into())
}

fn detail(e: &pb::AuditEvent, key: &str) -> Option<serde_json::Value> {
    struct_to_map(e.details.as_ref()?).get(key).cloned()
}

/// alice packages the onboarding template from dev and puts it in PREVIEW.
async fn preview_package(alice: &mut Clients) -> pb::Package {
    let req = pb::CreatePackageRequest {
        name: "Onboarding template".into(),
        source_environment: "dev".into(),
        object_collections: vec![pb::ObjectCollection {
            obj_code: "TMPL".into(),
            entities: vec![pb::EntityRef { id: ONBOARDING_TMPL.into(), name: String::new() }],
        }],
        ..Default::default()
    };
    let id = alice.packages.create_package(req).await.expect("create a package").into_inner().id;
    let deadline = Instant::now() + Duration::from_secs(30);
    let package = loop {
        let p = alice.packages.get_package(pb::GetPackageRequest { id: id.clone() }).await.unwrap().into_inner();
        if p.status == pb::PackageStatus::Building as i32 {
            break p;
        }
        assert_eq!(p.status, pb::PackageStatus::Extracting as i32, "extraction failed: {}", p.failure_reason);
        assert!(Instant::now() < deadline, "extraction never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let req = pb::UpdatePackageRequest {
        package: Some(pb::Package { status: pb::PackageStatus::Preview as i32, ..package }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["status".into()] }),
        request_id: String::new(),
    };
    alice.packages.update_package(req).await.expect("preview the package").into_inner()
}

fn promote(package_id: &str) -> pb::RequestPromotionRequest {
    pb::RequestPromotionRequest {
        package_id: package_id.into(),
        target_environment: "qa".into(),
        request_id: uuid::Uuid::new_v4().to_string(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trail_shows_who_requested_accepted_rejected_cancelled_and_was_denied() {
    let dev = DevServices::start().await;
    // The story's own events, after development mode seeded its demo data.
    let story_start = promotion_api::convert::timestamp(chrono::Utc::now());
    let mut alice = dev.clients("alice").await;
    let mut bob = dev.clients("bob").await;
    let mut admin = dev.clients("admin").await;
    let package = preview_package(&mut alice).await;

    let first_request = promote(&package.id);
    let first = alice.promotions.request_promotion(first_request.clone()).await.unwrap().into_inner();
    let r = alice
        .promotions
        .accept_promotion_request(pb::AcceptPromotionRequestRequest { id: first.id.clone(), ..Default::default() });
    assert_status(r.await, Code::PermissionDenied, "PERMISSION_DENIED");
    let accept = pb::AcceptPromotionRequestRequest { id: first.id.clone(), comment: "ok".into(), ..Default::default() };
    let accepted = bob.promotions.accept_promotion_request(accept).await.expect("bob accepts").into_inner();
    let second = alice.promotions.request_promotion(promote(&package.id)).await.unwrap().into_inner();
    let reject =
        pb::RejectPromotionRequestRequest { id: second.id.clone(), comment: "no".into(), ..Default::default() };
    bob.promotions.reject_promotion_request(reject).await.expect("bob rejects");
    let third = alice.promotions.request_promotion(promote(&package.id)).await.unwrap().into_inner();
    let cancel = pb::CancelPromotionRequestRequest { id: third.id.clone(), ..Default::default() };
    alice.promotions.cancel_promotion_request(cancel).await.expect("alice cancels");

    // Everything that happened to qa, in order, with who did it and how it ended.
    let qa = all_events(
        &mut admin.installation_audit,
        filter(|r| {
            r.environment = "qa".into();
            r.start_time = Some(story_start);
        }),
    )
    .await;
    assert_eq!(
        trail(&qa),
        [
            // Each request carries the plan the service made of it when it was created.
            row("PRE_RUN_CREATED", "alice", &first.pre_run_id, "OK"),
            row("PROMOTION_REQUESTED", "alice", &first.id, "OK"),
            row("ACCESS_DENIED", "alice", "qa", "PERMISSION_DENIED"),
            row("INSTALLATION_COMPLETED", "bob", &accepted.installation_id, "OK"),
            row("PROMOTION_ACCEPTED", "bob", &first.id, "OK"),
            row("PRE_RUN_CREATED", "alice", &second.pre_run_id, "OK"),
            row("PROMOTION_REQUESTED", "alice", &second.id, "OK"),
            row("PROMOTION_REJECTED", "bob", &second.id, "OK"),
            row("PRE_RUN_CREATED", "alice", &third.pre_run_id, "OK"),
            row("PROMOTION_REQUESTED", "alice", &third.id, "OK"),
            row("PROMOTION_CANCELLED", "alice", &third.id, "OK"),
        ]
    );
    for e in &qa {
        assert_eq!((e.organization.as_str(), e.environment.as_str()), ("acme", "qa"));
        assert_eq!(e.service, "installation-service");
        assert!(e.time.is_some() && !e.id.is_empty());
    }
    assert_eq!(detail(&qa[2], "permission"), Some("promotion.approve".into()), "the denial names the permission");
    assert_eq!(detail(&qa[4], "installation_id"), Some(accepted.installation_id.clone().into()));
    assert_eq!(detail(&qa[1], "package_id"), Some(package.id.clone().into()));
    assert_eq!(detail(&qa[1], "pre_run_id"), Some(first.pre_run_id.clone().into()));
    assert_eq!(qa[1].resource_type, "promotion_request");
    assert_eq!(qa[1].request_id, first_request.request_id, "the caller's request id is kept");

    // Filters: action, actor, resource, and combinations.
    let requested =
        all_events(&mut admin.installation_audit, filter(|r| r.action = "PROMOTION_REQUESTED".into())).await;
    assert_eq!(requested.iter().map(|e| &e.resource_id).collect::<Vec<_>>(), [&first.id, &second.id, &third.id]);
    let by_bob = all_events(&mut admin.installation_audit, filter(|r| r.actor = "bob".into())).await;
    assert_eq!(
        by_bob.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["INSTALLATION_COMPLETED", "PROMOTION_ACCEPTED", "PROMOTION_REJECTED"]
    );
    let about_second = all_events(
        &mut admin.installation_audit,
        filter(|r| {
            r.resource_type = "promotion_request".into();
            r.resource_id = second.id.clone();
        }),
    )
    .await;
    assert_eq!(
        trail(&about_second),
        [row("PROMOTION_REQUESTED", "alice", &second.id, "OK"), row("PROMOTION_REJECTED", "bob", &second.id, "OK")]
    );
    let denied_alice = all_events(
        &mut admin.installation_audit,
        filter(|r| {
            r.action = "ACCESS_DENIED".into();
            r.actor = "alice".into();
        }),
    )
    .await;
    assert_eq!(denied_alice.len(), 1);

    // Time range: [start, end) as the events' own times say, never the test's clock.
    let (start, end) = (qa[2].time.unwrap(), qa[6].time.unwrap());
    let in_range = all_events(
        &mut admin.installation_audit,
        filter(|r| {
            r.environment = "qa".into();
            r.start_time = Some(start);
            r.end_time = Some(end);
        }),
    )
    .await;
    let key = |t: &prost_types::Timestamp| (t.seconds, t.nanos);
    let expected: Vec<_> = qa
        .iter()
        .filter(|e| key(e.time.as_ref().unwrap()) >= key(&start) && key(e.time.as_ref().unwrap()) < key(&end))
        .collect();
    assert_eq!(in_range.iter().map(|e| &e.id).collect::<Vec<_>>(), expected.iter().map(|e| &e.id).collect::<Vec<_>>());
    assert!(in_range.iter().any(|e| e.action == "PROMOTION_ACCEPTED"));
    assert!(!in_range.iter().any(|e| e.action == "PROMOTION_CANCELLED"));

    // Pagination: pages of 3 add up to the whole list, in the same order.
    let paged = all_events(
        &mut admin.installation_audit,
        filter(|r| {
            r.environment = "qa".into();
            r.start_time = Some(story_start);
            r.page_size = 3;
        }),
    )
    .await;
    assert_eq!(paged, qa);
    let r = admin.installation_audit.list_audit_events(filter(|r| r.page_size = -1)).await;
    assert_status(r, Code::InvalidArgument, "INVALID_PAGE_SIZE");
    let r = admin.installation_audit.list_audit_events(filter(|r| r.page_token = "not-a-token".into())).await;
    assert_status(r, Code::InvalidArgument, "INVALID_PAGE_TOKEN");

    // The package service records its own side: alice created the package, it was
    // extracted, and she moved it from BUILDING to PREVIEW.
    let by_alice = |r: &mut pb::ListAuditEventsRequest| {
        r.resource_id = package.id.clone();
        r.actor = "alice".into();
    };
    let about_package = all_events(&mut admin.package_audit, filter(by_alice)).await;
    assert!(about_package.iter().all(|e| e.service == "package-service" && e.organization == "acme"));
    assert!(about_package.iter().all(|e| e.actor == "alice" && e.outcome == "OK"), "{about_package:?}");
    assert_eq!(about_package.first().map(|e| e.action.as_str()), Some("PACKAGE_CREATED"));
    let status_changes: Vec<_> = about_package
        .iter()
        .filter(|e| e.action == "PACKAGE_STATUS_CHANGED")
        .map(|e| (detail(e, "from"), detail(e, "to")))
        .collect();
    assert_eq!(status_changes, [(Some("BUILDING".into()), Some("PREVIEW".into()))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_the_trail_needs_audit_read_and_stays_in_the_organization() {
    let dev = DevServices::start().await;
    let mut admin = dev.clients("admin").await;
    let mut victor = dev.clients("victor").await;
    let mut gina = dev.clients("gina").await;
    // A denial to read: victor is a viewer everywhere, not an admin.
    for env in ["", "dev"] {
        let req = filter(|r| r.environment = env.into());
        assert_status(
            victor.installation_audit.list_audit_events(req.clone()).await,
            Code::PermissionDenied,
            "PERMISSION_DENIED",
        );
        assert_status(victor.package_audit.list_audit_events(req).await, Code::PermissionDenied, "PERMISSION_DENIED");
    }
    // Another organization's admin: acme's environment does not exist, acme's events are not listed.
    let req = filter(|r| r.environment = "dev".into());
    assert_status(
        gina.installation_audit.list_audit_events(req.clone()).await,
        Code::NotFound,
        "ENVIRONMENT_NOT_FOUND",
    );
    assert_status(gina.package_audit.list_audit_events(req).await, Code::NotFound, "ENVIRONMENT_NOT_FOUND");
    for audit in [&mut gina.installation_audit, &mut gina.package_audit] {
        let events = all_events(audit, filter(|_| {})).await;
        assert!(events.iter().all(|e| e.organization == "globex" && e.actor != "victor"), "{events:?}");
    }
    // acme's admin sees each of victor's denials on the service that refused it.
    for audit in [&mut admin.installation_audit, &mut admin.package_audit] {
        let denied = all_events(audit, filter(|r| r.actor = "victor".into())).await;
        assert_eq!(denied.len(), 2, "{denied:?}");
        for e in &denied {
            assert_eq!((e.action.as_str(), e.outcome.as_str()), ("ACCESS_DENIED", "PERMISSION_DENIED"));
            assert_eq!(detail(e, "permission"), Some("audit.read".into()));
        }
    }
}

/// What a denied call could have touched: dev's revision and counts, the packages.
async fn snapshot(admin: &mut Clients) -> (u64, Vec<(String, i64)>, Vec<String>) {
    let env =
        admin.environments.get_environment(pb::GetEnvironmentRequest { id: "dev".into() }).await.unwrap().into_inner();
    let mut counts: Vec<(String, i64)> = env.object_counts.into_iter().collect();
    counts.sort();
    let req = pb::ListPackagesRequest { page_size: 1000, show_retired: true, ..Default::default() };
    let packages = admin.packages.list_packages(req).await.unwrap().into_inner().packages;
    (env.revision, counts, packages.into_iter().map(|p| format!("{}@{}", p.id, p.etag)).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_call_leaves_one_access_denied_event_and_no_rpc_changes_the_trail() {
    // The contracts offer no way to edit or delete events: AuditService only lists, and no
    // other RPC is about audit events.
    let set = prost_types::FileDescriptorSet::decode(promotion_api::FILE_DESCRIPTOR_SET).unwrap();
    let services: Vec<_> = set.file.iter().flat_map(|f| &f.service).collect();
    let audit = services.iter().find(|s| s.name() == "AuditService").expect("AuditService");
    assert_eq!(audit.method.iter().map(|m| m.name()).collect::<Vec<_>>(), ["ListAuditEvents"]);
    for s in &services {
        for m in &s.method {
            assert!(!m.name().contains("Audit") || m.name() == "ListAuditEvents", "{}/{}", s.name(), m.name());
        }
    }

    let dev = DevServices::start().await;
    let mut admin = dev.clients("admin").await;
    let mut victor = dev.clients("victor").await;
    let mut erin = dev.clients("erin").await;
    // Something real on both services first, so the trail is not empty.
    let group = pb::ConfigObject { obj_code: "GROUP".into(), name: "Audit Reviewers".into(), ..Default::default() };
    let put = pb::PutObjectsRequest {
        environment: "dev".into(),
        objects: vec![group.clone()],
        request_id: String::new(),
        ..Default::default()
    };
    erin.environments.put_objects(put).await.expect("erin edits dev");
    let package = preview_package(&mut dev.clients("alice").await).await;

    // A denied write on each service: exactly one new event, ACCESS_DENIED, and nothing else.
    let installation_before = all_events(&mut admin.installation_audit, filter(|_| {})).await;
    let package_before = all_events(&mut admin.package_audit, filter(|_| {})).await;
    let state_before = snapshot(&mut admin).await;
    let put = pb::PutObjectsRequest {
        environment: "dev".into(),
        objects: vec![group],
        request_id: String::new(),
        ..Default::default()
    };
    assert_status(victor.environments.put_objects(put).await, Code::PermissionDenied, "PERMISSION_DENIED");
    let create = pb::CreatePackageRequest {
        name: "Victor's package".into(),
        source_environment: "dev".into(),
        object_collections: package.object_collections.clone(),
        ..Default::default()
    };
    assert_status(victor.packages.create_package(create).await, Code::PermissionDenied, "PERMISSION_DENIED");
    let installation_after = all_events(&mut admin.installation_audit, filter(|_| {})).await;
    let package_after = all_events(&mut admin.package_audit, filter(|_| {})).await;
    for (before, after, permission) in [
        (&installation_before, &installation_after, "environment.write"),
        (&package_before, &package_after, "package.write"),
    ] {
        assert_eq!(after.len(), before.len() + 1, "exactly one new event: {:?}", &after[before.len()..]);
        assert_eq!(&after[..before.len()], &before[..], "earlier events are unchanged");
        let denied = &after[before.len()];
        assert_eq!(
            (denied.action.as_str(), denied.actor.as_str(), denied.outcome.as_str(), denied.environment.as_str()),
            ("ACCESS_DENIED", "victor", "PERMISSION_DENIED", "dev")
        );
        assert_eq!(detail(denied, "permission"), Some(permission.into()));
    }
    assert_eq!(snapshot(&mut admin).await, state_before, "the denied calls wrote nothing else");

    // Acknowledged events survive kill -9 and a restart, unchanged.
    let data = dev.kill();
    let dev = DevServices::start_in(data).await;
    let mut admin = dev.clients("admin").await;
    assert_eq!(all_events(&mut admin.installation_audit, filter(|_| {})).await, installation_after);
    assert_eq!(all_events(&mut admin.package_audit, filter(|_| {})).await, package_after);
}
