//! Audit events: the append-only record of every mutating and every denied call, stored
//! by each service in the same atomic write as the change it records.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::auth::Identity;
use crate::proto::v1 as pb;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: String,
    pub time: DateTime<Utc>,
    pub actor: String,
    pub organization: String,
    pub environment: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub outcome: String,
    pub request_id: String,
    #[serde(default)]
    pub details: Map<String, Value>,
    pub service: String,
}

/// Prefix of audit records inside a service's record space. Ids are UUID v7, so key
/// order is time order.
pub const RECORD_PREFIX: &[u8] = b"audit/";

impl AuditEvent {
    pub fn new(service: &str, caller: &Identity, environment: &str, action: &str, resource: (&str, &str)) -> Self {
        AuditEvent {
            id: uuid::Uuid::now_v7().to_string(),
            time: Utc::now(),
            actor: caller.subject.clone(),
            organization: caller.organization.clone(),
            environment: environment.into(),
            action: action.into(),
            resource_type: resource.0.into(),
            resource_id: resource.1.into(),
            outcome: "OK".into(),
            request_id: String::new(),
            details: Map::new(),
            service: service.into(),
        }
    }

    pub fn outcome(mut self, code: tonic::Code) -> Self {
        self.outcome = code_name(code).into();
        self
    }

    pub fn request_id(mut self, id: &str) -> Self {
        self.request_id = id.into();
        self
    }

    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.into(), value.into());
        self
    }

    pub fn record_key(&self) -> Vec<u8> {
        [RECORD_PREFIX, self.id.as_bytes()].concat()
    }

    pub fn to_proto(&self) -> pb::AuditEvent {
        pb::AuditEvent {
            id: self.id.clone(),
            time: Some(super::convert::timestamp(self.time)),
            actor: self.actor.clone(),
            organization: self.organization.clone(),
            environment: self.environment.clone(),
            action: self.action.clone(),
            resource_type: self.resource_type.clone(),
            resource_id: self.resource_id.clone(),
            outcome: self.outcome.clone(),
            request_id: self.request_id.clone(),
            details: Some(super::convert::map_to_struct(&self.details)),
            service: self.service.clone(),
        }
    }
}

/// Filters of ListAuditEvents.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub organization: String,
    pub environment: String,
    pub action: String,
    pub actor: String,
    pub resource_type: String,
    pub resource_id: String,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

impl AuditFilter {
    pub fn matches(&self, e: &AuditEvent) -> bool {
        let eq = |want: &str, have: &str| want.is_empty() || want == have;
        e.organization == self.organization
            && eq(&self.environment, &e.environment)
            && eq(&self.action, &e.action)
            && eq(&self.actor, &e.actor)
            && eq(&self.resource_type, &e.resource_type)
            && eq(&self.resource_id, &e.resource_id)
            && self.start.is_none_or(|s| e.time >= s)
            && self.end.is_none_or(|end| e.time < end)
    }
}

pub use super::errors::code_name;

/// Checks audit.read for a ListAuditEvents call: on the named environment, or on every
/// environment of the organization when none is named. Returns the environment to audit
/// a denial against.
pub fn authorize_read(
    caller: &Identity,
    environment: &str,
    directory: &super::directory::Directory,
) -> Result<(), Result<tonic::Status, String>> {
    use super::auth::Permission::AuditRead;
    if environment.is_empty() {
        return if caller.allows_everywhere(AuditRead) { Ok(()) } else { Err(Err("*".into())) };
    }
    if directory.visible(caller, environment).is_none() {
        return Err(Ok(super::serving::environment_not_found(environment)));
    }
    if caller.allows(AuditRead, environment) {
        Ok(())
    } else {
        Err(Err(environment.into()))
    }
}

/// One page of events matching the request, oldest first, from a service's audit records
/// (in key order, which is time order).
pub fn list_page(
    caller: &Identity,
    req: pb::ListAuditEventsRequest,
    limits: &super::config::Limits,
    records: impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), String>>,
) -> Result<pb::ListAuditEventsResponse, tonic::Status> {
    use super::pagination::{token_after, Page, PageError};
    let bad = |field: &str, reason: &str, msg: &str| {
        super::errors::status(tonic::Code::InvalidArgument, reason, msg.to_string(), [("field", field.to_string())])
    };
    let page = Page::parse(req.page_size, &req.page_token, limits.default_page_size, limits.max_page_size).map_err(
        |e| match e {
            PageError::NegativeSize => bad("page_size", "INVALID_PAGE_SIZE", "page_size must not be negative"),
            PageError::BadToken => bad("page_token", "INVALID_PAGE_TOKEN", "page_token was not returned by this call"),
        },
    )?;
    let filter = AuditFilter {
        organization: caller.organization.clone(),
        environment: req.environment,
        action: req.action,
        actor: req.actor,
        resource_type: req.resource_type,
        resource_id: req.resource_id,
        start: req.start_time.as_ref().and_then(super::convert::from_timestamp),
        end: req.end_time.as_ref().and_then(super::convert::from_timestamp),
    };
    let mut events = Vec::new();
    let mut next_page_token = String::new();
    for item in records {
        let (key, value) = item.map_err(|e| tonic::Status::internal(format!("audit store: {e}")))?;
        if page.after.as_ref().is_some_and(|a| key.as_slice() <= a.as_slice()) {
            continue;
        }
        let Ok(event) = serde_json::from_slice::<AuditEvent>(&value) else { continue };
        if !filter.matches(&event) {
            continue;
        }
        if events.len() == page.size {
            next_page_token = token_after(&last_key(&events));
            break;
        }
        events.push(event);
    }
    Ok(pb::ListAuditEventsResponse { events: events.iter().map(AuditEvent::to_proto).collect(), next_page_token })
}

fn last_key(events: &[AuditEvent]) -> Vec<u8> {
    events.last().map(AuditEvent::record_key).unwrap_or_default()
}

/// Audit records (key, value) in key (time) order, as a host hands them out.
pub type AuditRecords<'a> = Box<dyn Iterator<Item = Result<(Vec<u8>, Vec<u8>), String>> + 'a>;

/// What a service hosting `AuditService` provides: its directory and limits, its own
/// audit records, and how it records a denied read.
pub trait AuditHost: Send + Sync + 'static {
    fn directory(&self) -> &super::directory::Directory;
    fn limits(&self) -> &super::config::Limits;
    fn audit_records(&self) -> AuditRecords<'_>;
    fn audit_denied<'a>(
        &'a self,
        caller: &'a Identity,
        env: &'a str,
        p: super::auth::Permission,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;
}

/// `promotion.v1.AuditService`, the same on both services.
pub struct AuditApi<H> {
    host: std::sync::Arc<H>,
}

impl<H> AuditApi<H> {
    pub fn new(host: std::sync::Arc<H>) -> Self {
        AuditApi { host }
    }
}

#[tonic::async_trait]
impl<H: AuditHost> pb::audit_service_server::AuditService for AuditApi<H> {
    async fn list_audit_events(
        &self,
        req: tonic::Request<pb::ListAuditEventsRequest>,
    ) -> Result<tonic::Response<pb::ListAuditEventsResponse>, tonic::Status> {
        use super::auth::Permission::AuditRead;
        let caller = super::serving::caller(&req)?;
        let req = req.into_inner();
        match authorize_read(&caller, &req.environment, self.host.directory()) {
            Ok(()) => {}
            Err(Ok(not_found)) => return Err(not_found),
            Err(Err(env)) => {
                self.host.audit_denied(&caller, &env, AuditRead).await;
                return Err(super::serving::permission_denied(AuditRead, &env));
            }
        }
        list_page(&caller, req, self.host.limits(), self.host.audit_records()).map(tonic::Response::new)
    }
}
