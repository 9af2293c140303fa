//! `promotion.v1.AuditService`, the same on both services: each lists its own trail.
use std::sync::Arc;
use tonic::{Request, Response, Status};

use promotion_api::convert::{from_timestamp, item_len, map_to_struct, timestamp};
use promotion_api::status::{access, page, store_failure};
use promotion_api::v1 as pb;
use promotion_core::audit::{authorize_read, AuditEvent, AuditFilter};
use promotion_core::config::Limits;
use promotion_core::cursor::{bounded, PageRequest, PageTokens, Scope, PAGE_BYTES};
use promotion_core::directory::Directory;
use promotion_core::identity::Identity;
use promotion_core::AccessError;
use promotion_store::shared::AuditTable;
use promotion_store::StoreError;

/// What a service hosting AuditService provides: its directory and limits, its own audit
/// table, and how it records a denied read.
#[tonic::async_trait]
pub trait AuditHost: Send + Sync + 'static {
    fn directory(&self) -> &Directory;
    fn limits(&self) -> &Limits;
    fn audit_table(&self) -> &dyn AuditTable;
    /// The service's page tokens.
    async fn page_tokens(&self) -> Result<&PageTokens, StoreError>;
    async fn audit_denied(&self, caller: &Identity, denial: &AccessError);
}

pub struct AuditApi<H> {
    host: Arc<H>,
}

impl<H> AuditApi<H> {
    pub fn new(host: Arc<H>) -> Self {
        AuditApi { host }
    }
}

pub fn event_to_proto(e: &AuditEvent) -> pb::AuditEvent {
    pb::AuditEvent {
        id: e.id.clone(),
        time: Some(timestamp(e.time)),
        actor: e.actor.clone(),
        organization: e.organization.clone(),
        environment: e.environment.clone(),
        action: e.action.clone(),
        resource_type: e.resource_type.clone(),
        resource_id: e.resource_id.clone(),
        outcome: e.outcome.clone(),
        request_id: e.request_id.clone(),
        details: Some(map_to_struct(&e.details)),
        service: e.service.clone(),
    }
}

#[tonic::async_trait]
impl<H: AuditHost> pb::audit_service_server::AuditService for AuditApi<H> {
    async fn list_audit_events(
        &self,
        req: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let caller = super::caller(&req)?;
        let req = req.into_inner();
        if let Err(e) = authorize_read(&caller, &req.environment, self.host.directory()) {
            if matches!(e, AccessError::PermissionDenied { .. }) {
                self.host.audit_denied(&caller, &e).await;
            }
            return Err(access(e));
        }
        let limits = self.host.limits();
        let tokens = self.host.page_tokens().await.map_err(|e| store_failure(e.is_unavailable(), &e.message))?;
        let start = req.start_time.as_ref().and_then(from_timestamp);
        let end = req.end_time.as_ref().and_then(from_timestamp);
        let scope = Scope::new("ListAuditEvents", &caller.organization)
            .filter(&req.environment)
            .filter(&req.action)
            .filter(&req.actor)
            .filter(&req.resource_type)
            .filter(&req.resource_id)
            .filter(start.map(|t| t.timestamp_micros()).unwrap_or_default())
            .filter(end.map(|t| t.timestamp_micros()).unwrap_or_default());
        let page_request = PageRequest::parse(
            tokens,
            &scope,
            req.page_size,
            &req.page_token,
            limits.default_page_size,
            limits.max_page_size,
        )
        .map_err(page)?;
        let filter = AuditFilter {
            organization: caller.organization.clone(),
            environment: req.environment,
            action: req.action,
            actor: req.actor,
            resource_type: req.resource_type,
            resource_id: req.resource_id,
            start,
            end,
        };
        let (table, filter) = (self.host.audit_table(), &filter);
        let found = bounded(page_request, PAGE_BYTES, item_len, |p| async move {
            let events = table.list_audit(filter, &p).await;
            events.map(|found| found.map(|e| event_to_proto(&e)))
        })
        .await
        .map_err(|e| store_failure(e.is_unavailable(), &e.message))?;
        Ok(Response::new(pb::ListAuditEventsResponse {
            next_page_token: tokens.token(&scope, found.next.as_ref()),
            events: found.items,
        }))
    }
}
