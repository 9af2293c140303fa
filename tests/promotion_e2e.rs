//! Seed 000 end to end across a real deployment: one package service and TWO installation
//! services, each its own `promotion` process. Installation service A hosts globex-dev and
//! globex-qa, B hosts globex-demo and globex-prod (the seed's "two installations"). A
//! publisher requests promotion of an API, a deployer accepts or rejects it as a task, the
//! API lands in the target without members or groups, a second promotion updates it in
//! place, and refusals (duplicates, wrong caller, other organization, uninstallable
//! package) change nothing.
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use promotion_api::convert::{map_to_struct, struct_to_map};
use promotion_api::v1 as pb;
use promotion_core::config::{
    BindingEntry, ClientEntry, Config, EnvironmentEntry, EnvironmentKind, ServiceCredentials,
};
use promotion_core::identity::Role;
use promotion_core::secrets::hash_secret;
use tonic::Code;

/// One `promotion` service process, killed on drop.
struct Service {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    async fn start(subcommand: &str, config: &Config, file: &Path) -> Service {
        std::fs::write(file, toml::to_string(config).expect("the configuration serialises")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_promotion"))
            .args([subcommand, "--config"])
            .arg(file)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start promotion {subcommand}: {e}"));
        let service = Service { child, addr: config.listen };
        let deadline = Instant::now() + Duration::from_secs(60);
        while health_status(service.addr).await != Some(1) {
            assert!(Instant::now() < deadline, "{subcommand} at {} did not become SERVING", service.addr);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        service
    }
}

/// Environment id, organization, kind, hosted by installation service A (else B).
const ENVIRONMENTS: &[(&str, &str, EnvironmentKind, bool)] = &[
    ("globex-dev", "globex", EnvironmentKind::Sandbox, true),
    ("globex-qa", "globex", EnvironmentKind::Sandbox, true),
    ("globex-demo", "globex", EnvironmentKind::Sandbox, false),
    ("globex-prod", "globex", EnvironmentKind::Production, false),
    // Another tenant, for the cross-organization refusals.
    ("dev", "acme", EnvironmentKind::Sandbox, true),
    ("qa", "acme", EnvironmentKind::Sandbox, true),
];

/// Client id, organization, bindings; every secret is `<id>-secret`.
type ClientSpec = (&'static str, &'static str, &'static [(Role, &'static str)]);

const CLIENTS: &[ClientSpec] = &[
    ("pam", "globex", &[(Role::Publisher, "globex-dev")]),
    ("dan", "globex", &[(Role::Deployer, "globex-qa"), (Role::Deployer, "globex-prod")]),
    ("gina", "globex", &[(Role::Admin, "*")]),
    ("alice", "acme", &[(Role::Publisher, "dev"), (Role::Publisher, "qa")]),
    ("installation-a", "globex", &[(Role::Internal, "*")]),
    ("installation-b", "globex", &[(Role::Internal, "*")]),
];

/// The package service and installation services A and B, on ephemeral loopback ports
/// with temporary data directories.
struct Deployment {
    package: Service,
    a: Service,
    b: Service,
    _dir: tempfile::TempDir,
}

impl Deployment {
    async fn start() -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let (package_addr, a_addr, b_addr) = (free_addr(), free_addr(), free_addr());
        let opts = DevAddrs { package_addr, installation_addr: a_addr };
        let (package, installation) = dev_configs(dir.path().to_path_buf(), opts.package_addr, opts.installation_addr);
        let environments: Vec<EnvironmentEntry> = ENVIRONMENTS
            .iter()
            .map(|(id, org, kind, on_a)| EnvironmentEntry {
                id: (*id).into(),
                organization: (*org).into(),
                kind: *kind,
                display_name: String::new(),
                installation_service: format!("http://{}", if *on_a { a_addr } else { b_addr }),
                catalog: None,
            })
            .collect();
        let clients = CLIENTS
            .iter()
            .map(|(id, org, bindings)| ClientEntry {
                id: (*id).into(),
                secret_hash: hash_secret(&format!("{id}-secret")),
                organization: (*org).into(),
                bindings: bindings
                    .iter()
                    .map(|(role, env)| BindingEntry { role: *role, environment: (*env).into() })
                    .collect(),
            })
            .collect();
        let package = Config { clients, environments: environments.clone(), ..package };
        let installation = |name: &str, listen: SocketAddr, on_a: bool| Config {
            listen,
            data_dir: dir.path().join(name),
            hosted_environments: ENVIRONMENTS.iter().filter(|e| e.3 == on_a).map(|e| e.0.to_string()).collect(),
            service_credentials: Some(ServiceCredentials {
                client_id: name.into(),
                client_secret: format!("{name}-secret"),
            }),
            environments: environments.clone(),
            ..installation.clone()
        };
        let a = installation("installation-a", a_addr, true);
        let b = installation("installation-b", b_addr, false);
        let package = Service::start("package-service", &package, &dir.path().join("package.toml")).await;
        let a = Service::start("installation-service", &a, &dir.path().join("installation-a.toml")).await;
        let b = Service::start("installation-service", &b, &dir.path().join("installation-b.toml")).await;
        Deployment { package, a, b, _dir: dir }
    }

    /// `client`'s clients of the package service and installation service A (`on_b`: B).
    async fn clients(&self, client: &str, on_b: bool) -> Clients {
        let token = issue_token(self.package.addr, client, &format!("{client}-secret")).await;
        let installation = if on_b { self.b.addr } else { self.a.addr };
        Clients::connect(self.package.addr, installation, Some(token)).await
    }
}

const PAYMENTS_API: &str = "Payments API";

fn payments_api_id() -> String {
    demo_objects("globex-dev")
        .into_iter()
        .find(|o| o.obj_code == "API" && o.name == PAYMENTS_API)
        .expect("the demo holds the Payments API")
        .id
}

async fn seed_globex_dev(admin: &mut Clients) {
    let objects = demo_objects("globex-dev").iter().map(Into::into).collect();
    let req = pb::PutObjectsRequest {
        environment: "globex-dev".into(),
        objects,
        request_id: String::new(),
        ..Default::default()
    };
    admin.environments.put_objects(req).await.expect("seed globex-dev");
}

async fn package(c: &mut Clients, id: &str) -> pb::Package {
    c.packages.get_package(pb::GetPackageRequest { id: id.into() }).await.unwrap().into_inner()
}

/// Waits until extraction has ended and checks it ended in BUILDING.
async fn built(c: &mut Clients, id: &str) -> pb::Package {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = package(c, id).await;
        if p.status != pb::PackageStatus::Extracting as i32 {
            assert_eq!(p.status, pb::PackageStatus::Building as i32, "extraction failed: {}", p.failure_reason);
            return p;
        }
        assert!(Instant::now() < deadline, "package {id} is still EXTRACTING");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn update(c: &mut Clients, mut changed: pb::Package, paths: &[&str]) -> pb::Package {
    let current = package(c, &changed.id).await;
    changed.etag = current.etag;
    let req = pb::UpdatePackageRequest {
        package: Some(changed),
        update_mask: Some(prost_types::FieldMask { paths: paths.iter().map(|p| p.to_string()).collect() }),
        request_id: String::new(),
    };
    c.packages.update_package(req).await.expect("update the package").into_inner()
}

async fn set_status(c: &mut Clients, id: &str, status: pb::PackageStatus) -> pb::Package {
    let p = update(c, pb::Package { id: id.into(), status: status as i32, ..Default::default() }, &["status"]).await;
    assert_eq!(p.status, status as i32);
    p
}

/// Re-extracts a package from its source (BUILDING -> same collections -> BUILDING).
async fn re_extract(c: &mut Clients, p: &pb::Package) -> pb::Package {
    set_status(c, &p.id, pb::PackageStatus::Building).await;
    let changed =
        pb::Package { id: p.id.clone(), object_collections: p.object_collections.clone(), ..Default::default() };
    update(c, changed, &["object_collections"]).await;
    built(c, &p.id).await
}

fn promote(package_id: &str, target: &str, comment: &str) -> pb::RequestPromotionRequest {
    pb::RequestPromotionRequest {
        package_id: package_id.into(),
        package_version: 0,
        target_environment: target.into(),
        comment: comment.into(),
        ..Default::default()
    }
}

fn accept(id: &str, comment: &str) -> pb::AcceptPromotionRequestRequest {
    pb::AcceptPromotionRequestRequest { id: id.into(), comment: comment.into(), ..Default::default() }
}

async fn tasks(c: &mut Clients) -> Vec<pb::PromotionRequest> {
    let req = pb::ListPromotionTasksRequest { page_size: 0, page_token: String::new() };
    c.promotions.list_promotion_tasks(req).await.unwrap().into_inner().promotion_requests
}

async fn task_ids(c: &mut Clients) -> Vec<String> {
    tasks(c).await.into_iter().map(|t| t.id).collect()
}

async fn get_request(c: &mut Clients, id: &str) -> pb::PromotionRequest {
    c.promotions.get_promotion_request(pb::GetPromotionRequestRequest { id: id.into() }).await.unwrap().into_inner()
}

async fn objects(c: &mut Clients, environment: &str, obj_code: &str) -> Vec<pb::ConfigObject> {
    let mut req = pb::ListObjectsRequest {
        environment: environment.into(),
        obj_code: obj_code.into(),
        page_size: 1000,
        ..Default::default()
    };
    let mut out = Vec::new();
    loop {
        let page = c.environments.list_objects(req.clone()).await.unwrap().into_inner();
        out.extend(page.objects);
        if page.next_page_token.is_empty() {
            return out;
        }
        req.page_token = page.next_page_token;
    }
}

async fn environment(c: &mut Clients, id: &str) -> pb::Environment {
    c.environments.get_environment(pb::GetEnvironmentRequest { id: id.into() }).await.unwrap().into_inner()
}

async fn installation_count(c: &mut Clients, destination: &str) -> usize {
    let req = pb::ListInstallationsRequest {
        destination_environment: destination.into(),
        page_size: 1000,
        ..Default::default()
    };
    c.installations.list_installations(req).await.unwrap().into_inner().installations.len()
}

/// The one API of `environment`, with its plans and pages: the seed's promoted API
/// without members or groups.
async fn promoted_api(c: &mut Clients, environment: &str) -> pb::ConfigObject {
    let apis = objects(c, environment, "API").await;
    assert_eq!(apis.len(), 1, "exactly one API in {environment}: {apis:?}");
    let api = apis.into_iter().next().unwrap();
    assert_eq!(api.name, PAYMENTS_API);
    let fields = struct_to_map(api.fields.as_ref().expect("the API has fields"));
    assert!(!fields.contains_key("members") && !fields.contains_key("groups"), "members/groups carried: {fields:?}");
    assert!(fields.contains_key("context_path"), "other fields are carried: {fields:?}");
    assert!(
        api.references.iter().all(|r| r.obj_code != "MEMBER" && r.obj_code != "GROUP"),
        "references to members or groups carried: {:?}",
        api.references
    );
    let children = |objs: Vec<pb::ConfigObject>| {
        let mut names: Vec<String> = objs
            .into_iter()
            .filter(|o| o.parent.as_ref().is_some_and(|p| p.obj_code == "API" && p.id == api.id))
            .map(|o| o.name)
            .collect();
        names.sort();
        names
    };
    assert_eq!(children(objects(c, environment, "PLAN").await), ["Free", "Gold", "Partner"]);
    assert_eq!(children(objects(c, environment, "PAGE").await), ["Getting Started", "OpenAPI Specification"]);
    let env = environment_counts(c, environment).await;
    assert!(!env.contains_key("MEMBER") && !env.contains_key("GROUP"), "members or groups in {environment}: {env:?}");
    api
}

async fn environment_counts(c: &mut Clients, id: &str) -> std::collections::HashMap<String, i64> {
    environment(c, id).await.object_counts
}

fn description(api: &pb::ConfigObject) -> String {
    let fields = struct_to_map(api.fields.as_ref().expect("fields"));
    fields.get("description").and_then(|d| d.as_str()).unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_000_promotion_requests_across_two_installations() {
    let d = Deployment::start().await;
    let mut gina = d.clients("gina", false).await;
    let mut gina_b = d.clients("gina", true).await;
    let mut pam = d.clients("pam", false).await;
    let mut pam_b = d.clients("pam", true).await;
    let mut dan = d.clients("dan", false).await;
    let mut dan_b = d.clients("dan", true).await;
    let mut alice = d.clients("alice", false).await;
    seed_globex_dev(&mut gina).await;
    let api_id = payments_api_id();

    // The publisher packages the API from globex-dev.
    let req = pb::CreatePackageRequest {
        name: "Payments API promotion".into(),
        description: "Seed 000: promote the Payments API from Dev to QA".into(),
        source_environment: "globex-dev".into(),
        object_collections: vec![pb::ObjectCollection {
            obj_code: "API".into(),
            entities: vec![pb::EntityRef { id: api_id.clone(), name: PAYMENTS_API.into() }],
        }],
        is_private: false,
        request_id: String::new(),
    };
    let created = pam.packages.create_package(req).await.expect("create the package").into_inner();
    let p = built(&mut pam, &created.id).await;
    assert!(!p.entity_counts.contains_key("MEMBER") && !p.entity_counts.contains_key("GROUP"), "{p:?}");

    // BUILDING is installable nowhere, so it cannot be promoted yet; nothing is recorded.
    let r = pam.promotions.request_promotion(promote(&p.id, "globex-qa", "too early")).await;
    assert_status(r, Code::FailedPrecondition, "PACKAGE_NOT_INSTALLABLE");
    set_status(&mut pam, &p.id, pb::PackageStatus::Preview).await;
    // A version the package does not have is refused and leaves nothing pending.
    let r = pam
        .promotions
        .request_promotion(pb::RequestPromotionRequest {
            package_version: p.version + 1,
            ..promote(&p.id, "globex-qa", "")
        })
        .await;
    assert_status(r, Code::NotFound, "VERSION_NOT_FOUND");

    // Dev -> QA: one pending request; a second one for the same package and target is refused.
    let first = pam
        .promotions
        .request_promotion(promote(&p.id, "globex-qa", "please promote"))
        .await
        .expect("request promotion")
        .into_inner();
    assert_eq!(first.status, pb::PromotionStatus::ToBeValidated as i32);
    assert_eq!(
        (first.package_id.as_str(), first.package_version, first.package_name.as_str()),
        (p.id.as_str(), p.version, p.name.as_str())
    );
    assert_eq!((first.source_environment.as_str(), first.target_environment.as_str()), ("globex-dev", "globex-qa"));
    assert_eq!((first.requested_by.as_str(), first.organization.as_str()), ("pam", "globex"));
    assert!(!first.is_update);
    let again = pam.promotions.request_promotion(promote(&p.id, "globex-qa", "again")).await;
    let status = assert_status(again, Code::AlreadyExists, "PROMOTION_ALREADY_IN_PROGRESS");
    assert_eq!(metadata_of(&status).get("existing_request"), Some(&first.id));
    let same = pam.promotions.request_promotion(promote(&p.id, "globex-dev", "")).await;
    assert_status(same, Code::FailedPrecondition, "SAME_ENVIRONMENT");

    // The deployer of QA sees it as a task; the publisher has no tasks and cannot accept.
    let dan_tasks = tasks(&mut dan).await;
    assert_eq!(dan_tasks.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), [first.id.as_str()]);
    assert!(!dan_tasks[0].is_update);
    assert!(tasks(&mut pam).await.is_empty(), "a publisher holds no promotion.approve");
    let qa_before = environment(&mut gina, "globex-qa").await;
    assert_status(
        pam.promotions.accept_promotion_request(accept(&first.id, "")).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    assert_status(
        pam.promotions
            .reject_promotion_request(pb::RejectPromotionRequestRequest { id: first.id.clone(), ..Default::default() })
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    assert_eq!(environment(&mut gina, "globex-qa").await.revision, qa_before.revision);
    assert_eq!(get_request(&mut pam, &first.id).await.status, pb::PromotionStatus::ToBeValidated as i32);

    // Accepting installs the API into QA with its plans and pages, without members or groups.
    let decision_id = uuid::Uuid::new_v4().to_string();
    let accept_once = pb::AcceptPromotionRequestRequest { request_id: decision_id, ..accept(&first.id, "LGTM") };
    let accepted = dan.promotions.accept_promotion_request(accept_once.clone()).await.expect("accept").into_inner();
    assert_eq!(accepted.status, pb::PromotionStatus::Accepted as i32);
    assert_eq!((accepted.decided_by.as_str(), accepted.decision_comment.as_str()), ("dan", "LGTM"));
    assert!(!accepted.installation_id.is_empty() && accepted.last_error.is_empty());
    let installation = dan
        .installations
        .get_installation(pb::GetInstallationRequest { id: accepted.installation_id.clone(), ..Default::default() })
        .await
        .expect("the accepted request names its installation")
        .into_inner();
    assert_eq!(installation.status, pb::InstallationStatus::Installed as i32);
    assert_eq!((installation.package_id.as_str(), installation.created_by.as_str()), (p.id.as_str(), "dan"));
    assert!(tasks(&mut dan).await.is_empty(), "an accepted request leaves the task list");
    let api_in_qa = promoted_api(&mut dan, "globex-qa").await;
    assert_eq!(get_request(&mut pam, &first.id).await, accepted, "the requester sees the decision");
    // A retried accept (same request id) returns the first response and installs nothing more;
    // a new accept of a decided request is refused.
    let retried = dan.promotions.accept_promotion_request(accept_once).await.expect("retry the accept");
    assert_eq!(retried.into_inner(), accepted);
    assert_eq!(installation_count(&mut dan, "globex-qa").await, 1);
    let r = dan.promotions.accept_promotion_request(accept(&first.id, "")).await;
    assert_status(r, Code::FailedPrecondition, "PROMOTION_NOT_PENDING");

    // The API changes in Dev; the re-extracted package is promoted again as an update.
    let mut api = get_api(&mut gina, "globex-dev", &api_id).await;
    let mut fields = struct_to_map(api.fields.as_ref().unwrap());
    fields.insert("description".into(), "Card, wallet, refund and payout payments".into());
    api.fields = Some(map_to_struct(&fields));
    let put = pb::PutObjectsRequest {
        environment: "globex-dev".into(),
        objects: vec![api],
        request_id: String::new(),
        ..Default::default()
    };
    gina.environments.put_objects(put).await.expect("edit the API in dev");
    let p2 = re_extract(&mut pam, &p).await;
    assert_eq!(p2.version, p.version + 1);
    set_status(&mut pam, &p.id, pb::PackageStatus::Preview).await;
    let second = pam.promotions.request_promotion(promote(&p.id, "globex-qa", "payouts")).await.unwrap().into_inner();
    assert_eq!(second.package_version, p2.version);
    assert!(second.is_update, "the package was installed into QA before");
    let dan_tasks = tasks(&mut dan).await;
    assert_eq!(dan_tasks.len(), 1);
    assert!(dan_tasks[0].is_update && dan_tasks[0].id == second.id);
    dan.promotions.accept_promotion_request(accept(&second.id, "")).await.expect("accept the update");
    let updated = promoted_api(&mut dan, "globex-qa").await;
    assert_eq!(updated.id, api_in_qa.id, "updated in place, not duplicated");
    assert_eq!(description(&updated), "Card, wallet, refund and payout payments");

    // Rejection removes the task and installs nothing.
    let qa_before = environment(&mut gina, "globex-qa").await;
    let third = pam.promotions.request_promotion(promote(&p.id, "globex-qa", "once more")).await.unwrap().into_inner();
    assert_eq!(tasks(&mut dan).await.len(), 1);
    let reject = pb::RejectPromotionRequestRequest {
        id: third.id.clone(),
        comment: "not this sprint".into(),
        request_id: uuid::Uuid::new_v4().to_string(),
    };
    let rejected = dan.promotions.reject_promotion_request(reject.clone()).await.expect("reject").into_inner();
    let retried = dan.promotions.reject_promotion_request(reject).await.expect("retry the rejection");
    assert_eq!(retried.into_inner(), rejected);
    assert_eq!(rejected.status, pb::PromotionStatus::Rejected as i32);
    assert_eq!((rejected.decided_by.as_str(), rejected.decision_comment.as_str()), ("dan", "not this sprint"));
    assert!(tasks(&mut dan).await.is_empty(), "a rejected request leaves the task list");
    assert_eq!(environment(&mut gina, "globex-qa").await.revision, qa_before.revision);
    let r = dan.promotions.accept_promotion_request(accept(&third.id, "")).await;
    assert_status(r, Code::FailedPrecondition, "PROMOTION_NOT_PENDING");

    // Only the requester may cancel.
    let fourth = pam.promotions.request_promotion(promote(&p.id, "globex-qa", "oops")).await.unwrap().into_inner();
    let cancel = |id: &str| pb::CancelPromotionRequestRequest { id: id.into(), ..Default::default() };
    assert_status(
        dan.promotions.cancel_promotion_request(cancel(&fourth.id)).await,
        Code::PermissionDenied,
        "NOT_REQUESTER",
    );
    let cancel_once =
        pb::CancelPromotionRequestRequest { request_id: uuid::Uuid::new_v4().to_string(), ..cancel(&fourth.id) };
    let cancelled = pam.promotions.cancel_promotion_request(cancel_once.clone()).await.expect("cancel").into_inner();
    let retried = pam.promotions.cancel_promotion_request(cancel_once).await.expect("retry the cancellation");
    assert_eq!(retried.into_inner(), cancelled);
    assert_status(
        pam.promotions.cancel_promotion_request(cancel(&fourth.id)).await,
        Code::FailedPrecondition,
        "PROMOTION_NOT_PENDING",
    );
    assert_eq!(cancelled.status, pb::PromotionStatus::Cancelled as i32);
    assert_eq!(cancelled.decided_by, "pam");
    assert!(tasks(&mut dan).await.is_empty(), "a cancelled request leaves the task list");

    // Nothing crosses organizations: acme's environments and globex's requests do not exist
    // for the other side.
    let r = pam.promotions.request_promotion(promote(&p.id, "qa", "")).await;
    assert_status(r, Code::NotFound, "ENVIRONMENT_NOT_FOUND");
    let r = alice.promotions.get_promotion_request(pb::GetPromotionRequestRequest { id: first.id.clone() }).await;
    assert_status(r, Code::NotFound, "PROMOTION_REQUEST_NOT_FOUND");
    let r = alice.promotions.accept_promotion_request(accept(&fourth.id, "")).await;
    assert_status(r, Code::NotFound, "PROMOTION_REQUEST_NOT_FOUND");
    let listed = alice.promotions.list_promotion_requests(pb::ListPromotionRequestsRequest::default()).await;
    assert!(listed.unwrap().into_inner().promotion_requests.is_empty());
    assert!(tasks(&mut alice).await.is_empty());

    // The other installation: globex-demo (SANDBOX) takes the PREVIEW package the same way,
    // asked of installation service B, which hosts it.
    let r = pam.promotions.request_promotion(promote(&p.id, "globex-demo", "")).await;
    assert_status(r, Code::FailedPrecondition, "ENVIRONMENT_NOT_HOSTED");
    let demo =
        pam_b.promotions.request_promotion(promote(&p.id, "globex-demo", "demo day")).await.unwrap().into_inner();
    assert!(!demo.is_update);
    assert!(tasks(&mut dan_b).await.is_empty(), "dan holds no promotion.approve on globex-demo");
    assert_eq!(task_ids(&mut gina_b).await, [demo.id.as_str()]);
    let accepted = gina_b.promotions.accept_promotion_request(accept(&demo.id, "")).await.unwrap().into_inner();
    assert_eq!(accepted.status, pb::PromotionStatus::Accepted as i32);
    let in_demo = promoted_api(&mut gina_b, "globex-demo").await;
    assert_eq!(description(&in_demo), "Card, wallet, refund and payout payments");

    // globex-prod (PRODUCTION) needs a PUBLIC package.
    let r = pam_b.promotions.request_promotion(promote(&p.id, "globex-prod", "")).await;
    assert_status(r, Code::FailedPrecondition, "PACKAGE_NOT_INSTALLABLE");
    set_status(&mut pam, &p.id, pb::PackageStatus::Public).await;
    let prod = pam_b.promotions.request_promotion(promote(&p.id, "globex-prod", "go live")).await.unwrap().into_inner();
    assert_eq!(task_ids(&mut dan_b).await, [prod.id.as_str()]);
    dan_b.promotions.accept_promotion_request(accept(&prod.id, "ship it")).await.expect("accept into prod");
    promoted_api(&mut dan_b, "globex-prod").await;

    // A request whose package was retired in between ends: the accept is refused, the
    // request is CANCELLED with the reason, leaves the task list, and nothing is written
    // into the target.
    let pending = pam.promotions.request_promotion(promote(&p.id, "globex-qa", "last one")).await.unwrap().into_inner();
    set_status(&mut pam, &p.id, pb::PackageStatus::Retired).await;
    let qa_before = environment(&mut gina, "globex-qa").await;
    let installations_before = installation_count(&mut gina, "globex-qa").await;
    let r = dan.promotions.accept_promotion_request(accept(&pending.id, "")).await;
    assert_status(r, Code::FailedPrecondition, "PROMOTION_NOT_PENDING");
    let ended = get_request(&mut dan, &pending.id).await;
    assert_eq!(ended.status, pb::PromotionStatus::Cancelled as i32);
    assert!(ended.decision_comment.starts_with("PACKAGE_RETIRED"), "{:?}", ended.decision_comment);
    assert!(ended.installation_id.is_empty());
    let qa_after = environment(&mut gina, "globex-qa").await;
    assert_eq!((qa_after.revision, qa_after.object_counts), (qa_before.revision, qa_before.object_counts));
    assert_eq!(installation_count(&mut gina, "globex-qa").await, installations_before);
    assert!(task_ids(&mut dan).await.is_empty());

    // Installation counts reach the package service through each installation's outbox.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let counts = package(&mut pam, &p.id).await.installation_counts;
        let want = [("globex-demo", 1), ("globex-prod", 1), ("globex-qa", 2)];
        if want.iter().all(|(env, n)| counts.get(*env) == Some(n)) {
            break;
        }
        assert!(Instant::now() < deadline, "installation counts never arrived: {counts:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn get_api(c: &mut Clients, environment: &str, id: &str) -> pb::ConfigObject {
    let req = pb::GetObjectRequest { environment: environment.into(), obj_code: "API".into(), id: id.into() };
    c.environments.get_object(req).await.unwrap().into_inner()
}
