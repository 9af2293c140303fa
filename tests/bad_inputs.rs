//! A table of bad inputs across every RPC of both services: each gives its documented
//! code and reason, writes nothing (checked by reading state back), never panics, and
//! leaves both services serving.
mod common;

use common::*;
use promotion_api::v1 as pb;
use std::collections::HashMap;
use tonic::Code;

/// Everything a bad call must leave untouched.
#[derive(Debug, PartialEq)]
struct Snapshot {
    revisions: HashMap<String, u64>,
    packages: usize,
    installations: usize,
    promotions: usize,
}

async fn snapshot(c: &mut Clients) -> Snapshot {
    let envs = c.environments.list_environments(pb::ListEnvironmentsRequest::default()).await.unwrap().into_inner();
    let packages = c
        .packages
        .list_packages(pb::ListPackagesRequest { page_size: 1000, show_retired: true, ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .packages
        .len();
    let installations = c
        .installations
        .list_installations(pb::ListInstallationsRequest { page_size: 1000, ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .installations
        .len();
    let promotions = c
        .promotions
        .list_promotion_requests(pb::ListPromotionRequestsRequest { page_size: 1000, ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .promotion_requests
        .len();
    Snapshot {
        revisions: envs.environments.into_iter().map(|e| (e.id, e.revision)).collect(),
        packages,
        installations,
        promotions,
    }
}

fn group(name: &str) -> pb::ConfigObject {
    pb::ConfigObject { obj_code: "GROUP".into(), name: name.into(), ..Default::default() }
}

const UNKNOWN_UUID: &str = "0190f0f0-0000-7000-8000-000000000000";

type Outcome = Result<(), tonic::Status>;

fn done<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Outcome {
    r.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_their_documented_code_and_write_nothing() {
    let dev = DevServices::start().await;
    let mut admin = dev.clients("admin").await;
    let before = snapshot(&mut admin).await;
    let mut rows: Vec<(&str, Outcome, Code, &str)> = Vec::new();
    let c = &mut admin;
    macro_rules! row {
        ($name:expr, $call:expr, $code:expr, $reason:expr) => {
            rows.push(($name, done($call.await), $code, $reason));
        };
    }
    // AuthService
    row!(
        "IssueToken wrong secret",
        c.auth.issue_token(pb::IssueTokenRequest {
            client_id: "alice".into(),
            client_secret: "nope".into(),
            ttl_seconds: 0
        }),
        Code::Unauthenticated,
        "INVALID_CLIENT"
    );
    row!(
        "IssueToken unknown client",
        c.auth.issue_token(pb::IssueTokenRequest {
            client_id: "mallory".into(),
            client_secret: "x".into(),
            ttl_seconds: 0
        }),
        Code::Unauthenticated,
        "INVALID_CLIENT"
    );
    row!(
        "IssueToken negative ttl",
        c.auth.issue_token(pb::IssueTokenRequest {
            client_id: "alice".into(),
            client_secret: "alice-secret".into(),
            ttl_seconds: -5
        }),
        Code::InvalidArgument,
        "INVALID_TTL"
    );
    // EnvironmentService
    row!(
        "GetEnvironment unknown",
        c.environments.get_environment(pb::GetEnvironmentRequest { id: "staging".into() }),
        Code::NotFound,
        "ENVIRONMENT_NOT_FOUND"
    );
    row!(
        "ListEnvironments negative page",
        c.environments.list_environments(pb::ListEnvironmentsRequest { page_size: -1, ..Default::default() }),
        Code::InvalidArgument,
        "INVALID_PAGE_SIZE"
    );
    row!(
        "GetCatalog unknown",
        c.environments.get_catalog(pb::GetCatalogRequest { name: "sap".into(), ..Default::default() }),
        Code::NotFound,
        "CATALOG_NOT_FOUND"
    );
    row!(
        "GetCatalog nothing named",
        c.environments.get_catalog(pb::GetCatalogRequest::default()),
        Code::InvalidArgument,
        "MISSING_FIELD"
    );
    row!(
        "PutObjects empty batch",
        c.environments.put_objects(pb::PutObjectsRequest { environment: "qa".into(), ..Default::default() }),
        Code::InvalidArgument,
        "MISSING_FIELD"
    );
    row!(
        "PutObjects unknown type",
        c.environments.put_objects(pb::PutObjectsRequest {
            environment: "qa".into(),
            objects: vec![pb::ConfigObject { obj_code: "WIDGET".into(), name: "w".into(), ..Default::default() }],
            ..Default::default()
        }),
        Code::InvalidArgument,
        "UNKNOWN_TYPE"
    );
    row!(
        "PutObjects lowercase type",
        c.environments.put_objects(pb::PutObjectsRequest {
            environment: "qa".into(),
            objects: vec![pb::ConfigObject { obj_code: "group".into(), name: "g".into(), ..Default::default() }],
            ..Default::default()
        }),
        Code::InvalidArgument,
        "INVALID_OBJ_CODE"
    );
    row!(
        "PutObjects malformed id",
        c.environments.put_objects(pb::PutObjectsRequest {
            environment: "qa".into(),
            objects: vec![pb::ConfigObject { id: "ABC".into(), ..group("g") }],
            ..Default::default()
        }),
        Code::InvalidArgument,
        "INVALID_ID"
    );
    row!(
        "PutObjects empty name",
        c.environments.put_objects(pb::PutObjectsRequest {
            environment: "qa".into(),
            objects: vec![group(" ")],
            ..Default::default()
        }),
        Code::InvalidArgument,
        "INVALID_NAME"
    );
    row!(
        "PutObjects 300-char name",
        c.environments.put_objects(pb::PutObjectsRequest {
            environment: "qa".into(),
            objects: vec![group(&"n".repeat(300))],
            ..Default::default()
        }),
        Code::InvalidArgument,
        "INVALID_NAME"
    );
    row!(
        "PutObjects duplicate in batch",
        c.environments.put_objects(pb::PutObjectsRequest {
            environment: "qa".into(),
            objects: vec![
                pb::ConfigObject { id: "a".repeat(32), ..group("x") },
                pb::ConfigObject { id: "a".repeat(32), ..group("y") }
            ],
            ..Default::default()
        }),
        Code::InvalidArgument,
        "DUPLICATE_OBJECT"
    );
    row!(
        "PutObjects orphan task",
        c.environments.put_objects(pb::PutObjectsRequest {
            environment: "qa".into(),
            objects: vec![pb::ConfigObject { obj_code: "TTSK".into(), name: "t".into(), ..Default::default() }],
            ..Default::default()
        }),
        Code::InvalidArgument,
        "PARENT_REQUIRED"
    );
    row!(
        "PutObjects wrong parent type",
        c.environments.put_objects(pb::PutObjectsRequest {
            environment: "qa".into(),
            objects: vec![pb::ConfigObject {
                obj_code: "TTSK".into(),
                name: "t".into(),
                parent: Some(pb::ObjectKey { obj_code: "ROLE".into(), id: "b".repeat(32) }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        Code::InvalidArgument,
        "INVALID_PARENT"
    );
    row!(
        "PutObjects dangling reference",
        c.environments.put_objects(pb::PutObjectsRequest {
            environment: "qa".into(),
            objects: vec![pb::ConfigObject {
                references: vec![pb::Reference {
                    field: "owner".into(),
                    obj_code: "GROUP".into(),
                    id: "c".repeat(32),
                    optional: false
                }],
                ..group("refers")
            }],
            ..Default::default()
        }),
        Code::FailedPrecondition,
        "REFERENCE_NOT_FOUND"
    );
    row!(
        "PutObjects missing parent",
        c.environments.put_objects(pb::PutObjectsRequest {
            environment: "qa".into(),
            objects: vec![pb::ConfigObject {
                obj_code: "TTSK".into(),
                name: "t".into(),
                parent: Some(pb::ObjectKey { obj_code: "TMPL".into(), id: "d".repeat(32) }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        Code::FailedPrecondition,
        "PARENT_NOT_FOUND"
    );
    row!(
        "PutObjects duplicate group name",
        c.environments.put_objects(pb::PutObjectsRequest {
            environment: "qa".into(),
            objects: vec![group("Agency Operations")],
            ..Default::default()
        }),
        Code::FailedPrecondition,
        "NAME_CONFLICT"
    );
    row!(
        "PutObjects unknown environment",
        c.environments.put_objects(pb::PutObjectsRequest {
            environment: "staging".into(),
            objects: vec![group("g")],
            ..Default::default()
        }),
        Code::NotFound,
        "ENVIRONMENT_NOT_FOUND"
    );
    row!(
        "GetObject malformed id",
        c.environments.get_object(pb::GetObjectRequest {
            environment: "dev".into(),
            obj_code: "TMPL".into(),
            id: "xyz".into()
        }),
        Code::InvalidArgument,
        "INVALID_ID"
    );
    row!(
        "GetObject missing type",
        c.environments.get_object(pb::GetObjectRequest {
            environment: "dev".into(),
            obj_code: String::new(),
            id: ONBOARDING_TMPL.into()
        }),
        Code::InvalidArgument,
        "MISSING_FIELD"
    );
    row!(
        "GetObject absent",
        c.environments.get_object(pb::GetObjectRequest {
            environment: "dev".into(),
            obj_code: "TMPL".into(),
            id: "e".repeat(32)
        }),
        Code::NotFound,
        "OBJECT_NOT_FOUND"
    );
    row!(
        "ListObjects unknown type",
        c.environments.list_objects(pb::ListObjectsRequest {
            environment: "dev".into(),
            obj_code: "WIDGET".into(),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "UNKNOWN_TYPE"
    );
    row!(
        "ListObjects negative page",
        c.environments.list_objects(pb::ListObjectsRequest {
            environment: "dev".into(),
            obj_code: "TMPL".into(),
            page_size: -3,
            ..Default::default()
        }),
        Code::InvalidArgument,
        "INVALID_PAGE_SIZE"
    );
    row!(
        "ListObjects forged token",
        c.environments.list_objects(pb::ListObjectsRequest {
            environment: "dev".into(),
            obj_code: "TMPL".into(),
            page_token: "!!!".into(),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "INVALID_PAGE_TOKEN"
    );
    row!(
        "ListObjects token of another query",
        c.environments.list_objects(pb::ListObjectsRequest {
            environment: "dev".into(),
            obj_code: "TMPL".into(),
            page_token: "T2Rldg".into(),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "INVALID_PAGE_TOKEN"
    );
    row!(
        "DeleteObject with children",
        c.environments.delete_object(pb::DeleteObjectRequest {
            environment: "dev".into(),
            obj_code: "TMPL".into(),
            id: ONBOARDING_TMPL.into(),
            ..Default::default()
        }),
        Code::FailedPrecondition,
        "HAS_CHILDREN"
    );
    row!(
        "DeleteObject absent",
        c.environments.delete_object(pb::DeleteObjectRequest {
            environment: "dev".into(),
            obj_code: "GROUP".into(),
            id: "f".repeat(32),
            ..Default::default()
        }),
        Code::NotFound,
        "OBJECT_NOT_FOUND"
    );
    // InstallationService
    row!(
        "CreatePreRun malformed package id",
        c.installations.create_pre_run(pb::CreatePreRunRequest {
            package_id: "pkg-1".into(),
            destination_environment: "qa".into(),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "INVALID_ID"
    );
    row!(
        "CreatePreRun negative version",
        c.installations.create_pre_run(pb::CreatePreRunRequest {
            package_id: UNKNOWN_UUID.into(),
            package_version: -1,
            destination_environment: "qa".into(),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "INVALID_VERSION"
    );
    row!(
        "CreatePreRun bad request id",
        c.installations.create_pre_run(pb::CreatePreRunRequest {
            package_id: UNKNOWN_UUID.into(),
            destination_environment: "qa".into(),
            request_id: "again".into(),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "INVALID_REQUEST_ID"
    );
    row!(
        "CreatePreRun unknown destination",
        c.installations.create_pre_run(pb::CreatePreRunRequest {
            package_id: UNKNOWN_UUID.into(),
            destination_environment: "staging".into(),
            ..Default::default()
        }),
        Code::NotFound,
        "ENVIRONMENT_NOT_FOUND"
    );
    row!(
        "GetPreRun unknown",
        c.installations.get_pre_run(pb::GetPreRunRequest { id: UNKNOWN_UUID.into(), ..Default::default() }),
        Code::NotFound,
        "PRE_RUN_NOT_FOUND"
    );
    row!(
        "GetPreRun negative entries page",
        c.installations.get_pre_run(pb::GetPreRunRequest {
            id: UNKNOWN_UUID.into(),
            entries_page_size: -1,
            ..Default::default()
        }),
        Code::InvalidArgument,
        "INVALID_PAGE_SIZE"
    );
    row!(
        "CreateInstallation malformed pre-run id",
        c.installations.create_installation(pb::CreateInstallationRequest {
            package_id: UNKNOWN_UUID.into(),
            destination_environment: "qa".into(),
            pre_run_id: "yesterday".into(),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "INVALID_ID"
    );
    row!(
        "CreateInstallation unknown pre-run",
        c.installations.create_installation(pb::CreateInstallationRequest {
            package_id: UNKNOWN_UUID.into(),
            destination_environment: "qa".into(),
            pre_run_id: UNKNOWN_UUID.into(),
            ..Default::default()
        }),
        Code::NotFound,
        "PRE_RUN_NOT_FOUND"
    );
    let bad_override = HashMap::from([(
        "GROUP".to_string(),
        pb::TypeTranslation { entries: HashMap::from([("zz".to_string(), pb::TranslationEntry::default())]) },
    )]);
    row!(
        "CreateInstallation malformed override id",
        c.installations.create_installation(pb::CreateInstallationRequest {
            package_id: UNKNOWN_UUID.into(),
            destination_environment: "qa".into(),
            translation_map: bad_override,
            ..Default::default()
        }),
        Code::InvalidArgument,
        "INVALID_ID"
    );
    row!(
        "CreateInstallation unknown package",
        c.installations.create_installation(pb::CreateInstallationRequest {
            package_id: UNKNOWN_UUID.into(),
            destination_environment: "qa".into(),
            ..Default::default()
        }),
        Code::NotFound,
        "PACKAGE_NOT_FOUND"
    );
    row!(
        "ListInstallations negative page",
        c.installations.list_installations(pb::ListInstallationsRequest { page_size: -1, ..Default::default() }),
        Code::InvalidArgument,
        "INVALID_PAGE_SIZE"
    );
    row!(
        "GetInstallation unknown",
        c.installations.get_installation(pb::GetInstallationRequest { id: UNKNOWN_UUID.into(), ..Default::default() }),
        Code::NotFound,
        "INSTALLATION_NOT_FOUND"
    );
    row!(
        "RollbackInstallation malformed id",
        c.installations
            .rollback_installation(pb::RollbackInstallationRequest { id: "last".into(), ..Default::default() }),
        Code::InvalidArgument,
        "INVALID_ID"
    );
    row!(
        "RollbackInstallation unknown",
        c.installations
            .rollback_installation(pb::RollbackInstallationRequest { id: UNKNOWN_UUID.into(), ..Default::default() }),
        Code::NotFound,
        "INSTALLATION_NOT_FOUND"
    );
    // PromotionService
    row!(
        "RequestPromotion missing target",
        c.promotions
            .request_promotion(pb::RequestPromotionRequest { package_id: UNKNOWN_UUID.into(), ..Default::default() }),
        Code::InvalidArgument,
        "MISSING_FIELD"
    );
    row!(
        "RequestPromotion long comment",
        c.promotions.request_promotion(pb::RequestPromotionRequest {
            package_id: UNKNOWN_UUID.into(),
            target_environment: "qa".into(),
            comment: "c".repeat(5000),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "COMMENT_TOO_LONG"
    );
    // The same reason means the same thing on every service (it was INVALID_ID here).
    row!(
        "RequestPromotion bad request id",
        c.promotions.request_promotion(pb::RequestPromotionRequest {
            package_id: UNKNOWN_UUID.into(),
            target_environment: "qa".into(),
            request_id: "again".into(),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "INVALID_REQUEST_ID"
    );
    row!(
        "RequestPromotion unknown target",
        c.promotions.request_promotion(pb::RequestPromotionRequest {
            package_id: UNKNOWN_UUID.into(),
            target_environment: "staging".into(),
            ..Default::default()
        }),
        Code::NotFound,
        "ENVIRONMENT_NOT_FOUND"
    );
    row!(
        "RequestPromotion unknown package",
        c.promotions.request_promotion(pb::RequestPromotionRequest {
            package_id: UNKNOWN_UUID.into(),
            target_environment: "qa".into(),
            ..Default::default()
        }),
        Code::NotFound,
        "PACKAGE_NOT_FOUND"
    );
    row!(
        "ListPromotionTasks negative page",
        c.promotions.list_promotion_tasks(pb::ListPromotionTasksRequest { page_size: -1, ..Default::default() }),
        Code::InvalidArgument,
        "INVALID_PAGE_SIZE"
    );
    row!(
        "ListPromotionRequests unknown status",
        c.promotions.list_promotion_requests(pb::ListPromotionRequestsRequest { status: 42, ..Default::default() }),
        Code::InvalidArgument,
        "INVALID_STATUS"
    );
    row!(
        "GetPromotionRequest unknown",
        c.promotions.get_promotion_request(pb::GetPromotionRequestRequest { id: UNKNOWN_UUID.into() }),
        Code::NotFound,
        "PROMOTION_REQUEST_NOT_FOUND"
    );
    row!(
        "AcceptPromotionRequest malformed id",
        c.promotions
            .accept_promotion_request(pb::AcceptPromotionRequestRequest { id: "first".into(), ..Default::default() }),
        Code::InvalidArgument,
        "INVALID_ID"
    );
    row!(
        "AttachPreRun malformed pre-run id",
        c.promotions.attach_pre_run(pb::AttachPreRunRequest {
            id: UNKNOWN_UUID.into(),
            pre_run_id: "latest".into(),
            request_id: String::new(),
        }),
        Code::InvalidArgument,
        "INVALID_ID"
    );
    row!(
        "AttachPreRun unknown request",
        c.promotions.attach_pre_run(pb::AttachPreRunRequest {
            id: UNKNOWN_UUID.into(),
            pre_run_id: UNKNOWN_UUID.into(),
            request_id: String::new(),
        }),
        Code::NotFound,
        "PROMOTION_REQUEST_NOT_FOUND"
    );
    row!(
        "RequestPromotion malformed pre-run id",
        c.promotions.request_promotion(pb::RequestPromotionRequest {
            package_id: UNKNOWN_UUID.into(),
            target_environment: "qa".into(),
            pre_run_id: "mine".into(),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "INVALID_ID"
    );
    row!(
        "RejectPromotionRequest unknown",
        c.promotions.reject_promotion_request(pb::RejectPromotionRequestRequest {
            id: UNKNOWN_UUID.into(),
            ..Default::default()
        }),
        Code::NotFound,
        "PROMOTION_REQUEST_NOT_FOUND"
    );
    row!(
        "CancelPromotionRequest unknown",
        c.promotions.cancel_promotion_request(pb::CancelPromotionRequestRequest {
            id: UNKNOWN_UUID.into(),
            ..Default::default()
        }),
        Code::NotFound,
        "PROMOTION_REQUEST_NOT_FOUND"
    );
    // AuditService on both services
    row!(
        "ListAuditEvents (installation) negative page",
        c.installation_audit.list_audit_events(pb::ListAuditEventsRequest { page_size: -1, ..Default::default() }),
        Code::InvalidArgument,
        "INVALID_PAGE_SIZE"
    );
    row!(
        "ListAuditEvents (package) unknown environment",
        c.package_audit
            .list_audit_events(pb::ListAuditEventsRequest { environment: "staging".into(), ..Default::default() }),
        Code::NotFound,
        "ENVIRONMENT_NOT_FOUND"
    );
    // PackageService
    row!(
        "CreatePackage short name",
        c.packages.create_package(pb::CreatePackageRequest {
            name: "abc".into(),
            source_environment: "dev".into(),
            ..Default::default()
        }),
        Code::InvalidArgument,
        "INVALID_NAME"
    );
    row!(
        "CreatePackage unknown environment",
        c.packages.create_package(pb::CreatePackageRequest {
            name: "Bad package".into(),
            source_environment: "staging".into(),
            ..Default::default()
        }),
        Code::NotFound,
        "ENVIRONMENT_NOT_FOUND"
    );
    row!(
        "CreatePackage non-root type",
        c.packages.create_package(pb::CreatePackageRequest {
            name: "Bad package".into(),
            source_environment: "dev".into(),
            object_collections: vec![pb::ObjectCollection {
                obj_code: "TTSK".into(),
                entities: vec![pb::EntityRef { id: "a".repeat(32), name: String::new() }]
            }],
            ..Default::default()
        }),
        Code::InvalidArgument,
        "NOT_A_ROOT_TYPE"
    );
    row!(
        "GetPackage unknown",
        c.packages.get_package(pb::GetPackageRequest { id: UNKNOWN_UUID.into() }),
        Code::NotFound,
        "PACKAGE_NOT_FOUND"
    );
    row!(
        "ListPackages negative page",
        c.packages.list_packages(pb::ListPackagesRequest { page_size: -1, ..Default::default() }),
        Code::InvalidArgument,
        "INVALID_PAGE_SIZE"
    );
    row!(
        "DeletePackage unknown",
        c.packages.delete_package(pb::DeletePackageRequest {
            id: UNKNOWN_UUID.into(),
            etag: String::new(),
            request_id: String::new()
        }),
        Code::NotFound,
        "PACKAGE_NOT_FOUND"
    );

    let mut failures = Vec::new();
    for (name, outcome, code, reason) in &rows {
        match outcome {
            Ok(()) => failures.push(format!("{name}: succeeded, expected {code:?} {reason}")),
            Err(s) if s.code() != *code || reason_of(s).as_deref() != Some(*reason) => failures.push(format!(
                "{name}: got {:?} {:?} ({}), expected {code:?} {reason}",
                s.code(),
                reason_of(s),
                s.message()
            )),
            Err(_) => {}
        }
    }
    assert!(rows.len() >= 40, "the table has {} rows", rows.len());
    assert!(failures.is_empty(), "{} of {} rows wrong:\n{}", failures.len(), rows.len(), failures.join("\n"));
    assert_eq!(snapshot(&mut admin).await, before, "a bad input wrote something");
    assert_eq!(health_status(dev.package_addr).await, Some(1));
    assert_eq!(health_status(dev.installation_addr).await, Some(1));
}
