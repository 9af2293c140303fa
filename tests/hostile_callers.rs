//! Callers who push at the edges: guessing secrets, oversized messages and headers,
//! probing other environments through errors, and leaving requests behind packages that
//! are gone.
mod common;

use common::*;
use promotion_api::v1 as pb;
use tonic::{Code, Request};

async fn login(c: &mut Clients, client_id: &str, secret: &str) -> Result<(), tonic::Status> {
    let req = pb::IssueTokenRequest { client_id: client_id.into(), client_secret: secret.into(), ttl_seconds: 0 };
    c.auth.issue_token(req).await.map(|_| ())
}

async fn package_events(admin: &mut Clients, action: &str) -> Vec<pb::AuditEvent> {
    let req = pb::ListAuditEventsRequest { action: action.into(), page_size: 1000, ..Default::default() };
    admin.package_audit.list_audit_events(req).await.unwrap().into_inner().events
}

#[tokio::test]
async fn failed_logins_are_throttled_per_client_and_address_and_audited() {
    let dev = DevServices::start().await;
    let mut admin = dev.clients("admin").await;
    let mut anonymous = dev.anonymous().await;
    for _ in 0..5 {
        assert_status(login(&mut anonymous, "alice", "guess").await, Code::Unauthenticated, "INVALID_CLIENT");
    }
    // Past five failures the client is refused, even with its right secret, and told when
    // to come back.
    let refused = assert_status(
        login(&mut anonymous, "alice", "alice-secret").await,
        Code::ResourceExhausted,
        "TOO_MANY_FAILED_LOGINS",
    );
    let wait: u64 = metadata_of(&refused)["retry_after_seconds"].parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    login(&mut anonymous, "bob", "bob-secret").await.expect("other clients still log in");

    let failed = package_events(&mut admin, "LOGIN_FAILED").await;
    assert_eq!(failed.len(), 5, "every failed attempt is audited");
    assert!(failed.iter().all(|e| e.actor == "alice" && e.organization == "acme" && e.outcome == "UNAUTHENTICATED"));
    assert_eq!(package_events(&mut admin, "LOGIN_THROTTLED").await.len(), 1, "a throttled window is audited once");
    let trail = format!("{failed:?}");
    assert!(!trail.contains("guess") && !trail.contains("alice-secret"), "no secret in the trail");

    // One address guessing client ids is refused whatever id it tries next.
    for n in 0..20 {
        let _ = login(&mut anonymous, &format!("nobody-{n}"), "guess").await;
    }
    let refused = login(&mut anonymous, "victor", "victor-secret").await;
    assert_status(refused, Code::ResourceExhausted, "TOO_MANY_FAILED_LOGINS");
}

#[tokio::test]
async fn oversized_messages_and_headers_name_the_limit() {
    let dev = DevServices::start().await;
    let token = dev.token("admin").await;
    let mut big = pb::environment_service_client::EnvironmentServiceClient::with_interceptor(
        channel(dev.installation_addr).await,
        Bearer(Some(format!("Bearer {token}").parse().unwrap())),
    )
    .max_encoding_message_size(64 * 1024 * 1024);
    let group = |name: &str, notes: String| pb::ConfigObject {
        obj_code: "GROUP".into(),
        name: name.into(),
        fields: Some(prost_types::Struct {
            fields: [(
                "notes".to_string(),
                prost_types::Value { kind: Some(prost_types::value::Kind::StringValue(notes)) },
            )]
            .into_iter()
            .collect(),
        }),
        ..Default::default()
    };
    let req = pb::PutObjectsRequest {
        environment: "qa".into(),
        objects: vec![group("Too big", "x".repeat(20 * 1024 * 1024))],
        ..Default::default()
    };
    let status = assert_status(big.put_objects(req).await, Code::ResourceExhausted, "LIMIT_EXCEEDED");
    assert_eq!(metadata_of(&status)["limit"], "max_message_bytes");

    let mut request = Request::new(pb::ListEnvironmentsRequest::default());
    request.metadata_mut().insert("x-padding", "p".repeat(20 * 1024).parse().unwrap());
    let status = assert_status(big.list_environments(request).await, Code::ResourceExhausted, "LIMIT_EXCEEDED");
    assert_eq!(metadata_of(&status)["limit"], "max_header_bytes");
    let mut packages = dev.clients("admin").await.packages;
    let mut request = Request::new(pb::ListPackagesRequest::default());
    request.metadata_mut().insert("x-padding", "p".repeat(20 * 1024).parse().unwrap());
    assert_status(packages.list_packages(request).await, Code::ResourceExhausted, "LIMIT_EXCEEDED");
    // And both services still serve.
    big.list_environments(pb::ListEnvironmentsRequest::default()).await.expect("still serving");
    packages.list_packages(pb::ListPackagesRequest::default()).await.expect("still serving");
}

#[tokio::test]
async fn a_pre_run_mismatch_describes_nothing_the_caller_cannot_read() {
    let dev = DevServices::start().await;
    let mut admin = dev.clients("admin").await;
    let mut bob = dev.clients("bob").await;
    let p = group_package(&mut admin, "mismatch one", &[pb::PackageStatus::Preview]).await;
    let other = group_package(&mut admin, "mismatch two", &[pb::PackageStatus::Preview]).await;
    let pre_run = |dest: &str| pb::CreatePreRunRequest {
        package_id: p.id.clone(),
        destination_environment: dest.into(),
        ..Default::default()
    };
    // A plan into dev, which bob (deployer of qa and prod) cannot read, does not exist for him.
    let into_dev = admin.installations.create_pre_run(pre_run("dev")).await.unwrap().into_inner();
    let install = |pre_run_id: &str, package_id: &str| pb::CreateInstallationRequest {
        package_id: package_id.into(),
        destination_environment: "qa".into(),
        pre_run_id: pre_run_id.into(),
        ..Default::default()
    };
    let hidden = bob.installations.create_installation(install(&into_dev.id, &p.id)).await;
    let status = assert_status(hidden, Code::NotFound, "PRE_RUN_NOT_FOUND");
    assert!(!status.message().contains("dev"), "{status:?}");
    // A plan bob may read, for another package: the error names only what he asked for.
    let into_qa = bob.installations.create_pre_run(pre_run("qa")).await.unwrap().into_inner();
    let mismatch = bob.installations.create_installation(install(&into_qa.id, &other.id)).await;
    let status = assert_status(mismatch, Code::InvalidArgument, "PRE_RUN_MISMATCH");
    assert!(!status.message().contains(&p.id), "{status:?}");
}

#[tokio::test]
async fn pending_requests_of_deleted_or_retired_packages_end_cancelled_and_audited() {
    let dev = DevServices::start().await;
    let mut admin = dev.clients("admin").await;
    let mut alice = dev.clients("alice").await;
    let mut bob = dev.clients("bob").await;
    let deleted = group_package(&mut admin, "to be deleted", &[pb::PackageStatus::Preview]).await;
    let retired =
        group_package(&mut admin, "to be retired", &[pb::PackageStatus::Preview, pb::PackageStatus::Public]).await;
    let mut requests = Vec::new();
    for p in [&deleted, &retired] {
        let req = pb::RequestPromotionRequest {
            package_id: p.id.clone(),
            target_environment: "qa".into(),
            ..Default::default()
        };
        requests.push(alice.promotions.request_promotion(req).await.unwrap().into_inner().id);
    }
    let tasks = |c: &mut Clients| {
        let mut p = c.promotions.clone();
        async move {
            let req = pb::ListPromotionTasksRequest { page_size: 100, ..Default::default() };
            p.list_promotion_tasks(req).await.unwrap().into_inner().promotion_requests
        }
    };
    assert_eq!(tasks(&mut bob).await.len(), 2);
    let current =
        admin.packages.get_package(pb::GetPackageRequest { id: deleted.id.clone() }).await.unwrap().into_inner();
    let delete = pb::DeletePackageRequest { id: deleted.id.clone(), etag: current.etag, ..Default::default() };
    admin.packages.delete_package(delete).await.unwrap();
    set_package_status(&mut admin, &retired.id, pb::PackageStatus::Retired).await;

    assert!(tasks(&mut bob).await.is_empty(), "no approver sees them any more");
    for (id, reason) in requests.iter().zip(["PACKAGE_DELETED", "PACKAGE_RETIRED"]) {
        let r = bob.promotions.get_promotion_request(pb::GetPromotionRequestRequest { id: id.clone() }).await;
        let r = r.unwrap().into_inner();
        assert_eq!(r.status, pb::PromotionStatus::Cancelled as i32, "{r:?}");
        assert!(r.decision_comment.starts_with(reason), "{r:?}");
    }
    let req = pb::ListAuditEventsRequest { action: "PROMOTION_CANCELLED".into(), page_size: 100, ..Default::default() };
    let events = admin.installation_audit.list_audit_events(req).await.unwrap().into_inner().events;
    assert_eq!(events.len(), 2, "each ending is audited once: {events:?}");
    let accept = pb::AcceptPromotionRequestRequest { id: requests[0].clone(), ..Default::default() };
    assert_status(
        bob.promotions.accept_promotion_request(accept).await,
        Code::FailedPrecondition,
        "PROMOTION_NOT_PENDING",
    );
}

/// Development mode's published key and issuer: what a tester who read the source holds.
const DEV_SIGNING_KEY: &[u8] = b"development-mode-signing-key-do-not-use-in-production";
const DEV_ISSUER: &str = "promotion-dev";

/// A correctly signed token with exactly this header and these claims.
fn forged(header: &str, claims: serde_json::Value) -> String {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
    use hmac::Mac;
    let input = format!("{}.{}", B64.encode(header), B64.encode(claims.to_string()));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(DEV_SIGNING_KEY).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", B64.encode(mac.finalize().into_bytes()))
}

fn admin_claims(iat: i64, exp: i64) -> serde_json::Value {
    serde_json::json!({
        "iss": DEV_ISSUER, "sub": "admin", "org": "acme",
        "roles": [{"role": "admin", "environment": "*"}], "iat": iat, "exp": exp,
    })
}

#[tokio::test]
async fn tokens_with_claims_or_headers_the_issuer_never_writes_are_refused_by_both_services() {
    let dev = DevServices::start().await;
    let now = chrono::Utc::now().timestamp();
    const JWT: &str = r#"{"alg":"HS256","typ":"JWT"}"#;
    let mut not_before_later = admin_claims(now, now + 600);
    not_before_later["nbf"] = (now + 300).into();
    let cases = [
        ("nbf five minutes ahead", forged(JWT, not_before_later), "TOKEN_NOT_YET_VALID"),
        ("issued an hour ahead", forged(JWT, admin_claims(now + 3600, now + 7200)), "TOKEN_NOT_YET_VALID"),
        ("exp near i64::MAX", forged(JWT, admin_claims(now, i64::MAX - 1)), "TOKEN_LIFETIME_TOO_LONG"),
        ("a lifetime past max_ttl_seconds", forged(JWT, admin_claims(now, now + 86_401)), "TOKEN_LIFETIME_TOO_LONG"),
        (
            "a crit header",
            forged(r#"{"alg":"HS256","typ":"JWT","crit":["x-ok"],"x-ok":1}"#, admin_claims(now, now + 600)),
            "TOKEN_UNSUPPORTED",
        ),
        ("alg none", forged(r#"{"alg":"none","typ":"JWT"}"#, admin_claims(now, now + 600)), "TOKEN_UNSUPPORTED"),
        ("another typ", forged(r#"{"alg":"HS256","typ":"at+jwt"}"#, admin_claims(now, now + 600)), "TOKEN_UNSUPPORTED"),
    ];
    for (label, token, reason) in cases {
        let mut c = Clients::connect(dev.package_addr, dev.installation_addr, Some(token)).await;
        let on_packages = c.auth.who_am_i(pb::WhoAmIRequest {}).await;
        let status = assert_status(on_packages, Code::Unauthenticated, reason);
        assert!(!status.message().is_empty(), "{label}: the refusal says why");
        let on_installations = c.environments.list_environments(pb::ListEnvironmentsRequest::default()).await;
        assert_status(on_installations, Code::Unauthenticated, reason);
    }
    // The same claims within the rules are accepted: the refusals above are the claims'.
    let fine = forged(r#"{"alg":"HS256","typ":"JWT"}"#, admin_claims(now, now + 600));
    let mut c = Clients::connect(dev.package_addr, dev.installation_addr, Some(fine)).await;
    assert_eq!(c.auth.who_am_i(pb::WhoAmIRequest {}).await.unwrap().into_inner().subject, "admin");
    c.environments.list_environments(pb::ListEnvironmentsRequest::default()).await.unwrap();
}

/// What a status costs in headers: its message and its encoded details.
fn header_bytes(s: &tonic::Status) -> usize {
    s.message().len() + s.details().len()
}

/// A GROUP of `n` owned by `parent` (or a root).
fn crowd_member(n: usize, parent: Option<&str>) -> pb::ConfigObject {
    pb::ConfigObject {
        obj_code: "GROUP".into(),
        id: format!("{:032x}", 0xc40d_0000_u64 + n as u64),
        name: format!("Crowd {n:05} {}", "c".repeat(200)),
        parent: parent.map(|p| pb::ObjectKey { obj_code: "GROUP".into(), id: p.into() }),
        ..Default::default()
    }
}

#[tokio::test]
async fn errors_about_thousands_of_objects_stay_small_enough_for_every_client() {
    const CHILDREN: usize = 3000;
    let dev = DevServices::start().await;
    let mut admin = dev.clients("admin").await;
    let mut bob = dev.clients("bob").await;
    let root = crowd_member(0, None);
    let mut crowd = vec![root.clone()];
    crowd.extend((1..=CHILDREN).map(|n| crowd_member(n, Some(&root.id))));
    let put = |env: &str, objects: Vec<pb::ConfigObject>| pb::PutObjectsRequest {
        environment: env.into(),
        objects,
        ..Default::default()
    };
    admin.environments.put_objects(put("dev", crowd.clone())).await.expect("the crowd is stored");

    let delete = pb::DeleteObjectRequest {
        environment: "dev".into(),
        obj_code: "GROUP".into(),
        id: root.id.clone(),
        ..Default::default()
    };
    let refused =
        assert_status(admin.environments.delete_object(delete).await, Code::FailedPrecondition, "HAS_CHILDREN");
    assert_eq!(metadata_of(&refused)["count"], CHILDREN.to_string());
    assert!(header_bytes(&refused) <= 8 * 1024, "HAS_CHILDREN takes {} bytes of headers", header_bytes(&refused));

    // A pre-run of the crowd into qa, made stale for every entry: the tester's 5,000-entry
    // PRE_RUN_STALE of 291 KB.
    let create = pb::CreatePackageRequest {
        name: "The crowd".into(),
        source_environment: "dev".into(),
        object_collections: vec![pb::ObjectCollection {
            obj_code: "GROUP".into(),
            entities: vec![pb::EntityRef { id: root.id.clone(), name: String::new() }],
        }],
        ..Default::default()
    };
    let package = admin.packages.create_package(create).await.unwrap().into_inner();
    extracted(&mut admin, &package.id).await;
    set_package_status(&mut admin, &package.id, pb::PackageStatus::Preview).await;
    let plan = pb::CreatePreRunRequest {
        package_id: package.id.clone(),
        destination_environment: "qa".into(),
        ..Default::default()
    };
    let pre_run = bob.installations.create_pre_run(plan).await.unwrap().into_inner();
    admin.environments.put_objects(put("qa", crowd.clone())).await.expect("qa gets the same objects first");
    let install = pb::CreateInstallationRequest {
        package_id: package.id.clone(),
        destination_environment: "qa".into(),
        pre_run_id: pre_run.id.clone(),
        ..Default::default()
    };
    let stale = assert_status(bob.installations.create_installation(install).await, Code::Aborted, "PRE_RUN_STALE");
    assert!(metadata_of(&stale)["count"].parse::<usize>().unwrap() > CHILDREN);
    assert!(header_bytes(&stale) <= 8 * 1024, "PRE_RUN_STALE takes {} bytes of headers", header_bytes(&stale));

    // Installed afresh, then every object edited: the rollback's refusal lists them all.
    let clear = pb::DeleteObjectRequest {
        environment: "qa".into(),
        obj_code: "GROUP".into(),
        id: root.id.clone(),
        cascade: true,
        ..Default::default()
    };
    admin.environments.delete_object(clear).await.expect("qa's copies go");
    let install = pb::CreateInstallationRequest {
        package_id: package.id.clone(),
        destination_environment: "qa".into(),
        translation_map: Default::default(),
        ..Default::default()
    };
    let installed = bob.installations.create_installation(install).await.expect("installs over them").into_inner();
    let mut edited = Vec::new();
    let mut list = pb::ListObjectsRequest {
        environment: "qa".into(),
        obj_code: "GROUP".into(),
        page_size: 1000,
        ..Default::default()
    };
    loop {
        let page = admin.environments.list_objects(list.clone()).await.unwrap().into_inner();
        let installed = page.objects.into_iter().filter(|o| o.name.starts_with("Crowd "));
        edited.extend(installed.map(|o| pb::ConfigObject { name: format!("{} edited", &o.name[..11]), ..o }));
        if page.next_page_token.is_empty() {
            break;
        }
        list.page_token = page.next_page_token;
    }
    assert_eq!(edited.len(), CHILDREN + 1, "the installation wrote the whole crowd");
    admin.environments.put_objects(put("qa", edited)).await.expect("qa edited after the install");
    let rollback = pb::RollbackInstallationRequest { id: installed.id, ..Default::default() };
    let modified = bob.installations.rollback_installation(rollback).await;
    let modified = assert_status(modified, Code::FailedPrecondition, "OBJECTS_MODIFIED_SINCE_INSTALL");
    assert!(metadata_of(&modified)["count"].parse::<usize>().unwrap() > CHILDREN);
    assert!(header_bytes(&modified) <= 8 * 1024, "{} bytes of headers", header_bytes(&modified));
}
