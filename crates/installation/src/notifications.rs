//! Webhook subscriptions (admins of the organization, optionally for one environment) and
//! the durable outbox of their deliveries: a delivery is stored in the same atomic write as
//! the event it reports, then posted by a background task, retried with backoff across
//! restarts, every attempt recorded. A receiver that is down never slows or fails the call
//! that produced the event.
use std::sync::Arc;

use chrono::Utc;
use serde::Serialize;

use promotion_core::audit::AuditEvent;
use promotion_core::cursor::{Page, PageRequest};
use promotion_core::identity::{Identity, Permission};
use promotion_core::notify::{Delivery, Subscription, EVENTS};
use promotion_core::{AccessError, Invalid};
use promotion_store::installation::Record;
use promotion_store::StoreError;

use crate::error::InstallError;
use crate::idempotency::{first, RequestUse};
use crate::refusal::Refusal;
use crate::state::{State, SERVICE_NAME};

/// A shorter secret would make the signatures guessable.
const MIN_SECRET_CHARS: usize = 16;
/// Deliveries posted per pass of the delivery task.
const BATCH: usize = 32;

#[derive(Debug, Clone, Serialize)]
pub struct NewSubscription {
    pub url: String,
    pub events: Vec<String>,
    #[serde(skip)]
    pub secret: String,
    pub environment: String,
    #[serde(skip)]
    pub request_id: String,
}

/// The caller may manage subscriptions of `environment` (empty: of every environment).
async fn may_manage(state: &State, caller: &Identity, environment: &str) -> Result<(), InstallError> {
    if !environment.is_empty() {
        state.authorize(caller, environment, Permission::NotificationManage).await?;
        return Ok(());
    }
    if caller.allows_everywhere(Permission::NotificationManage) {
        return Ok(());
    }
    let denial = AccessError::PermissionDenied { permission: Permission::NotificationManage, environment: "*".into() };
    state.audit_denied(caller, &denial).await;
    Err(Refusal::Access(denial).into())
}

fn check(s: &NewSubscription) -> Result<(), Invalid> {
    if crate::webhook::split_url(&s.url).is_none() {
        let message = "url must be an http:// URL (this version posts plain HTTP; put a TLS proxy in front)";
        return Err(Invalid::new("INVALID_URL", "url", message));
    }
    if s.events.is_empty() || s.events.iter().any(|e| !EVENTS.contains(&e.as_str())) {
        return Err(Invalid::new("INVALID_EVENT", "events", format!("events must be some of {}", EVENTS.join(", "))));
    }
    if s.secret.chars().count() < MIN_SECRET_CHARS {
        let message = format!("secret must be at least {MIN_SECRET_CHARS} characters");
        return Err(Invalid::new("INVALID_SECRET", "secret", message));
    }
    Ok(())
}

fn invalid(i: Invalid) -> InstallError {
    InstallError::Invalid { reason: i.reason, field: i.field, message: i.message }
}

pub async fn create(state: &State, caller: &Identity, s: NewSubscription) -> Result<Subscription, InstallError> {
    may_manage(state, caller, &s.environment).await?;
    check(&s).map_err(invalid)?;
    let use_ = RequestUse::new(caller, &s.request_id, "CreateSubscription", &s);
    if let Some(id) = first(use_.as_ref(), state.store.as_ref()).await? {
        return get(state, caller, &id).await;
    }
    let subscription = Subscription {
        id: uuid::Uuid::now_v7().to_string(),
        organization: caller.organization.clone(),
        environment: s.environment,
        url: s.url,
        events: s.events,
        secret: s.secret,
        create_time: Utc::now(),
        created_by: caller.subject.clone(),
    };
    let event = event(caller, &subscription, "SUBSCRIPTION_CREATED", &s.request_id)
        .detail("url", subscription.url.clone())
        .detail("events", subscription.events.clone());
    let mut records = vec![Record::audit(event), Record::Subscription(Box::new(subscription.clone()))];
    records.extend(use_.map(|u| u.record(&subscription.id)));
    state.store.append(records).await?;
    Ok(subscription)
}

fn event(caller: &Identity, s: &Subscription, action: &str, request_id: &str) -> AuditEvent {
    AuditEvent::new(SERVICE_NAME, caller, &s.environment, action, ("subscription", &s.id)).request_id(request_id)
}

/// A subscription of the caller's organization it may manage.
pub async fn get(state: &State, caller: &Identity, id: &str) -> Result<Subscription, InstallError> {
    let s = state
        .store
        .subscription(id)
        .await?
        .filter(|s| s.organization == caller.organization)
        .ok_or_else(|| not_found(id))?;
    may_manage(state, caller, &s.environment).await?;
    Ok(s)
}

fn not_found(id: &str) -> InstallError {
    InstallError::SubscriptionNotFound(id.to_string())
}

/// The organization's subscriptions the caller may manage.
pub async fn list(state: &State, caller: &Identity) -> Result<Vec<Subscription>, InstallError> {
    let all = state.store.subscriptions(&caller.organization).await?;
    Ok(all.into_iter().filter(|s| manages(caller, &s.environment)).collect())
}

fn manages(caller: &Identity, environment: &str) -> bool {
    if environment.is_empty() {
        caller.allows_everywhere(Permission::NotificationManage)
    } else {
        caller.allows(Permission::NotificationManage, environment)
    }
}

pub async fn delete(state: &State, caller: &Identity, id: &str, request_id: &str) -> Result<(), InstallError> {
    let use_ = RequestUse::new(caller, request_id, "DeleteSubscription", &id);
    if first(use_.as_ref(), state.store.as_ref()).await?.is_some() {
        return Ok(());
    }
    let s = get(state, caller, id).await?;
    let mut records = vec![
        Record::audit(event(caller, &s, "SUBSCRIPTION_DELETED", request_id)),
        Record::SubscriptionRemoved { id: s.id.clone() },
    ];
    records.extend(use_.map(|u| u.record(&s.id)));
    state.store.append(records).await?;
    Ok(())
}

/// Deliveries the caller may see (those of subscriptions it manages), newest first,
/// optionally of one subscription.
pub async fn deliveries(
    state: &State,
    caller: &Identity,
    subscription_id: &str,
    page: &PageRequest,
) -> Result<Page<Delivery>, InstallError> {
    let keep = |d: &Delivery| {
        (subscription_id.is_empty() || d.subscription_id == subscription_id) && manages(caller, &d.environment)
    };
    if !caller.bindings.iter().any(|b| b.role.grants(Permission::NotificationManage)) {
        let denial =
            AccessError::PermissionDenied { permission: Permission::NotificationManage, environment: "*".into() };
        state.audit_denied(caller, &denial).await;
        return Err(Refusal::Access(denial).into());
    }
    Ok(state.store.list_deliveries(&caller.organization, &keep, page).await?)
}

/// The deliveries of `event` in `environment` of `organization`, to write with the event.
pub async fn deliveries_for(
    state: &State,
    organization: &str,
    environment: &str,
    event: &str,
    data: serde_json::Value,
) -> Result<Vec<Record>, StoreError> {
    let subscriptions = state.store.subscriptions(organization).await?;
    Ok(subscriptions
        .iter()
        .filter(|s| s.wants(event, environment))
        .map(|s| Record::Delivery(Box::new(Delivery::new(s, event, environment, data.clone()))))
        .collect())
}

/// Posts due deliveries until the process stops: woken after an event, and every half
/// second for retries; what is pending at a restart is picked up on the first pass.
pub async fn deliver_forever(state: Arc<State>) {
    loop {
        let posted = match deliver_due(&state).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "could not read or record webhook deliveries");
                0
            }
        };
        if posted < BATCH {
            let _ = tokio::time::timeout(std::time::Duration::from_millis(500), state.deliveries_wake.notified()).await;
        }
    }
}

/// One pass: posts every due delivery (up to a batch) and records each attempt.
async fn deliver_due(state: &State) -> Result<usize, StoreError> {
    let due = state.store.due_deliveries(Utc::now(), BATCH).await?;
    let count = due.len();
    for mut d in due {
        let attempt = crate::webhook::post(&d).await;
        tracing::info!(delivery = %d.id, event = %d.event, status = attempt.status_code, error = %attempt.error, "webhook attempt");
        d.record(attempt, jitter());
        state.store.append(vec![Record::Delivery(Box::new(d))]).await?;
    }
    Ok(count)
}

/// A number in [0, 1) from the operating system's generator (through a v4 UUID).
fn jitter() -> f64 {
    f64::from(uuid::Uuid::new_v4().as_bytes()[0]) / 256.0
}
