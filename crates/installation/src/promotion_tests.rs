//! Approvals on the domain, on both stores: who may approve a request, once each, and
//! that an approval short of the target's count installs nothing.
use chrono::Utc;

use crate::policies::{self, PolicyChange};
use crate::promotions::{accept, Decision, PromotionError};
use crate::testing::{state_on, stores};
use crate::State;
use promotion_core::identity::{Binding, Credentials, Identity, Role};
use promotion_core::promotion::{PromotionRecord, PromotionStatus};
use promotion_store::installation::Record;

fn who(subject: &str, role: Role) -> Identity {
    Identity {
        subject: subject.into(),
        organization: "acme".into(),
        bindings: vec![Binding { role, environment: "*".into() }],
        expires_at: 0,
    }
}

/// A pending request of alice's into prod, stored as RequestPromotion would store it.
async fn pending(state: &State) -> PromotionRecord {
    let now = Utc::now();
    let r = PromotionRecord {
        id: uuid::Uuid::now_v7().to_string(),
        organization: "acme".into(),
        package_id: uuid::Uuid::now_v7().to_string(),
        package_version: 1,
        package_name: "Onboarding".into(),
        source_environment: "dev".into(),
        target_environment: "prod".into(),
        status: PromotionStatus::ToBeValidated,
        comment: String::new(),
        requested_by: "alice".into(),
        create_time: now,
        update_time: now,
        is_update: false,
        decided_by: String::new(),
        decision_comment: String::new(),
        installation_id: String::new(),
        last_error: String::new(),
        pre_run_id: uuid::Uuid::now_v7().to_string(),
        installation_status: None,
        approvals: vec![],
        required_approvals: 2,
    };
    state.store.append(vec![Record::Promotion(Box::new(r.clone()))]).await.unwrap();
    r
}

fn decision(comment: &str) -> Decision {
    Decision {
        comment: comment.into(),
        request_id: String::new(),
        overrides: vec![],
        prune_children: false,
        replan: false,
        window_override: String::new(),
    }
}

async fn two_approvals_in_prod(state: &State) {
    let change = PolicyChange { required_approvals: Some(2), ..Default::default() };
    policies::update(state, &who("admin", Role::Admin), "prod", change).await.unwrap();
}

#[tokio::test]
async fn a_first_approval_is_recorded_and_the_same_approver_again_is_refused() {
    for fixture in stores() {
        let state = state_on(&fixture);
        two_approvals_in_prod(&state).await;
        let r = pending(&state).await;
        let bob = who("bob", Role::Deployer);
        let credentials = Credentials::bearer("unused");
        let approved = accept(&state, &bob, &credentials, &r.id, decision("fine by me")).await.unwrap();
        assert_eq!(approved.status, PromotionStatus::ToBeValidated, "one of two approvals installs nothing");
        assert_eq!((approved.approvals.len(), approved.required_approvals), (1, 2));
        assert_eq!(
            (approved.approvals[0].approver.as_str(), approved.approvals[0].comment.as_str()),
            ("bob", "fine by me")
        );
        assert!(approved.installation_id.is_empty());
        let again = accept(&state, &bob, &credentials, &r.id, decision("again")).await;
        assert!(matches!(again, Err(PromotionError::AlreadyApproved { .. })), "{again:?}");
        let stored = state.store.promotion(&r.id).await.unwrap().unwrap();
        assert_eq!(stored.approvals.len(), 1, "the refused repeat added nothing");
    }
}

#[tokio::test]
async fn the_requester_may_approve_only_where_the_policy_allows_it() {
    for fixture in stores() {
        let state = state_on(&fixture);
        two_approvals_in_prod(&state).await;
        let r = pending(&state).await;
        let alice_as_admin = who("alice", Role::Admin);
        let credentials = Credentials::bearer("unused");
        let refused = accept(&state, &alice_as_admin, &credentials, &r.id, decision("mine")).await;
        assert!(matches!(refused, Err(PromotionError::SelfApproval { .. })), "{refused:?}");
        let allow = PolicyChange { allow_self_approval: Some(true), ..Default::default() };
        policies::update(&state, &who("admin", Role::Admin), "prod", allow).await.unwrap();
        let approved = accept(&state, &alice_as_admin, &credentials, &r.id, decision("mine")).await.unwrap();
        assert_eq!(approved.approvals.len(), 1);
    }
}

#[tokio::test]
async fn install_options_belong_to_the_approval_that_reaches_the_count() {
    for fixture in stores() {
        let state = state_on(&fixture);
        two_approvals_in_prod(&state).await;
        let r = pending(&state).await;
        let d = Decision { replan: true, ..decision("") };
        let refused = accept(&state, &who("bob", Role::Deployer), &Credentials::bearer("unused"), &r.id, d).await;
        assert!(
            matches!(refused, Err(PromotionError::MoreApprovalsNeeded { approvals: 0, required: 2, .. })),
            "{refused:?}"
        );
        assert!(state.store.promotion(&r.id).await.unwrap().unwrap().approvals.is_empty());
    }
}
