//! The foundation seen from outside: both services of `promotion dev` over gRPC — health,
//! reflection, tokens, organization isolation, permissions, the environment registry
//! (PutObjects, GetObject, ListObjects, DeleteObject, ExportObjects, GetCatalog) and
//! durability across restarts.
mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use common::*;
use promotion_api::convert::map_to_struct;
use promotion_api::v1 as pb;
use promotion_core::identity::{Binding, Identity, Role};
use promotion_core::tokens::TokenSigner;
use serde_json::json;
use tonic::Code;

/// The key and issuer development mode signs with (crates/dev/src/mode.rs).
const DEV_SIGNING_KEY: &[u8] = b"development-mode-signing-key-do-not-use-in-production";
const DEV_ISSUER: &str = "promotion-dev";

/// Ids no seed uses: tests create their own objects under them.
fn test_id(n: u32) -> String {
    format!("feedface0000000000000000{n:08x}")
}

fn object(obj_code: &str, id: &str, name: &str) -> pb::ConfigObject {
    pb::ConfigObject { obj_code: obj_code.into(), id: id.into(), name: name.into(), ..Default::default() }
}

fn owned_by(mut o: pb::ConfigObject, parent_code: &str, parent_id: &str) -> pb::ConfigObject {
    o.parent = Some(pb::ObjectKey { obj_code: parent_code.into(), id: parent_id.into() });
    o
}

fn referring(mut o: pb::ConfigObject, field: &str, obj_code: &str, id: &str) -> pb::ConfigObject {
    o.references.push(pb::Reference { field: field.into(), obj_code: obj_code.into(), id: id.into(), optional: false });
    o
}

fn put(environment: &str, objects: Vec<pb::ConfigObject>) -> pb::PutObjectsRequest {
    pb::PutObjectsRequest { environment: environment.into(), objects, request_id: String::new(), ..Default::default() }
}

fn get(environment: &str, obj_code: &str, id: &str) -> pb::GetObjectRequest {
    pb::GetObjectRequest { environment: environment.into(), obj_code: obj_code.into(), id: id.into() }
}

fn list(environment: &str, obj_code: &str) -> pb::ListObjectsRequest {
    pb::ListObjectsRequest { environment: environment.into(), obj_code: obj_code.into(), ..Default::default() }
}

fn roots(obj_code: &str, id: &str) -> Vec<pb::ObjectCollection> {
    vec![pb::ObjectCollection {
        obj_code: obj_code.into(),
        entities: vec![pb::EntityRef { id: id.into(), name: String::new() }],
    }]
}

async fn revision(c: &mut Clients, environment: &str) -> u64 {
    let req = pb::GetEnvironmentRequest { id: environment.into() };
    c.environments.get_environment(req).await.unwrap().into_inner().revision
}

/// Every object a listing yields, following next_page_token to the end.
async fn list_all(c: &mut Clients, mut req: pb::ListObjectsRequest) -> Vec<pb::ConfigObject> {
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let page = c.environments.list_objects(req.clone()).await.unwrap().into_inner();
        assert!(page.objects.len() <= req.page_size.max(0) as usize || req.page_size == 0, "page over its size");
        out.extend(page.objects);
        if page.next_page_token.is_empty() {
            return out;
        }
        req.page_token = page.next_page_token;
    }
    panic!("pagination never ended");
}

/// All chunks of an export stream.
async fn export(
    c: &mut Clients,
    environment: &str,
    roots: Vec<pb::ObjectCollection>,
) -> Vec<pb::ExportObjectsResponse> {
    let req = pb::ExportObjectsRequest { environment: environment.into(), roots };
    let mut stream = c.environments.export_objects(req).await.unwrap().into_inner();
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        chunks.push(chunk);
    }
    assert!(!chunks.is_empty(), "an export has at least its first chunk");
    chunks
}

fn mint(identity: &Identity, key: &[u8]) -> String {
    TokenSigner::new(key, DEV_ISSUER).issue(identity, chrono::Utc::now())
}

fn alice_identity(expires_at: i64) -> Identity {
    Identity {
        subject: "alice".into(),
        organization: "acme".into(),
        bindings: vec![Binding { role: Role::Publisher, environment: "dev".into() }],
        expires_at,
    }
}

async fn reflected_services(addr: std::net::SocketAddr) -> BTreeSet<String> {
    use tonic_reflection::pb::v1alpha::{
        server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
        server_reflection_response::MessageResponse, ServerReflectionRequest,
    };
    let mut client = ServerReflectionClient::new(channel(addr).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let response = stream.message().await.unwrap().expect("one reflection response");
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => list.service.into_iter().map(|s| s.name).collect(),
        other => panic!("unexpected reflection response {other:?}"),
    }
}

/// Whether reflection can describe `symbol` (grpcurl needs google.rpc.ErrorInfo to show an
/// error's reason).
async fn reflection_knows(addr: std::net::SocketAddr, symbol: &str) -> bool {
    use tonic_reflection::pb::v1alpha::{
        server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
        server_reflection_response::MessageResponse, ServerReflectionRequest,
    };
    let mut client = ServerReflectionClient::new(channel(addr).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(symbol.into())),
    };
    let mut stream = client.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    // An unknown symbol is an error status on the stream (tonic) or an ErrorResponse.
    let Ok(Some(response)) = stream.message().await else { return false };
    matches!(response.message_response, Some(MessageResponse::FileDescriptorResponse(f)) if !f.file_descriptor_proto.is_empty())
}

async fn service_health(addr: std::net::SocketAddr, service: &str) -> Result<i32, tonic::Status> {
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel(addr).await);
    let req = tonic_health::pb::HealthCheckRequest { service: service.into() };
    client.check(req).await.map(|r| r.into_inner().status)
}

#[tokio::test]
async fn both_services_report_serving_and_answer_reflection() {
    let dev = DevServices::start().await;
    const SERVING: i32 = 1;
    assert_eq!(health_status(dev.package_addr).await, Some(SERVING));
    assert_eq!(health_status(dev.installation_addr).await, Some(SERVING));
    for (addr, service) in [
        (dev.package_addr, "promotion.v1.AuthService"),
        (dev.package_addr, "promotion.v1.PackageService"),
        (dev.installation_addr, "promotion.v1.EnvironmentService"),
        (dev.installation_addr, "promotion.v1.InstallationService"),
    ] {
        assert_eq!(service_health(addr, service).await.unwrap(), SERVING, "{service} at {addr}");
    }
    let unknown = service_health(dev.installation_addr, "promotion.v1.NoSuchService").await;
    assert_eq!(unknown.unwrap_err().code(), Code::NotFound);

    let package = reflected_services(dev.package_addr).await;
    let installation = reflected_services(dev.installation_addr).await;
    for name in ["grpc.health.v1.Health", "promotion.v1.AuthService", "promotion.v1.PackageService"] {
        assert!(package.contains(name), "package service reflection lacks {name}: {package:?}");
    }
    for name in [
        "grpc.health.v1.Health",
        "promotion.v1.EnvironmentService",
        "promotion.v1.InstallationService",
        "promotion.v1.PromotionService",
        "promotion.v1.AuditService",
    ] {
        assert!(installation.contains(name), "installation service reflection lacks {name}: {installation:?}");
    }
    for addr in [dev.package_addr, dev.installation_addr] {
        for symbol in ["promotion.v1.EnvironmentService", "promotion.v1.ConfigObject", "google.rpc.ErrorInfo"] {
            assert!(reflection_knows(addr, symbol).await, "reflection at {addr} cannot describe {symbol}");
        }
        assert!(!reflection_knows(addr, "promotion.v1.NoSuchMessage").await);
    }
}

#[tokio::test]
async fn calls_without_a_valid_token_are_unauthenticated() {
    let dev = DevServices::start().await;
    let mut anonymous = dev.anonymous().await;
    let r = anonymous.environments.list_environments(pb::ListEnvironmentsRequest::default()).await;
    assert_status(r, Code::Unauthenticated, "TOKEN_MISSING");
    let r = anonymous.environments.put_objects(put("dev", vec![object("GROUP", &test_id(1), "x")])).await;
    assert_status(r, Code::Unauthenticated, "TOKEN_MISSING");
    let r = anonymous.auth.who_am_i(pb::WhoAmIRequest {}).await;
    assert_status(r, Code::Unauthenticated, "TOKEN_MISSING");
    let r = anonymous.package_audit.list_audit_events(pb::ListAuditEventsRequest::default()).await;
    assert_status(r, Code::Unauthenticated, "TOKEN_MISSING");

    let now = chrono::Utc::now().timestamp();
    let expired = mint(&alice_identity(now - 60), DEV_SIGNING_KEY);
    let forged = mint(&alice_identity(now + 3600), b"some-other-key-that-is-long-enough-to-pass-as-real");
    for (token, reason) in
        [(expired, "TOKEN_EXPIRED"), (forged, "TOKEN_INVALID"), ("not.a-token".to_string(), "TOKEN_MALFORMED")]
    {
        let mut c = Clients::connect(dev.package_addr, dev.installation_addr, Some(token)).await;
        let r = c.environments.list_objects(list("dev", "TMPL")).await;
        assert_status(r, Code::Unauthenticated, reason);
        let r = c.auth.who_am_i(pb::WhoAmIRequest {}).await;
        assert_status(r, Code::Unauthenticated, reason);
    }
    // The same claims signed with the right key are accepted: the checks above failed for
    // the reason they name, not for something else about the token.
    let good = mint(&alice_identity(now + 3600), DEV_SIGNING_KEY);
    let mut c = Clients::connect(dev.package_addr, dev.installation_addr, Some(good)).await;
    c.environments.list_objects(list("dev", "TMPL")).await.unwrap();
}

#[tokio::test]
async fn tokens_need_the_right_client_secret_and_echo_the_identity() {
    let dev = DevServices::start().await;
    let mut anonymous = dev.anonymous().await;
    for (client_id, client_secret) in [("alice", "bob-secret"), ("alice", ""), ("mallory", "mallory-secret")] {
        let req =
            pb::IssueTokenRequest { client_id: client_id.into(), client_secret: client_secret.into(), ttl_seconds: 0 };
        assert_status(anonymous.auth.issue_token(req).await, Code::Unauthenticated, "INVALID_CLIENT");
    }
    let req =
        pb::IssueTokenRequest { client_id: "alice".into(), client_secret: "alice-secret".into(), ttl_seconds: -5 };
    assert_status(anonymous.auth.issue_token(req).await, Code::InvalidArgument, "INVALID_TTL");

    let req =
        pb::IssueTokenRequest { client_id: "alice".into(), client_secret: "alice-secret".into(), ttl_seconds: 600 };
    let issued = anonymous.auth.issue_token(req).await.unwrap().into_inner();
    assert_eq!(issued.token_type, "Bearer");
    let mut alice = Clients::connect(dev.package_addr, dev.installation_addr, Some(issued.access_token.clone())).await;
    let me = alice.auth.who_am_i(pb::WhoAmIRequest {}).await.unwrap().into_inner();
    assert_eq!(me.subject, "alice");
    assert_eq!(me.organization, "acme");
    let bindings: BTreeSet<(String, String)> =
        me.bindings.iter().map(|b| (b.role.clone(), b.environment.clone())).collect();
    let expected = [("publisher", "dev"), ("publisher", "qa")].map(|(r, e)| (r.to_string(), e.to_string()));
    assert_eq!(bindings, BTreeSet::from(expected));
    assert_eq!(me.expire_time, issued.expire_time, "WhoAmI echoes the token's expiry");
    assert_eq!(Some(me), issued.identity);

    let gina = dev.clients("gina").await.auth.who_am_i(pb::WhoAmIRequest {}).await.unwrap().into_inner();
    assert_eq!((gina.subject.as_str(), gina.organization.as_str()), ("gina", "globex"));
}

#[tokio::test]
async fn another_organizations_environment_does_not_exist_for_the_caller() {
    let dev = DevServices::start().await;
    let mut gina = dev.clients("gina").await;
    let envs = gina.environments.list_environments(pb::ListEnvironmentsRequest::default()).await.unwrap();
    let ids: Vec<String> = envs.into_inner().environments.into_iter().map(|e| e.id).collect();
    assert_eq!(ids, vec!["globex-dev", "globex-prod"]);

    for env in ["dev", "no-such-environment"] {
        let r = gina.environments.get_environment(pb::GetEnvironmentRequest { id: env.into() }).await;
        let status = assert_status(r, Code::NotFound, "ENVIRONMENT_NOT_FOUND");
        assert_eq!(status.message(), format!("environment {env:?} not found"), "no hint that {env} exists");
        let r = gina.environments.list_objects(list(env, "TMPL")).await;
        assert_status(r, Code::NotFound, "ENVIRONMENT_NOT_FOUND");
        let r = gina.environments.get_object(get(env, "TMPL", ONBOARDING_TMPL)).await;
        assert_status(r, Code::NotFound, "ENVIRONMENT_NOT_FOUND");
        let r = gina.environments.put_objects(put(env, vec![object("GROUP", &test_id(1), "Intruders")])).await;
        assert_status(r, Code::NotFound, "ENVIRONMENT_NOT_FOUND");
        let r = gina
            .environments
            .export_objects(pb::ExportObjectsRequest { environment: env.into(), roots: roots("TMPL", ONBOARDING_TMPL) })
            .await;
        assert_status(r, Code::NotFound, "ENVIRONMENT_NOT_FOUND");
    }
    let r =
        gina.environments.get_catalog(pb::GetCatalogRequest { name: "workfront".into(), environment: String::new() });
    assert_status(r.await, Code::NotFound, "CATALOG_NOT_FOUND");

    // Nothing reached acme's dev.
    let mut admin = dev.clients("admin").await;
    let r = admin.environments.get_object(get("dev", "GROUP", &test_id(1))).await;
    assert_status(r, Code::NotFound, "OBJECT_NOT_FOUND");
}

#[tokio::test]
async fn alice_lists_dev_objects_and_sees_her_organizations_environments() {
    let dev = DevServices::start().await;
    let mut alice = dev.clients("alice").await;
    let envs = alice.environments.list_environments(pb::ListEnvironmentsRequest::default()).await.unwrap();
    let envs = envs.into_inner().environments;
    let summary: Vec<(String, i32, String)> = envs.iter().map(|e| (e.id.clone(), e.kind, e.catalog.clone())).collect();
    let sandbox = pb::EnvironmentKind::Sandbox as i32;
    let production = pb::EnvironmentKind::Production as i32;
    assert_eq!(
        summary,
        vec![
            ("dev".into(), sandbox, "workfront".into()),
            ("prod".into(), production, "workfront".into()),
            ("qa".into(), sandbox, "workfront".into()),
        ]
    );
    let dev_env = envs.iter().find(|e| e.id == "dev").unwrap();
    assert!(dev_env.revision > 0 && dev_env.object_counts.get("TMPL").copied() >= Some(2), "dev is seeded");

    let templates = alice.environments.list_objects(list("dev", "TMPL")).await.unwrap().into_inner().objects;
    let names: BTreeMap<String, String> = templates.iter().map(|o| (o.id.clone(), o.name.clone())).collect();
    assert_eq!(names.get(ONBOARDING_TMPL).map(String::as_str), Some("New Agency Onboarding"));
    assert_eq!(names.get(OFFBOARDING_TMPL).map(String::as_str), Some("New Agency Offboarding"));
    let project = alice.environments.get_object(get("dev", "PROJ", AGENCY_REQUEST_PROJ)).await.unwrap().into_inner();
    assert_eq!(project.name, "Agency Request");
    let dashboard = alice.environments.get_object(get("dev", "PTLTAB", READINESS_PTLTAB)).await.unwrap().into_inner();
    assert_eq!(dashboard.name, "Agency Performance and Readiness");
}

#[tokio::test]
async fn writing_objects_needs_environment_write_on_that_environment() {
    let dev = DevServices::start().await;
    let mut victor = dev.clients("victor").await;
    let mut alice = dev.clients("alice").await;
    let mut erin = dev.clients("erin").await;
    let before = revision(&mut victor, "dev").await;
    let group = || object("GROUP", &test_id(1), "Victor's Group");

    // A viewer reads but cannot write; neither can a publisher; an editor of dev and qa
    // cannot write prod.
    victor.environments.list_objects(list("dev", "GROUP")).await.unwrap();
    let denied = assert_status(
        victor.environments.put_objects(put("dev", vec![group()])).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    assert_eq!(metadata_of(&denied).get("permission").map(String::as_str), Some("environment.write"));
    let r = alice.environments.put_objects(put("dev", vec![group()])).await;
    assert_status(r, Code::PermissionDenied, "PERMISSION_DENIED");
    let r = erin.environments.put_objects(put("prod", vec![group()])).await;
    assert_status(r, Code::PermissionDenied, "PERMISSION_DENIED");
    let r = victor
        .environments
        .delete_object(pb::DeleteObjectRequest {
            environment: "dev".into(),
            obj_code: "TMPL".into(),
            id: ONBOARDING_TMPL.into(),
            cascade: true,
            request_id: String::new(),
        })
        .await;
    assert_status(r, Code::PermissionDenied, "PERMISSION_DENIED");
    assert_eq!(revision(&mut victor, "dev").await, before, "denied calls write nothing");
    assert_status(
        victor.environments.get_object(get("dev", "GROUP", &test_id(1))).await,
        Code::NotFound,
        "OBJECT_NOT_FOUND",
    );

    // An editor writes: the revision goes up by one for the whole batch.
    let counts_before = erin.environments.get_environment(pb::GetEnvironmentRequest { id: "dev".into() }).await;
    let groups_before = counts_before.unwrap().into_inner().object_counts.get("GROUP").copied().unwrap_or(0);
    let mut fields = json!({"description": "made by a test"});
    let mut generated = object("GROUP", "", "Generated Id Group");
    generated.fields = Some(map_to_struct(fields.as_object_mut().unwrap()));
    let written = erin.environments.put_objects(put("dev", vec![group(), generated])).await.unwrap().into_inner();
    assert_eq!(written.revision, before + 1);
    assert_eq!(written.objects.len(), 2);
    let new_id = &written.objects[1].id;
    assert!(new_id.len() == 32 && new_id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert!(written.objects.iter().all(|o| o.revision == before + 1 && o.update_time.is_some()));
    let env = erin.environments.get_environment(pb::GetEnvironmentRequest { id: "dev".into() }).await.unwrap();
    let env = env.into_inner();
    assert_eq!(env.revision, before + 1);
    assert_eq!(env.object_counts.get("GROUP").copied(), Some(groups_before + 2));
    let stored = victor.environments.get_object(get("dev", "GROUP", new_id)).await.unwrap().into_inner();
    assert_eq!(stored.name, "Generated Id Group");
    assert_eq!(stored.fields, written.objects[1].fields);

    // Writing the same id again updates it in place.
    let renamed = erin.environments.put_objects(put("dev", vec![object("GROUP", new_id, "Renamed Group")])).await;
    assert_eq!(renamed.unwrap().into_inner().revision, before + 2);
    let stored = victor.environments.get_object(get("dev", "GROUP", new_id)).await.unwrap().into_inner();
    assert_eq!((stored.name.as_str(), stored.revision), ("Renamed Group", before + 2));
}

#[tokio::test]
async fn invalid_batches_are_refused_with_a_reason_and_write_nothing() {
    let dev = DevServices::start().await;
    let mut erin = dev.clients("erin").await;
    let before = revision(&mut erin, "dev").await;
    // Each batch starts with a valid object that must not be written either.
    let valid = || object("ROLE", &test_id(100), "Batch Companion Role");
    let mut bad_id = object("GROUP", "NOT-A-HEX-ID", "Bad Id");
    let cases: Vec<(&str, pb::ConfigObject, Code, &str)> = vec![
        ("unknown type", object("NOPE", &test_id(1), "x"), Code::InvalidArgument, "UNKNOWN_TYPE"),
        ("malformed id", std::mem::take(&mut bad_id), Code::InvalidArgument, "INVALID_ID"),
        (
            "dangling reference",
            referring(object("TMPL", &test_id(2), "Dangling"), "group", "GROUP", &test_id(999)),
            Code::FailedPrecondition,
            "REFERENCE_NOT_FOUND",
        ),
        (
            "duplicate GROUP name",
            object("GROUP", &test_id(3), "Agency Operations"),
            Code::FailedPrecondition,
            "NAME_CONFLICT",
        ),
        (
            "template task without parent",
            object("TTSK", &test_id(4), "Orphan Task"),
            Code::InvalidArgument,
            "PARENT_REQUIRED",
        ),
        (
            "template task under a group",
            owned_by(object("TTSK", &test_id(5), "Misplaced Task"), "GROUP", &test_id(6)),
            Code::InvalidArgument,
            "INVALID_PARENT",
        ),
        (
            "parent that does not exist",
            owned_by(object("TTSK", &test_id(7), "Lost Task"), "TMPL", &test_id(8)),
            Code::FailedPrecondition,
            "PARENT_NOT_FOUND",
        ),
        ("empty name", object("ROLE", &test_id(9), " "), Code::InvalidArgument, "INVALID_NAME"),
    ];
    for (what, bad, code, reason) in cases {
        let r = erin.environments.put_objects(put("dev", vec![valid(), bad])).await;
        let status = r.expect_err(what);
        assert_eq!((status.code(), reason_of(&status).as_deref()), (code, Some(reason)), "{what}: {status:?}");
        let meta = metadata_of(&status);
        assert!(meta.contains_key("field") || meta.contains_key("objects"), "{what}: ErrorInfo names the culprit");
    }
    // Two groups with one name inside a single batch.
    let twins = vec![object("GROUP", &test_id(10), "Twins"), object("GROUP", &test_id(11), "Twins")];
    assert_status(erin.environments.put_objects(put("dev", twins)).await, Code::FailedPrecondition, "NAME_CONFLICT");
    let r = erin.environments.put_objects(put("dev", vec![])).await;
    assert_status(r, Code::InvalidArgument, "MISSING_FIELD");

    assert_eq!(revision(&mut erin, "dev").await, before, "no refused batch bumped the revision");
    for (code, n) in [("ROLE", 100), ("TMPL", 2), ("GROUP", 3), ("GROUP", 10), ("GROUP", 11), ("TTSK", 4)] {
        let r = erin.environments.get_object(get("dev", code, &test_id(n))).await;
        assert_status(r, Code::NotFound, "OBJECT_NOT_FOUND");
    }
    // The companion on its own is fine: the refusals were about the bad objects.
    erin.environments.put_objects(put("dev", vec![valid()])).await.unwrap();
}

#[tokio::test]
async fn objects_are_read_by_type_name_prefix_parent_and_page() {
    let dev = DevServices::start().await;
    let mut alice = dev.clients("alice").await;

    let tmpl = alice.environments.get_object(get("dev", "TMPL", ONBOARDING_TMPL)).await.unwrap().into_inner();
    assert_eq!((tmpl.obj_code.as_str(), tmpl.name.as_str()), ("TMPL", "New Agency Onboarding"));
    assert!(tmpl.revision > 0 && tmpl.update_time.is_some());
    let r = alice.environments.get_object(get("dev", "TMPL", &test_id(1))).await;
    assert_status(r, Code::NotFound, "OBJECT_NOT_FOUND");
    let r = alice.environments.get_object(get("dev", "PROJ", ONBOARDING_TMPL)).await;
    assert_status(r, Code::NotFound, "OBJECT_NOT_FOUND");
    let r = alice.environments.get_object(get("dev", "TMPL", "6419B8B9")).await;
    assert_status(r, Code::InvalidArgument, "INVALID_ID");

    let groups = list_all(&mut alice, list("dev", "GROUP")).await;
    assert!(groups.len() >= 5 && groups.iter().all(|o| o.obj_code == "GROUP"));
    let mut prefixed = list("dev", "TMPL");
    prefixed.name_prefix = "New Agency On".into();
    let names: Vec<String> = list_all(&mut alice, prefixed).await.into_iter().map(|o| o.name).collect();
    assert_eq!(names, vec!["New Agency Onboarding"]);

    let mut tasks = list("dev", "TTSK");
    tasks.parent_id = ONBOARDING_TMPL.into();
    let onboarding_tasks = list_all(&mut alice, tasks).await;
    assert!(!onboarding_tasks.is_empty());
    assert!(onboarding_tasks.iter().all(|t| t.parent.as_ref().is_some_and(|p| p.id == ONBOARDING_TMPL)));
    let all_tasks = list_all(&mut alice, list("dev", "TTSK")).await;
    assert!(all_tasks.len() > onboarding_tasks.len(), "the offboarding template has tasks too");

    // Pages of two cover exactly what one big page holds, in the same order, once each.
    let mut big = list("dev", "GROUP");
    big.page_size = 1000;
    let everything = alice.environments.list_objects(big).await.unwrap().into_inner();
    assert!(everything.next_page_token.is_empty());
    let mut small = list("dev", "GROUP");
    small.page_size = 2;
    let paged = list_all(&mut alice, small).await;
    let ids = |v: &[pb::ConfigObject]| v.iter().map(|o| o.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&paged), ids(&everything.objects));
    assert_eq!(ids(&paged).into_iter().collect::<HashSet<_>>().len(), paged.len());

    let mut negative = list("dev", "GROUP");
    negative.page_size = -1;
    assert_status(alice.environments.list_objects(negative).await, Code::InvalidArgument, "INVALID_PAGE_SIZE");
    let r =
        alice.environments.list_environments(pb::ListEnvironmentsRequest { page_size: -1, page_token: String::new() });
    assert_status(r.await, Code::InvalidArgument, "INVALID_PAGE_SIZE");
    let mut forged = list("dev", "GROUP");
    forged.page_token = "!!not-a-token!!".into();
    assert_status(alice.environments.list_objects(forged).await, Code::InvalidArgument, "INVALID_PAGE_TOKEN");
    assert_status(alice.environments.list_objects(list("dev", "NOPE")).await, Code::InvalidArgument, "UNKNOWN_TYPE");
}

#[tokio::test]
async fn delete_refuses_children_and_referrers_unless_cascade() {
    let dev = DevServices::start().await;
    let mut erin = dev.clients("erin").await;
    let (group, tmpl, task) = (test_id(1), test_id(2), test_id(3));
    let batch = vec![
        object("GROUP", &group, "Deletion Test Group"),
        object("TMPL", &tmpl, "Deletion Test Template"),
        referring(owned_by(object("TTSK", &task, "Deletion Test Task"), "TMPL", &tmpl), "group", "GROUP", &group),
    ];
    erin.environments.put_objects(put("dev", batch)).await.unwrap();
    let delete = |obj_code: &str, id: &str, cascade: bool| pb::DeleteObjectRequest {
        environment: "dev".into(),
        obj_code: obj_code.into(),
        id: id.into(),
        cascade,
        request_id: String::new(),
    };
    let before = revision(&mut erin, "dev").await;
    let refused = erin.environments.delete_object(delete("TMPL", &tmpl, false)).await;
    let status = assert_status(refused, Code::FailedPrecondition, "HAS_CHILDREN");
    assert!(metadata_of(&status)["objects"].contains(&task));
    let refused = erin.environments.delete_object(delete("GROUP", &group, false)).await;
    let status = assert_status(refused, Code::FailedPrecondition, "REFERENCED");
    assert!(metadata_of(&status)["objects"].contains(&task));
    let refused = erin.environments.delete_object(delete("TMPL", ONBOARDING_TMPL, false)).await;
    assert_status(refused, Code::FailedPrecondition, "HAS_CHILDREN");
    assert_eq!(revision(&mut erin, "dev").await, before, "refused deletes write nothing");
    let r = erin.environments.delete_object(delete("GROUP", &test_id(99), false)).await;
    assert_status(r, Code::NotFound, "OBJECT_NOT_FOUND");

    // Cascading a referenced group drops the reference; cascading a template takes its tasks.
    let deleted = erin.environments.delete_object(delete("GROUP", &group, true)).await.unwrap().into_inner();
    assert_eq!(deleted.deleted, vec![pb::ObjectKey { obj_code: "GROUP".into(), id: group.clone() }]);
    assert_eq!(deleted.revision, before + 1);
    let task_now = erin.environments.get_object(get("dev", "TTSK", &task)).await.unwrap().into_inner();
    assert!(task_now.references.is_empty(), "the task no longer points at the deleted group");
    let deleted = erin.environments.delete_object(delete("TMPL", &tmpl, true)).await.unwrap().into_inner();
    let keys: BTreeSet<(String, String)> = deleted.deleted.into_iter().map(|k| (k.obj_code, k.id)).collect();
    assert_eq!(keys, BTreeSet::from([("TMPL".to_string(), tmpl.clone()), ("TTSK".to_string(), task.clone())]));
    for (code, id) in [("GROUP", &group), ("TMPL", &tmpl), ("TTSK", &task)] {
        let r = erin.environments.get_object(get("dev", code, id)).await;
        assert_status(r, Code::NotFound, "OBJECT_NOT_FOUND");
    }
}

#[tokio::test]
async fn export_of_the_seed_template_is_its_catalog_row_each_object_once() {
    let dev = DevServices::start().await;
    let mut alice = dev.clients("alice").await;
    let catalog =
        alice.environments.get_catalog(pb::GetCatalogRequest { name: String::new(), environment: "dev".into() });
    let catalog = catalog.await.unwrap().into_inner();
    let tmpl_row = catalog.types.iter().find(|t| t.obj_code == "TMPL").unwrap();
    let included: HashSet<&str> = tmpl_row.includes.iter().map(String::as_str).collect();

    let chunks = export(&mut alice, "dev", roots("TMPL", ONBOARDING_TMPL)).await;
    let first = &chunks[0];
    assert!(first.revision > 0 && first.warnings.is_empty());
    let objects: Vec<&pb::ConfigObject> = chunks.iter().flat_map(|c| &c.objects).collect();
    let externals: Vec<&pb::ExternalReference> = chunks.iter().flat_map(|c| &c.external_references).collect();
    let ids: HashSet<&str> = objects.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids.len(), objects.len(), "each object appears once");
    let by_code = |code: &str| objects.iter().filter(|o| o.obj_code == code).collect::<Vec<_>>();

    let templates = by_code("TMPL");
    assert_eq!(templates.len(), 1);
    assert_eq!(templates[0].id, ONBOARDING_TMPL);
    for o in &objects {
        assert!(included.contains(o.obj_code.as_str()), "{} {} is outside the TMPL row", o.obj_code, o.id);
    }
    // Exactly the template's own tasks, with their assignments and predecessors.
    let mut req = list("dev", "TTSK");
    req.parent_id = ONBOARDING_TMPL.into();
    let own_tasks: BTreeSet<String> = list_all(&mut alice, req).await.into_iter().map(|o| o.id).collect();
    let exported_tasks: BTreeSet<String> = by_code("TTSK").iter().map(|o| o.id.clone()).collect();
    assert_eq!(exported_tasks, own_tasks);
    for code in ["TASSGN", "TPRED"] {
        assert!(!by_code(code).is_empty(), "the template's {code} objects are carried");
        for o in by_code(code) {
            assert!(own_tasks.contains(&o.parent.as_ref().unwrap().id), "{code} {} belongs to another template", o.id);
        }
    }
    for code in ["GROUP", "ROLE", "CMPY", "ARVPRC", "SCHED", "MPATH"] {
        assert!(!by_code(code).is_empty(), "the template's {code} is carried");
    }
    // Every pointer leads to a carried object or a marked external reference.
    let external_ids: HashSet<&str> = externals.iter().map(|e| e.id.as_str()).collect();
    for o in &objects {
        let pointers = o.references.iter().map(|r| r.id.as_str()).chain(o.parent.as_ref().map(|p| p.id.as_str()));
        for id in pointers {
            assert!(ids.contains(id) || external_ids.contains(id), "{} {} points at unmarked {id}", o.obj_code, o.id);
        }
    }
    assert!(externals.iter().all(|e| !ids.contains(e.id.as_str())));
    assert!(objects.iter().all(|o| o.revision == 0 && o.update_time.is_none()), "exports carry content only");
    let codes: HashSet<&str> = objects.iter().map(|o| o.obj_code.as_str()).collect();
    assert_eq!(first.install_order.iter().map(String::as_str).collect::<HashSet<_>>(), codes);
}

#[tokio::test]
async fn export_marks_what_the_row_does_not_carry_as_external_references() {
    let dev = DevServices::start().await;
    let mut erin = dev.clients("erin").await;
    let portfolios = list_all(&mut erin, list("dev", "PORT")).await;
    let portfolio = portfolios.first().expect("dev has a portfolio");
    let tmpl = test_id(1);
    let batch = vec![
        referring(object("TMPL", &tmpl, "Portfolio Template"), "portfolio", "PORT", &portfolio.id),
        owned_by(object("TTSK", &test_id(2), "Only Task"), "TMPL", &tmpl),
    ];
    erin.environments.put_objects(put("dev", batch)).await.unwrap();
    let mut asked = roots("TMPL", &tmpl);
    asked[0].entities[0].name = "A Name That Differs".into();
    let chunks = export(&mut erin, "dev", asked).await;
    let objects: Vec<&pb::ConfigObject> = chunks.iter().flat_map(|c| &c.objects).collect();
    let externals: Vec<&pb::ExternalReference> = chunks.iter().flat_map(|c| &c.external_references).collect();
    let mut codes: Vec<&str> = objects.iter().map(|o| o.obj_code.as_str()).collect();
    codes.sort();
    assert_eq!(codes, vec!["TMPL", "TTSK"], "the portfolio is not carried");
    assert_eq!(externals.len(), 1);
    assert_eq!((externals[0].obj_code.as_str(), externals[0].id.as_str()), ("PORT", portfolio.id.as_str()));
    assert_eq!(externals[0].name, portfolio.name);
    assert_eq!(chunks[0].warnings.len(), 1, "a requested name that differs is a warning: {:?}", chunks[0].warnings);

    let bad = pb::ExportObjectsRequest { environment: "dev".into(), roots: roots("TTSK", &test_id(2)) };
    assert_status(erin.environments.export_objects(bad).await, Code::InvalidArgument, "NOT_A_ROOT_TYPE");
    let missing = pb::ExportObjectsRequest { environment: "dev".into(), roots: roots("TMPL", &test_id(77)) };
    assert_status(erin.environments.export_objects(missing).await, Code::NotFound, "OBJECT_NOT_FOUND");
}

#[tokio::test]
async fn catalogs_describe_the_workfront_and_apim_rules() {
    let dev = DevServices::start().await;
    let mut alice = dev.clients("alice").await;
    let req = pb::GetCatalogRequest { name: "workfront".into(), environment: String::new() };
    let workfront = alice.environments.get_catalog(req).await.unwrap().into_inner();
    let roots: BTreeSet<&str> = workfront.types.iter().filter(|t| t.root).map(|t| t.obj_code.as_str()).collect();
    let expected: BTreeSet<&str> = "PROJ TMPL UITMPL PTLTAB CALEND EXTSEC PTLSEC UIFT UIGB UIVW CTGY PARAM PGRP GROUP \
                                    ROLE TEAM CMPY PORT PRGM ARVPRC SCHED MPATH TSPRO HOURT EXPTYP RSKTYP RSPL"
        .split_whitespace()
        .collect();
    assert_eq!(roots.len(), 27);
    assert_eq!(roots, expected);
    let row = |code: &str| workfront.types.iter().find(|t| t.obj_code == code).unwrap();
    assert!(row("GROUP").unique_names, "group names are unique");
    for code in ["TMPL", "PROJ", "UIVW", "UIFT", "UIGB", "PTLSEC", "PTLTAB"] {
        assert!(!row(code).unique_names, "{code} names are not unique");
    }
    assert!(row("TMPL").includes.iter().any(|c| c == "TTSK"));
    assert_eq!(row("TTSK").parent_types, vec!["TMPL"]);
    let req = pb::GetCatalogRequest { name: "apim".into(), environment: String::new() };
    assert_status(alice.environments.get_catalog(req).await, Code::NotFound, "CATALOG_NOT_FOUND");

    let mut gina = dev.clients("gina").await;
    let req = pb::GetCatalogRequest { name: String::new(), environment: "globex-dev".into() };
    let apim = gina.environments.get_catalog(req).await.unwrap().into_inner();
    assert_eq!(apim.name, "apim");
    let row = |code: &str| apim.types.iter().find(|t| t.obj_code == code).unwrap();
    let api = row("API");
    assert!(api.root && api.includes.contains(&"PLAN".to_string()) && api.includes.contains(&"PAGE".to_string()));
    for field in ["members", "groups"] {
        assert!(api.excluded_fields.iter().any(|f| f == field), "API.{field} is never carried");
    }
    assert!(row("MEMBER").never_carried && row("GROUP").never_carried);
}

#[tokio::test]
async fn globex_api_exports_leave_members_and_groups_behind() {
    let dev = DevServices::start().await;
    let mut gina = dev.clients("gina").await;
    let apis = list_all(&mut gina, list("globex-dev", "API")).await;
    assert!(!apis.is_empty());
    let with_members = apis.iter().filter(|a| a.fields.as_ref().is_some_and(|f| f.fields.contains_key("members")));
    assert!(with_members.count() > 0, "the seeded APIs hold members in globex-dev itself");
    let collections = vec![pb::ObjectCollection {
        obj_code: "API".into(),
        entities: apis.iter().map(|a| pb::EntityRef { id: a.id.clone(), name: a.name.clone() }).collect(),
    }];
    let chunks = export(&mut gina, "globex-dev", collections).await;
    let objects: Vec<&pb::ConfigObject> = chunks.iter().flat_map(|c| &c.objects).collect();
    let codes: BTreeSet<&str> = objects.iter().map(|o| o.obj_code.as_str()).collect();
    assert_eq!(codes, BTreeSet::from(["API", "PAGE", "PLAN"]));
    for o in objects.iter().filter(|o| o.obj_code == "API") {
        let fields = o.fields.as_ref().map(|f| f.fields.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
        assert!(!fields.iter().any(|f| f == "members" || f == "groups"), "API {} carries {fields:?}", o.name);
        assert!(o.references.iter().all(|r| r.obj_code != "MEMBER" && r.obj_code != "GROUP"));
    }
    let externals: Vec<&pb::ExternalReference> = chunks.iter().flat_map(|c| &c.external_references).collect();
    assert!(externals.iter().all(|e| e.obj_code != "MEMBER" && e.obj_code != "GROUP"));
}

#[tokio::test]
async fn graceful_restart_keeps_data_and_does_not_seed_again() {
    let dev = DevServices::start().await;
    let mut erin = dev.clients("erin").await;
    let written = erin.environments.put_objects(put("dev", vec![object("GROUP", &test_id(1), "Survivor")])).await;
    let written_revision = written.unwrap().into_inner().revision;
    // Remove a seeded object: a second seeding would bring it back.
    let delete = pb::DeleteObjectRequest {
        environment: "dev".into(),
        obj_code: "TMPL".into(),
        id: OFFBOARDING_TMPL.into(),
        cascade: true,
        request_id: String::new(),
    };
    let deleted = erin.environments.delete_object(delete).await.unwrap().into_inner();
    assert_eq!(deleted.revision, written_revision + 1);
    let counts = erin.environments.get_environment(pb::GetEnvironmentRequest { id: "dev".into() }).await;
    let counts = counts.unwrap().into_inner().object_counts;
    // Stop on a blocking thread so this runtime keeps serving the client connections: they
    // answer the server's GOAWAY and close, which lets the graceful drain finish.
    let (exit, data_dir) = tokio::task::spawn_blocking(move || dev.terminate()).await.unwrap();
    drop(erin);
    assert!(exit.success(), "SIGTERM is a clean shutdown: {exit:?}");
    let dev = DevServices::start_in(data_dir).await;
    let mut erin = dev.clients("erin").await;
    let env = erin.environments.get_environment(pb::GetEnvironmentRequest { id: "dev".into() }).await;
    let env = env.unwrap().into_inner();
    assert_eq!(env.revision, deleted.revision);
    assert_eq!(env.object_counts, counts);
    let survivor = erin.environments.get_object(get("dev", "GROUP", &test_id(1))).await.unwrap().into_inner();
    assert_eq!(survivor.name, "Survivor");
    let gone = erin.environments.get_object(get("dev", "TMPL", OFFBOARDING_TMPL)).await;
    assert_status(gone, Code::NotFound, "OBJECT_NOT_FOUND");
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let dev = DevServices::start().await;
    let mut erin = dev.clients("erin").await;
    let mut acknowledged = Vec::new();
    for n in 1..=5 {
        let batch = vec![object("ROLE", &test_id(n), &format!("Durable Role {n}"))];
        let r = erin.environments.put_objects(put("qa", batch)).await.unwrap().into_inner();
        acknowledged.push((test_id(n), r.revision));
    }
    drop(erin);
    let data_dir = dev.kill();
    let dev = DevServices::start_in(data_dir).await;
    let mut erin = dev.clients("erin").await;
    for (id, rev) in &acknowledged {
        let o = erin.environments.get_object(get("qa", "ROLE", id)).await.unwrap().into_inner();
        assert_eq!(o.revision, *rev);
    }
    assert_eq!(revision(&mut erin, "qa").await, acknowledged.last().unwrap().1);
}
