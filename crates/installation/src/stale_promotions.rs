//! Pending promotion requests whose package was deleted or retired end as CANCELLED, with
//! the reason, decided by this service, and audited.
//!
//! They are found where they would be seen: whenever pending requests are read (the task
//! list, the request list, one request, an accept), with the reader's own token. The
//! installation service holds no standing permission to read packages (its own identity
//! may only report installation counts), and the package service does not know which
//! requests exist, so a periodic sweep would need a credential nobody should have; reading
//! at the moment of use also guarantees that no approver is ever shown such a request. When
//! the package service cannot be reached, requests stay as they are.
use chrono::Utc;
use std::collections::HashMap;

use promotion_core::audit::AuditEvent;
use promotion_core::identity::Credentials;
use promotion_core::package::Status;
use promotion_core::promotion::{PromotionRecord, PromotionStatus};
use promotion_core::Code;
use promotion_store::installation::{EnvWrite, Record};

use crate::error::InstallError;
use crate::fetch::info;
use crate::install::system_identity;
use crate::state::{State, SERVICE_NAME};

/// Why a pending request can no longer be accepted, if it cannot.
async fn stale_reason(state: &State, credentials: &Credentials, package_id: &str) -> Option<&'static str> {
    match info(state, credentials, package_id).await {
        Ok(p) if p.status == Status::Retired => Some("PACKAGE_RETIRED"),
        Ok(_) => None,
        Err(InstallError::Upstream(e)) if e.code == Code::NotFound => Some("PACKAGE_DELETED"),
        Err(_) => None,
    }
}

/// Ends every pending request of `records` whose package is gone or retired, and returns
/// the records as they now are.
pub async fn end_stale(
    state: &State,
    credentials: &Credentials,
    records: Vec<PromotionRecord>,
) -> Vec<PromotionRecord> {
    let mut reasons: HashMap<String, Option<&'static str>> = HashMap::new();
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        if r.status != PromotionStatus::ToBeValidated {
            out.push(r);
            continue;
        }
        let reason = match reasons.get(&r.package_id) {
            Some(known) => *known,
            None => {
                let found = stale_reason(state, credentials, &r.package_id).await;
                reasons.insert(r.package_id.clone(), found);
                found
            }
        };
        match reason {
            Some(reason) => out.push(cancel(state, r, reason).await),
            None => out.push(r),
        }
    }
    out
}

/// Cancels `r` for `reason` under its target's lock, unless someone decided on it first.
async fn cancel(state: &State, r: PromotionRecord, reason: &'static str) -> PromotionRecord {
    let attempt = async {
        let tx = state.store.lock(&r.target_environment).await?;
        let Some(mut current) = state.store.promotion(&r.id).await? else { return Ok(r.clone()) };
        if current.status != PromotionStatus::ToBeValidated {
            return Ok(current);
        }
        let what = if reason == "PACKAGE_RETIRED" { "retired" } else { "deleted" };
        current.status = PromotionStatus::Cancelled;
        current.decided_by = SERVICE_NAME.to_string();
        current.decision_comment = format!("{reason}: the package was {what}");
        current.update_time = Utc::now();
        let event = AuditEvent {
            organization: current.organization.clone(),
            ..AuditEvent::new(
                SERVICE_NAME,
                &system_identity(),
                &current.target_environment,
                "PROMOTION_CANCELLED",
                ("promotion_request", &current.id),
            )
        }
        .detail("reason", reason)
        .detail("package_id", current.package_id.clone());
        let mut write = EnvWrite::default();
        write.record(Record::audit(event));
        write.record(Record::Promotion(Box::new(current.clone())));
        tx.commit(write).await?;
        Ok::<_, promotion_store::StoreError>(current)
    };
    match attempt.await {
        Ok(done) => done,
        Err(e) => {
            tracing::warn!(error = %e, request = %r.id, "could not cancel a stale promotion request");
            r
        }
    }
}
