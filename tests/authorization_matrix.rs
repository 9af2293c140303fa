//! The authorisation matrix of SPEC section 10, as one table: every RPC of both services
//! (read from the compiled contracts, so a new RPC without a row fails the test) against
//! `promotion dev`, called as {no token, expired token, badly signed token, a caller of
//! another organization, a caller of the organization without the permission}.
//!
//! Where a column does not apply, the row says what happens instead and why: IssueToken is
//! how a caller gets a token, so it needs none; WhoAmI, the environment directory, catalogs
//! and the promotion listings are open to every member of the organization and show only
//! what the caller may see. Every call that succeeds is checked to show nothing of another
//! organization.
mod common;

use std::collections::BTreeSet;

use common::*;
use promotion_api::v1 as pb;
use promotion_core::identity::{Binding, Identity, Role};
use promotion_core::tokens::TokenSigner;
use prost::Message;
use tonic::{Code, Status};

/// The key and issuer development mode signs with (crates/dev/src/mode.rs).
const DEV_SIGNING_KEY: &[u8] = b"development-mode-signing-key-do-not-use-in-production";
const DEV_ISSUER: &str = "promotion-dev";
const OTHER_KEY: &[u8] = b"not-the-deployment-key-but-just-as-long-as-it";

/// Who makes a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// No authorization header at all.
    Nobody,
    /// acme's admin, signed with the right key, expired a minute ago.
    Expired,
    /// acme's admin, unexpired, signed with another key.
    BadSignature,
    /// gina: admin of globex (every permission, in the other organization).
    Gina,
    /// globex's own installation-service identity (role internal).
    GlobexInternal,
    /// Demo clients of acme: alice (publisher dev, qa), bob (deployer qa, prod), victor
    /// (viewer everywhere), installation-service (role internal: RecordInstallation only).
    Alice,
    Bob,
    Victor,
    Internal,
    /// An acme member who is only a viewer of prod (minted with the dev key).
    Olga,
}

const WHO: [Who; 10] = [
    Who::Nobody,
    Who::Expired,
    Who::BadSignature,
    Who::Gina,
    Who::GlobexInternal,
    Who::Alice,
    Who::Bob,
    Who::Victor,
    Who::Internal,
    Who::Olga,
];

fn identity(subject: &str, organization: &str, bindings: &[(Role, &str)], expires_at: i64) -> Identity {
    Identity {
        subject: subject.into(),
        organization: organization.into(),
        bindings: bindings.iter().map(|(role, env)| Binding { role: *role, environment: (*env).into() }).collect(),
        expires_at,
    }
}

async fn token(dev: &DevServices, who: Who) -> Option<String> {
    let now = chrono::Utc::now();
    let in_an_hour = now.timestamp() + 3600;
    let sign = |key: &[u8], id: Identity| TokenSigner::new(key, DEV_ISSUER).issue(&id, now);
    let admin = |exp| identity("admin", "acme", &[(Role::Admin, "*")], exp);
    Some(match who {
        Who::Nobody => return None,
        Who::Expired => sign(DEV_SIGNING_KEY, admin(now.timestamp() - 60)),
        Who::BadSignature => sign(OTHER_KEY, admin(in_an_hour)),
        Who::GlobexInternal => {
            sign(DEV_SIGNING_KEY, identity("globex-installer", "globex", &[(Role::Internal, "*")], in_an_hour))
        }
        Who::Olga => sign(DEV_SIGNING_KEY, identity("olga", "acme", &[(Role::Viewer, "prod")], in_an_hour)),
        Who::Gina => dev.token("gina").await,
        Who::Alice => dev.token("alice").await,
        Who::Bob => dev.token("bob").await,
        Who::Victor => dev.token("victor").await,
        Who::Internal => dev.token("installation-service").await,
    })
}

fn organization_of(who: Who) -> &'static str {
    match who {
        Who::Gina | Who::GlobexInternal => "globex",
        _ => "acme",
    }
}

/// What a call must answer.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Succeeds, showing only the caller's organization.
    Ok,
    /// UNAUTHENTICATED with the reason of the column's token problem.
    Unauthenticated,
    NotFound(&'static str),
    Denied(&'static str),
}

use Expect::{Denied, NotFound, Ok as Allowed, Unauthenticated as Unauth};

const DENIED: Expect = Denied("PERMISSION_DENIED");
const NO_ENV: Expect = NotFound("ENVIRONMENT_NOT_FOUND");
const NO_PACKAGE: Expect = NotFound("PACKAGE_NOT_FOUND");
const NO_INSTALLATION: Expect = NotFound("INSTALLATION_NOT_FOUND");
const NO_PROMOTION: Expect = NotFound("PROMOTION_REQUEST_NOT_FOUND");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Host {
    Package,
    Installation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rpc {
    CreatePackage,
    ListPackages,
    GetPackage,
    GetPackageDefinition,
    ReplacePackage,
    UpdatePackage,
    DeletePackage,
    WatchPackage,
    RecordInstallation,
    DiffPackageVersions,
    IssueToken,
    WhoAmI,
    ListAuditEvents,
    ListEnvironments,
    GetEnvironment,
    GetCatalog,
    PutObjects,
    GetObject,
    ListObjects,
    DeleteObject,
    ExportObjects,
    GetEnvironmentPolicy,
    UpdateEnvironmentPolicy,
    CreatePreRun,
    GetPreRun,
    CreateInstallation,
    ListInstallations,
    GetInstallation,
    RollbackInstallation,
    GetDrift,
    CheckInstallation,
    RequestPromotion,
    ListPromotionTasks,
    ListPromotionRequests,
    GetPromotionRequest,
    AcceptPromotionRequest,
    AttachPreRun,
    RejectPromotionRequest,
    CancelPromotionRequest,
    CreateSubscription,
    ListSubscriptions,
    DeleteSubscription,
    ListDeliveries,
}

/// One row: the RPC, then the expected outcome for no token, expired, bad signature,
/// another organization (called by `other`), missing permission (called by `lacking`).
struct Row {
    host: Host,
    service: &'static str,
    rpc: Rpc,
    expect: [Expect; 5],
    other: Who,
    lacking: Who,
    why: &'static str,
}

const fn row(
    host: Host,
    service: &'static str,
    rpc: Rpc,
    other_org: Expect,
    lacking: Who,
    missing: Expect,
    why: &'static str,
) -> Row {
    Row { host, service, rpc, expect: [Unauth, Unauth, Unauth, other_org, missing], other: Who::Gina, lacking, why }
}

const PKG: &str = "PackageService";
const ENV: &str = "EnvironmentService";
const INST: &str = "InstallationService";
const PROMO: &str = "PromotionService";
const AUDIT: &str = "AuditService";
const NOTIFY: &str = "NotificationService";

use Host::{Installation as I, Package as P};

/// The matrix. Requests name acme's resources (environment dev/qa, the fixture package,
/// pre-run, installation and promotion request).
#[rustfmt::skip]
const MATRIX: &[Row] = &[
    row(P, PKG, Rpc::CreatePackage, NO_ENV, Who::Victor, DENIED, "package.write on the source"),
    row(P, PKG, Rpc::ListPackages, Allowed, Who::Internal, DENIED, "package.read (any role of the organization)"),
    row(P, PKG, Rpc::GetPackage, NO_PACKAGE, Who::Internal, DENIED, "package.read (any role of the organization)"),
    row(P, PKG, Rpc::GetPackageDefinition, NO_PACKAGE, Who::Internal, DENIED, "package.read"),
    row(P, PKG, Rpc::ReplacePackage, NO_PACKAGE, Who::Victor, DENIED, "package.write on the source"),
    row(P, PKG, Rpc::UpdatePackage, NO_PACKAGE, Who::Victor, DENIED, "package.write on the source"),
    row(P, PKG, Rpc::DeletePackage, NO_PACKAGE, Who::Victor, DENIED, "package.write on the source"),
    row(P, PKG, Rpc::WatchPackage, NO_PACKAGE, Who::Internal, DENIED, "package.read"),
    row(P, PKG, Rpc::DiffPackageVersions, NO_PACKAGE, Who::Internal, DENIED, "package.read"),
    // Only installation services' own identities (role internal) may call it. One
    // installation service may host several organizations, so such an identity is not
    // scoped to one: "another organization" here is globex's reporting the acme package
    // installed into globex-prod, an environment that does not exist for the package.
    Row {
        other: Who::GlobexInternal,
        ..row(P, PKG, Rpc::RecordInstallation, NO_ENV, Who::Alice, DENIED, "installation.record (role internal)")
    },
    // The way to get a token: the credentials in the body authenticate, any header is ignored.
    Row {
        expect: [Allowed; 5],
        ..row(P, "AuthService", Rpc::IssueToken, Allowed, Who::Victor, Allowed, "needs no token")
    },
    row(P, "AuthService", Rpc::WhoAmI, Allowed, Who::Olga, Allowed, "a valid token, no permission: echoes it"),
    row(P, AUDIT, Rpc::ListAuditEvents, NO_ENV, Who::Victor, DENIED, "audit.read (admin)"),
    row(I, AUDIT, Rpc::ListAuditEvents, NO_ENV, Who::Victor, DENIED, "audit.read (admin)"),
    row(I, ENV, Rpc::ListEnvironments, Allowed, Who::Internal, Allowed, "the directory: open to the organization"),
    row(I, ENV, Rpc::GetEnvironment, NO_ENV, Who::Internal, Allowed, "the directory: open to the organization"),
    row(I, ENV, Rpc::GetCatalog, NO_ENV, Who::Internal, Allowed, "catalogs: open to the organization"),
    row(I, ENV, Rpc::PutObjects, NO_ENV, Who::Victor, DENIED, "environment.write"),
    row(I, ENV, Rpc::GetObject, NO_ENV, Who::Olga, DENIED, "environment.read"),
    row(I, ENV, Rpc::ListObjects, NO_ENV, Who::Olga, DENIED, "environment.read"),
    row(I, ENV, Rpc::DeleteObject, NO_ENV, Who::Victor, DENIED, "environment.write"),
    row(I, ENV, Rpc::ExportObjects, NO_ENV, Who::Olga, DENIED, "environment.read"),
    row(I, ENV, Rpc::GetEnvironmentPolicy, NO_ENV, Who::Olga, DENIED, "environment.read"),
    row(I, ENV, Rpc::UpdateEnvironmentPolicy, NO_ENV, Who::Bob, DENIED, "policy.write (admin)"),
    row(I, INST, Rpc::CreatePreRun, NO_ENV, Who::Alice, DENIED, "installation.write on the destination"),
    row(I, INST, Rpc::GetPreRun, NotFound("PRE_RUN_NOT_FOUND"), Who::Olga, DENIED, "installation.read"),
    row(I, INST, Rpc::CreateInstallation, NO_ENV, Who::Alice, DENIED, "installation.write on the destination"),
    row(I, INST, Rpc::ListInstallations, NO_ENV, Who::Olga, DENIED, "installation.read on the filter's destination"),
    row(I, INST, Rpc::GetInstallation, NO_INSTALLATION, Who::Olga, DENIED, "installation.read"),
    row(I, INST, Rpc::RollbackInstallation, NO_INSTALLATION, Who::Victor, DENIED, "installation.write"),
    row(I, INST, Rpc::GetDrift, NO_ENV, Who::Olga, DENIED, "installation.read on the environment"),
    // Asked by the package service with the reporter's token; "another organization" is
    // globex's installer asking about acme's qa, which its `*` does not cover.
    Row {
        other: Who::GlobexInternal,
        ..row(I, INST, Rpc::CheckInstallation, NO_ENV, Who::Alice, DENIED, "installation.record (role internal)")
    },
    row(I, PROMO, Rpc::RequestPromotion, NO_ENV, Who::Bob, DENIED, "promotion.request on the source"),
    // Tasks are the pending requests where the caller holds promotion.approve: none for her.
    row(I, PROMO, Rpc::ListPromotionTasks, Allowed, Who::Olga, Allowed, "lists only the caller's tasks"),
    // Requests the caller may see: its own, installation.read on the target, or
    // promotion.request on the source; none for her.
    row(I, PROMO, Rpc::ListPromotionRequests, NO_ENV, Who::Olga, Allowed, "lists only what the caller may see"),
    row(I, PROMO, Rpc::GetPromotionRequest, NO_PROMOTION, Who::Olga, DENIED, "installation.read on the target"),
    row(I, PROMO, Rpc::AcceptPromotionRequest, NO_PROMOTION, Who::Victor, DENIED, "promotion.approve on the target"),
    row(I, PROMO, Rpc::AttachPreRun, NO_PROMOTION, Who::Victor, DENIED, "promotion.approve on the target"),
    row(I, PROMO, Rpc::RejectPromotionRequest, NO_PROMOTION, Who::Victor, DENIED, "promotion.approve on the target"),
    row(I, PROMO, Rpc::CancelPromotionRequest, NO_PROMOTION, Who::Bob, Denied("NOT_REQUESTER"), "the requester only"),
    row(I, NOTIFY, Rpc::CreateSubscription, NO_ENV, Who::Bob, DENIED, "notification.manage (admin) on the environment"),
    // Lists only the subscriptions the caller manages: none for gina or bob.
    row(I, NOTIFY, Rpc::ListSubscriptions, Allowed, Who::Bob, Allowed, "lists only what the caller manages"),
    row(I, NOTIFY, Rpc::DeleteSubscription, NotFound("SUBSCRIPTION_NOT_FOUND"), Who::Bob, DENIED, "notification.manage"),
    row(I, NOTIFY, Rpc::ListDeliveries, Allowed, Who::Bob, DENIED, "notification.manage somewhere; shows only its own"),
];

/// The acme resources the matrix calls name.
struct Fixture {
    package: pb::Package,
    pre_run_id: String,
    installation_id: String,
    promotion_id: String,
    subscription_id: String,
}

async fn fixture(dev: &DevServices) -> Fixture {
    let mut alice = dev.clients("alice").await;
    let mut bob = dev.clients("bob").await;
    let req = pb::CreatePackageRequest {
        name: "Onboarding template".into(),
        source_environment: "dev".into(),
        object_collections: vec![pb::ObjectCollection {
            obj_code: "TMPL".into(),
            entities: vec![pb::EntityRef { id: ONBOARDING_TMPL.into(), name: String::new() }],
        }],
        ..Default::default()
    };
    let id = alice.packages.create_package(req).await.expect("create the fixture package").into_inner().id;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut package = loop {
        let p = get_package(&mut alice, &id).await;
        if p.status == pb::PackageStatus::Building as i32 {
            break p;
        }
        assert_eq!(p.status, pb::PackageStatus::Extracting as i32, "extraction failed: {}", p.failure_reason);
        assert!(std::time::Instant::now() < deadline, "extraction never ended");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    package.status = pb::PackageStatus::Preview as i32;
    let req = pb::UpdatePackageRequest {
        package: Some(package),
        update_mask: Some(prost_types::FieldMask { paths: vec!["status".into()] }),
        request_id: String::new(),
    };
    alice.packages.update_package(req).await.expect("preview the fixture package");
    let req =
        pb::CreatePreRunRequest { package_id: id.clone(), destination_environment: "qa".into(), ..Default::default() };
    let pre_run_id = bob.installations.create_pre_run(req).await.expect("fixture pre-run").into_inner().id;
    let req = pb::CreateInstallationRequest {
        package_id: id.clone(),
        destination_environment: "qa".into(),
        ..Default::default()
    };
    let installation_id =
        bob.installations.create_installation(req).await.expect("fixture installation").into_inner().id;
    let req =
        pb::RequestPromotionRequest { package_id: id.clone(), target_environment: "qa".into(), ..Default::default() };
    let promotion_id = alice.promotions.request_promotion(req).await.expect("fixture request").into_inner().id;
    // The installation's count reaches the package asynchronously and changes its etag:
    // wait for it, so the package stays as the fixture saw it.
    let package = loop {
        let p = get_package(&mut alice, &id).await;
        if p.installation_counts.get("qa") == Some(&1) {
            break p;
        }
        assert!(std::time::Instant::now() < deadline, "the installation count never arrived");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let mut admin = dev.clients("admin").await;
    let req = pb::CreateSubscriptionRequest {
        url: "http://127.0.0.1:9/".into(),
        events: vec!["PROMOTION_ACCEPTED".into()],
        secret: "a-matrix-fixture-secret".into(),
        environment: "qa".into(),
        request_id: String::new(),
    };
    let subscription_id =
        admin.notifications.create_subscription(req).await.expect("fixture subscription").into_inner().id;
    Fixture { package, pre_run_id, installation_id, promotion_id, subscription_id }
}

async fn get_package(c: &mut Clients, id: &str) -> pb::Package {
    c.packages.get_package(pb::GetPackageRequest { id: id.into() }).await.unwrap().into_inner()
}

fn organization_of_environment(env: &str) -> &'static str {
    if env.starts_with("globex-") {
        "globex"
    } else {
        "acme"
    }
}

/// Makes the call; on success returns the organizations of everything the answer shows.
async fn call(rpc: Rpc, host: Host, who: Who, c: &mut Clients, f: &Fixture) -> Result<Vec<String>, Status> {
    let p = &f.package;
    let orgs = |envs: Vec<String>| envs.iter().map(|e| organization_of_environment(e).to_string()).collect();
    let none = Vec::new;
    Ok(match rpc {
        Rpc::CreatePackage => {
            let req = pb::CreatePackageRequest {
                name: "Matrix package".into(),
                source_environment: "dev".into(),
                object_collections: p.object_collections.clone(),
                ..Default::default()
            };
            vec![c.packages.create_package(req).await?.into_inner().organization]
        }
        Rpc::ListPackages => {
            let r = c.packages.list_packages(pb::ListPackagesRequest::default()).await?.into_inner();
            r.packages.into_iter().map(|p| p.organization).collect()
        }
        Rpc::GetPackage => {
            vec![c.packages.get_package(pb::GetPackageRequest { id: p.id.clone() }).await?.into_inner().organization]
        }
        Rpc::DiffPackageVersions => {
            let req = pb::DiffPackageVersionsRequest { id: p.id.clone(), from_version: 1, ..Default::default() };
            let r = c.packages.diff_package_versions(req).await?.into_inner();
            assert_eq!(r.to_version, 1, "0 is the current version");
            vec!["acme".into()]
        }
        Rpc::GetPackageDefinition => {
            let req = pb::GetPackageDefinitionRequest { id: p.id.clone(), version: 0 };
            let mut stream = c.packages.get_package_definition(req).await?.into_inner();
            let mut seen = Vec::new();
            while let Some(part) = stream.message().await? {
                if let Some(pb::get_package_definition_response::Part::Header(h)) = part.part {
                    seen.push(h.organization);
                }
            }
            seen
        }
        Rpc::ReplacePackage => {
            let req = pb::ReplacePackageRequest {
                id: p.id.clone(),
                name: "Replaced by the matrix".into(),
                description: String::new(),
                is_private: false,
                definition: Some(pb::replace_package_request::Definition::ObjectCollections(pb::ObjectCollections {
                    collections: p.object_collections.clone(),
                })),
                etag: p.etag.clone(),
                request_id: String::new(),
            };
            vec![c.packages.replace_package(req).await?.into_inner().organization]
        }
        Rpc::UpdatePackage => {
            let req = pb::UpdatePackageRequest {
                package: Some(pb::Package {
                    id: p.id.clone(),
                    etag: p.etag.clone(),
                    description: "changed by the matrix".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask { paths: vec!["description".into()] }),
                request_id: String::new(),
            };
            vec![c.packages.update_package(req).await?.into_inner().organization]
        }
        Rpc::DeletePackage => {
            let req = pb::DeletePackageRequest { id: p.id.clone(), etag: p.etag.clone(), request_id: String::new() };
            c.packages.delete_package(req).await?;
            none()
        }
        Rpc::WatchPackage => {
            let mut stream = c.packages.watch_package(pb::WatchPackageRequest { id: p.id.clone() }).await?.into_inner();
            let first = stream.message().await?.expect("a watch starts with the package as it is");
            vec![first.organization]
        }
        Rpc::RecordInstallation => {
            let req = pb::RecordInstallationRequest {
                package_id: p.id.clone(),
                package_version: p.version,
                installation_id: uuid::Uuid::now_v7().to_string(),
                destination_environment: if who == Who::GlobexInternal { "globex-prod" } else { "qa" }.into(),
                request_id: String::new(),
            };
            c.packages.record_installation(req).await?;
            none()
        }
        Rpc::IssueToken => {
            let req = pb::IssueTokenRequest {
                client_id: "victor".into(),
                client_secret: "victor-secret".into(),
                ttl_seconds: 60,
            };
            let identity = c.auth.issue_token(req).await?.into_inner().identity.expect("the token's identity");
            assert_eq!(identity.subject, "victor", "the body's credentials decide, not the header");
            none()
        }
        Rpc::WhoAmI => vec![c.auth.who_am_i(pb::WhoAmIRequest {}).await?.into_inner().organization],
        Rpc::ListAuditEvents => {
            let req = pb::ListAuditEventsRequest { environment: "dev".into(), ..Default::default() };
            let audit = if host == Host::Package { &mut c.package_audit } else { &mut c.installation_audit };
            audit.list_audit_events(req).await?.into_inner().events.into_iter().map(|e| e.organization).collect()
        }
        Rpc::ListEnvironments => {
            let r = c.environments.list_environments(pb::ListEnvironmentsRequest::default()).await?.into_inner();
            r.environments.into_iter().map(|e| e.organization).collect()
        }
        Rpc::GetEnvironment => {
            vec![
                c.environments
                    .get_environment(pb::GetEnvironmentRequest { id: "dev".into() })
                    .await?
                    .into_inner()
                    .organization,
            ]
        }
        Rpc::GetCatalog => {
            let req = pb::GetCatalogRequest { name: String::new(), environment: "dev".into() };
            let catalog = c.environments.get_catalog(req).await?.into_inner();
            assert_eq!(catalog.name, "workfront");
            vec!["acme".into()]
        }
        Rpc::PutObjects => {
            let object =
                pb::ConfigObject { obj_code: "GROUP".into(), name: "Matrix group".into(), ..Default::default() };
            let req = pb::PutObjectsRequest {
                environment: "dev".into(),
                objects: vec![object],
                request_id: String::new(),
                ..Default::default()
            };
            c.environments.put_objects(req).await?;
            none()
        }
        Rpc::GetObject => {
            let req =
                pb::GetObjectRequest { environment: "dev".into(), obj_code: "TMPL".into(), id: ONBOARDING_TMPL.into() };
            c.environments.get_object(req).await?;
            vec!["acme".into()]
        }
        Rpc::ListObjects => {
            let req =
                pb::ListObjectsRequest { environment: "dev".into(), obj_code: "TMPL".into(), ..Default::default() };
            c.environments.list_objects(req).await?;
            vec!["acme".into()]
        }
        Rpc::GetEnvironmentPolicy => {
            let req = pb::GetEnvironmentPolicyRequest { environment: "dev".into() };
            c.environments.get_environment_policy(req).await?;
            vec![organization_of_environment("dev").to_string()]
        }
        Rpc::UpdateEnvironmentPolicy => {
            let policy =
                pb::EnvironmentPolicy { environment: "qa".into(), required_approvals: 1, ..Default::default() };
            let req = pb::UpdateEnvironmentPolicyRequest {
                policy: Some(policy),
                update_mask: Some(prost_types::FieldMask { paths: vec!["required_approvals".into()] }),
                request_id: String::new(),
            };
            c.environments.update_environment_policy(req).await?;
            vec![organization_of_environment("qa").to_string()]
        }
        Rpc::DeleteObject => {
            let req = pb::DeleteObjectRequest {
                environment: "dev".into(),
                obj_code: "TMPL".into(),
                id: ONBOARDING_TMPL.into(),
                cascade: true,
                request_id: String::new(),
            };
            c.environments.delete_object(req).await?;
            none()
        }
        Rpc::ExportObjects => {
            let req = pb::ExportObjectsRequest { environment: "dev".into(), roots: p.object_collections.clone() };
            let mut stream = c.environments.export_objects(req).await?.into_inner();
            while stream.message().await?.is_some() {}
            vec!["acme".into()]
        }
        Rpc::CreatePreRun => {
            let req = pb::CreatePreRunRequest {
                package_id: p.id.clone(),
                destination_environment: "qa".into(),
                ..Default::default()
            };
            orgs(vec![c.installations.create_pre_run(req).await?.into_inner().destination_environment])
        }
        Rpc::GetPreRun => {
            let req = pb::GetPreRunRequest { id: f.pre_run_id.clone(), ..Default::default() };
            orgs(vec![c.installations.get_pre_run(req).await?.into_inner().destination_environment])
        }
        Rpc::CreateInstallation => {
            let req = pb::CreateInstallationRequest {
                package_id: p.id.clone(),
                destination_environment: "qa".into(),
                ..Default::default()
            };
            orgs(vec![c.installations.create_installation(req).await?.into_inner().destination_environment])
        }
        Rpc::ListInstallations => {
            let req = pb::ListInstallationsRequest { destination_environment: "qa".into(), ..Default::default() };
            let r = c.installations.list_installations(req).await?.into_inner();
            orgs(r.installations.into_iter().map(|i| i.destination_environment).collect())
        }
        Rpc::GetInstallation => {
            let req = pb::GetInstallationRequest { id: f.installation_id.clone(), ..Default::default() };
            orgs(vec![c.installations.get_installation(req).await?.into_inner().destination_environment])
        }
        Rpc::RollbackInstallation => {
            let req = pb::RollbackInstallationRequest { id: f.installation_id.clone(), ..Default::default() };
            orgs(vec![c.installations.rollback_installation(req).await?.into_inner().destination_environment])
        }
        Rpc::GetDrift => {
            let req = pb::GetDriftRequest { environment: "qa".into(), ..Default::default() };
            let r = c.installations.get_drift(req).await?.into_inner();
            orgs(std::iter::once(r.environment).chain(r.entries.into_iter().map(|e| e.source_environment)).collect())
        }
        Rpc::CheckInstallation => {
            let req = pb::CheckInstallationRequest {
                installation_id: f.installation_id.clone(),
                package_id: p.id.clone(),
                package_version: p.version,
                destination_environment: "qa".into(),
            };
            c.installations.check_installation(req).await?;
            none()
        }
        Rpc::RequestPromotion => {
            let req = pb::RequestPromotionRequest {
                package_id: p.id.clone(),
                target_environment: "qa".into(),
                ..Default::default()
            };
            vec![c.promotions.request_promotion(req).await?.into_inner().organization]
        }
        Rpc::ListPromotionTasks => {
            let r = c.promotions.list_promotion_tasks(pb::ListPromotionTasksRequest::default()).await?.into_inner();
            r.promotion_requests.into_iter().map(|r| r.organization).collect()
        }
        Rpc::ListPromotionRequests => {
            let req = pb::ListPromotionRequestsRequest { environment: "qa".into(), ..Default::default() };
            let r = c.promotions.list_promotion_requests(req).await?.into_inner();
            r.promotion_requests.into_iter().map(|r| r.organization).collect()
        }
        Rpc::GetPromotionRequest => {
            let req = pb::GetPromotionRequestRequest { id: f.promotion_id.clone() };
            vec![c.promotions.get_promotion_request(req).await?.into_inner().organization]
        }
        Rpc::AcceptPromotionRequest => {
            let req = pb::AcceptPromotionRequestRequest { id: f.promotion_id.clone(), ..Default::default() };
            vec![c.promotions.accept_promotion_request(req).await?.into_inner().organization]
        }
        Rpc::AttachPreRun => {
            let req = pb::AttachPreRunRequest {
                id: f.promotion_id.clone(),
                pre_run_id: f.pre_run_id.clone(),
                request_id: String::new(),
            };
            vec![c.promotions.attach_pre_run(req).await?.into_inner().organization]
        }
        Rpc::RejectPromotionRequest => {
            let req = pb::RejectPromotionRequestRequest { id: f.promotion_id.clone(), ..Default::default() };
            vec![c.promotions.reject_promotion_request(req).await?.into_inner().organization]
        }
        Rpc::CancelPromotionRequest => {
            let req = pb::CancelPromotionRequestRequest { id: f.promotion_id.clone(), ..Default::default() };
            vec![c.promotions.cancel_promotion_request(req).await?.into_inner().organization]
        }
        Rpc::CreateSubscription => {
            let req = pb::CreateSubscriptionRequest {
                url: "http://127.0.0.1:9/".into(),
                events: vec!["PROMOTION_REQUESTED".into()],
                secret: "a-matrix-call-secret-long".into(),
                environment: "qa".into(),
                request_id: String::new(),
            };
            let s = c.notifications.create_subscription(req).await?.into_inner();
            vec![organization_of_environment(&s.environment).to_string()]
        }
        Rpc::ListSubscriptions => {
            let found = c.notifications.list_subscriptions(pb::ListSubscriptionsRequest {}).await?.into_inner();
            orgs(found.subscriptions.into_iter().map(|s| s.environment).collect())
        }
        Rpc::DeleteSubscription => {
            let req = pb::DeleteSubscriptionRequest { id: f.subscription_id.clone(), request_id: String::new() };
            c.notifications.delete_subscription(req).await?;
            vec!["acme".to_string()]
        }
        Rpc::ListDeliveries => {
            let found = c.notifications.list_deliveries(pb::ListDeliveriesRequest::default()).await?.into_inner();
            orgs(found.deliveries.into_iter().map(|d| d.environment).collect())
        }
    })
}

/// Every `service/method` of the six public services, from the compiled descriptor set.
fn contract_methods() -> BTreeSet<String> {
    let set = prost_types::FileDescriptorSet::decode(promotion_api::FILE_DESCRIPTOR_SET).unwrap();
    set.file
        .iter()
        .flat_map(|f| &f.service)
        .flat_map(|s| s.method.iter().map(move |m| format!("{}/{}", s.name(), m.name())))
        .collect()
}

fn unauthenticated_reason(column: usize) -> &'static str {
    ["TOKEN_MISSING", "TOKEN_EXPIRED", "TOKEN_INVALID"][column]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_of_both_services_against_every_kind_of_bad_caller() {
    // The table covers every RPC of the contracts; AuditService is hosted by both services.
    let rows: BTreeSet<String> = MATRIX.iter().map(|r| format!("{}/{:?}", r.service, r.rpc)).collect();
    assert_eq!(rows, contract_methods(), "the matrix must have a row for every RPC");
    let audit_hosts: Vec<Host> = MATRIX.iter().filter(|r| r.service == AUDIT).map(|r| r.host).collect();
    assert_eq!(audit_hosts, [Host::Package, Host::Installation], "AuditService is checked on both services");

    let dev = DevServices::start().await;
    let f = fixture(&dev).await;
    let mut clients = Vec::new();
    for who in WHO {
        clients.push(Clients::connect(dev.package_addr, dev.installation_addr, token(&dev, who).await).await);
    }
    let mut failures = Vec::new();
    for row in MATRIX {
        let callers = [Who::Nobody, Who::Expired, Who::BadSignature, row.other, row.lacking];
        for (column, (who, expect)) in callers.into_iter().zip(row.expect).enumerate() {
            let c = &mut clients[WHO.iter().position(|w| *w == who).unwrap()];
            let result = call(row.rpc, row.host, who, c, &f).await;
            let label = format!("{:?} {}/{:?} as {who:?} ({})", row.host, row.service, row.rpc, row.why);
            let wanted = match expect {
                Expect::Ok => None,
                Expect::Unauthenticated => Some((Code::Unauthenticated, unauthenticated_reason(column))),
                Expect::NotFound(reason) => Some((Code::NotFound, reason)),
                Expect::Denied(reason) => Some((Code::PermissionDenied, reason)),
            };
            match (wanted, result) {
                (None, Ok(seen)) => {
                    let org = organization_of(who);
                    if let Some(leak) = seen.iter().find(|o| o.as_str() != org) {
                        failures.push(format!("{label}: shows {leak}'s data to a caller of {org}"));
                    }
                }
                (None, Err(s)) => failures.push(format!("{label}: wanted OK, got {:?} {:?}", s.code(), reason_of(&s))),
                (Some((code, reason)), Ok(_)) => failures.push(format!("{label}: wanted {code:?} {reason}, got OK")),
                (Some((code, reason)), Err(s)) => {
                    if s.code() != code || reason_of(&s).as_deref() != Some(reason) {
                        failures.push(format!(
                            "{label}: wanted {code:?} {reason}, got {:?} {:?}: {}",
                            s.code(),
                            reason_of(&s),
                            s.message()
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} cells differ from the matrix:\n{}", failures.len(), failures.join("\n"));

    // Nothing any refused call touched has changed.
    let mut admin = dev.clients("admin").await;
    let after = get_package(&mut admin, &f.package.id).await;
    assert_eq!(
        (after.etag, after.version, after.status),
        (f.package.etag.clone(), f.package.version, f.package.status)
    );
    let req = pb::GetPromotionRequestRequest { id: f.promotion_id.clone() };
    let pending = admin.promotions.get_promotion_request(req).await.unwrap().into_inner();
    assert_eq!(pending.status, pb::PromotionStatus::ToBeValidated as i32);
    let req = pb::GetInstallationRequest { id: f.installation_id.clone(), ..Default::default() };
    let installation = admin.installations.get_installation(req).await.unwrap().into_inner();
    assert_eq!(installation.status, pb::InstallationStatus::Installed as i32);
    let req = pb::GetObjectRequest { environment: "dev".into(), obj_code: "TMPL".into(), id: ONBOARDING_TMPL.into() };
    admin.environments.get_object(req).await.expect("the template is still in dev");
}
