//! Package lifecycle tests on the memory and sled stores: versions, recovery, failures.

use crate::common::INTERRUPTED;
use crate::create::{create, NewPackage};
use crate::definitions::{self, Content};
use crate::extraction::{finish_extraction, recover, Extracted};
use crate::installation_check::Installed;
use crate::read::{definition, get};
use crate::record_installation::{record_installation, InstallationReport};
use crate::testing::states;
use crate::update::{update, Changes};
use crate::{PackageError, State};
use promotion_core::identity::{Binding, Credentials, Identity, Role};
use promotion_core::objects::{ConfigObject, EntityRef, ObjectCollection};
use promotion_core::package::{DefinitionChunk, Status};

fn alice() -> Identity {
    Identity {
        subject: "alice".into(),
        organization: "acme".into(),
        bindings: vec![Binding { role: Role::Publisher, environment: "dev".into() }],
        expires_at: i64::MAX,
    }
}

fn template_roots() -> Vec<ObjectCollection> {
    vec![ObjectCollection {
        obj_code: "TMPL".into(),
        entities: vec![EntityRef { id: format!("{:032x}", 1), name: "Onboarding".into() }],
    }]
}

fn new_package() -> NewPackage {
    NewPackage {
        name: "Agency Onboarding".into(),
        description: String::new(),
        source_environment: "dev".into(),
        object_collections: template_roots(),
        is_private: false,
        request_id: String::new(),
    }
}

fn extracted(state: &State, template_name: &str) -> Extracted {
    let tmpl = ConfigObject {
        obj_code: "TMPL".into(),
        id: format!("{:032x}", 1),
        name: template_name.into(),
        fields: Default::default(),
        parent: None,
        references: vec![],
        revision: 0,
        update_time: None,
    };
    let catalog = state.directory.get("dev").unwrap().catalog.clone();
    let content = Content { objects: vec![tmpl], external_references: vec![] };
    Extracted { built: definitions::build(&catalog, &["TMPL".into()], content, 1024).unwrap(), warnings: vec![] }
}

async fn actions(state: &State) -> Vec<String> {
    let filter = promotion_core::audit::AuditFilter { organization: "acme".into(), ..Default::default() };
    let page = promotion_core::cursor::PageRequest::first(1000);
    state.store.list_audit(&filter, &page).await.unwrap().items.into_iter().map(|e| e.action).collect()
}

/// Every stored chunk of one version, in stream order.
async fn chunks(state: &State, id: &str, version: i64) -> Vec<DefinitionChunk> {
    let mut out = Vec::new();
    while let Some(c) = state.store.definition_chunk(id, version, out.len()).await.unwrap() {
        out.push(c);
    }
    out
}

#[tokio::test]
async fn start_up_recovery_fails_interrupted_extractions_and_late_results_are_dropped() {
    for state in states() {
        let state = &state.state;
        let created = create(state, &alice(), new_package()).await.unwrap();
        assert_eq!(created.package.status, Status::Extracting);
        let job = created.extraction.expect("an extraction to start");
        assert_eq!(recover(state).await.unwrap(), 1);
        let package = get(state, &alice(), &job.package_id).await.unwrap();
        assert_eq!(package.status, Status::ExtractionFailed);
        assert_eq!(package.failure_reason, INTERRUPTED);
        assert_eq!(recover(state).await.unwrap(), 0, "the in-progress index was cleared");
        finish_extraction(state, &job, Ok(extracted(state, "Onboarding"))).await.unwrap();
        let after = get(state, &alice(), &job.package_id).await.unwrap();
        assert_eq!(after, package, "a result for an abandoned attempt changes nothing");
        assert_eq!(actions(state).await, vec!["PACKAGE_CREATED", "PACKAGE_EXTRACTION_FAILED"]);
    }
}

#[tokio::test]
async fn each_extraction_stores_a_new_version_and_keeps_the_old_one() {
    for state in states() {
        let state = &state.state;
        let job = create(state, &alice(), new_package()).await.unwrap().extraction.unwrap();
        finish_extraction(state, &job, Ok(extracted(state, "Onboarding"))).await.unwrap();
        let v1 = get(state, &alice(), &job.package_id).await.unwrap();
        assert_eq!((v1.status, v1.version, v1.has_definition), (Status::Building, 1, true));
        let header = definition(state, &alice(), &v1.id, 1).await.unwrap();
        let v1_chunks = chunks(state, &v1.id, 1).await;
        assert_eq!(v1_chunks.len(), 1, "one chunk after the header");

        let changes = Changes { object_collections: Some(template_roots()), ..Default::default() };
        let outcome = update(state, &alice(), &v1.id, &v1.etag(), changes, "").await.unwrap();
        assert_eq!((outcome.package.status, outcome.package.version), (Status::Extracting, 1));
        let stale = update(state, &alice(), &v1.id, &v1.etag(), Changes::default(), "").await.unwrap_err();
        assert!(matches!(stale, PackageError::EtagMismatch { .. }));
        finish_extraction(state, &outcome.extraction.unwrap(), Ok(extracted(state, "Onboarding v2"))).await.unwrap();
        let v2 = get(state, &alice(), &v1.id).await.unwrap();
        assert_eq!((v2.status, v2.version), (Status::Building, 2));
        assert_ne!(v2.digest, v1.digest);
        assert_eq!(definition(state, &alice(), &v1.id, 1).await.unwrap(), header);
        assert_eq!(chunks(state, &v1.id, 1).await, v1_chunks);
        assert!(matches!(
            definition(state, &alice(), &v1.id, 3).await.err(),
            Some(PackageError::VersionNotFound { version: 3, .. })
        ));
    }
}

#[tokio::test]
async fn a_failed_re_extraction_keeps_the_current_version() {
    for state in states() {
        let state = &state.state;
        let job = create(state, &alice(), new_package()).await.unwrap().extraction.unwrap();
        finish_extraction(state, &job, Ok(extracted(state, "Onboarding"))).await.unwrap();
        let v1 = get(state, &alice(), &job.package_id).await.unwrap();
        let changes = Changes { object_collections: Some(template_roots()), ..Default::default() };
        let job = update(state, &alice(), &v1.id, "", changes, "").await.unwrap().extraction.unwrap();
        finish_extraction(state, &job, Err("installation service at x unreachable".into())).await.unwrap();
        let failed = get(state, &alice(), &v1.id).await.unwrap();
        assert_eq!(
            (failed.status, failed.version, failed.digest.as_str()),
            (Status::ExtractionFailed, 1, v1.digest.as_str())
        );
        assert_eq!(failed.failure_reason, "installation service at x unreachable");
        assert_eq!(definition(state, &alice(), &v1.id, 0).await.unwrap().version, 1);
    }
}

fn installer() -> Identity {
    Identity {
        subject: "installation-service".into(),
        organization: "acme".into(),
        bindings: vec![Binding { role: Role::Internal, environment: "dev".into() }],
        expires_at: i64::MAX,
    }
}

fn report(package_id: &str, installation_id: &str, request_id: &str) -> InstallationReport {
    InstallationReport {
        package_id: package_id.into(),
        package_version: 1,
        installation_id: installation_id.into(),
        destination_environment: "dev".into(),
        request_id: request_id.into(),
    }
}

#[tokio::test]
async fn only_installations_the_destination_confirms_are_counted_once_and_replays_answer_alike() {
    let real = "0190b4a2-0000-7000-8000-000000000001";
    let made_up = "0190b4a2-0000-7000-8000-000000000002";
    let rid = "7d1e0000-0000-4000-8000-000000000001";
    for fixture in states() {
        let state = &fixture.state;
        let job = create(state, &alice(), new_package()).await.unwrap().extraction.unwrap();
        finish_extraction(state, &job, Ok(extracted(state, "Onboarding"))).await.unwrap();
        let id = job.package_id.clone();
        let installed = Installed { installation_id: real.into(), package_id: id.clone(), package_version: 1 };
        fixture.installations.hold("dev", installed);
        let creds = Credentials::bearer("t");
        let refused = record_installation(state, &installer(), &creds, report(&id, made_up, "")).await.unwrap_err();
        assert!(matches!(refused, PackageError::InstallationNotFound { .. }), "{refused:?}");
        assert!(get(state, &alice(), &id).await.unwrap().installation_counts.is_empty());
        let first = record_installation(state, &installer(), &creds, report(&id, real, rid)).await.unwrap();
        assert_eq!(first, (true, [("dev".to_string(), 1)].into()));
        let replay = record_installation(state, &installer(), &creds, report(&id, real, rid)).await.unwrap();
        assert_eq!(replay, first, "a replay answers as the first call did");
        let again = record_installation(state, &installer(), &creds, report(&id, real, "")).await.unwrap();
        assert_eq!(again, (false, [("dev".to_string(), 1)].into()), "an installation counts once");
        let late = "7d1e0000-0000-4000-8000-000000000002";
        record_installation(state, &installer(), &creds, report(&id, real, late)).await.unwrap();
        let reused = record_installation(state, &installer(), &creds, report(&id, made_up, late)).await.unwrap_err();
        assert!(matches!(reused, PackageError::Invalid { reason: "REQUEST_ID_REUSED", .. }), "{reused:?}");
        assert_eq!(actions(state).await.iter().filter(|a| *a == "INSTALLATION_RECORDED").count(), 1);
    }
}
