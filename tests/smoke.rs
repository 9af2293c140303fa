//! Quick end-to-end check that development mode serves both services.
mod common;
use common::*;
use promotion_api::v1 as pb;

#[tokio::test]
async fn development_mode_serves_both_services_with_demo_data() {
    let dev = DevServices::start().await;
    let mut alice = dev.clients("alice").await;
    let envs = alice.environments.list_environments(pb::ListEnvironmentsRequest::default()).await.unwrap().into_inner();
    let ids: Vec<_> = envs.environments.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, vec!["dev", "prod", "qa"]);
    let tmpl = alice
        .environments
        .get_object(pb::GetObjectRequest {
            environment: "dev".into(),
            obj_code: "TMPL".into(),
            id: ONBOARDING_TMPL.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tmpl.name, "New Agency Onboarding");
}
