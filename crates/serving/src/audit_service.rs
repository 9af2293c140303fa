//! `promotion.v1.AuditService`, the same on both services: each lists its own trail.
use std::sync::Arc;
use tonic::{Request, Response, Status};

use promotion_api::convert::{from_timestamp, map_to_struct, timestamp};
use promotion_api::status::{access, page, store_failure};
use promotion_api::v1 as pb;
use promotion_core::audit::{authorize_read, AuditEvent, AuditFilter};
use promotion_core::config::Limits;
use promotion_core::cursor::{token, PageRequest};
use promotion_core::directory::Directory;
use promotion_core::identity::Identity;
use promotion_core::AccessError;
use promotion_store::shared::AuditTable;

/// What a service hosting AuditService provides: its directory and limits, its own audit
/// table, and how it records a denied read.
#[tonic::async_trait]
pub trait AuditHost: Send + Sync + 'static {
    fn directory(&self) -> &Directory;
    fn limits(&self) -> &Limits;
    fn audit_table(&self) -> &dyn AuditTable;
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
        let page_request =
            PageRequest::parse(req.page_size, &req.page_token, limits.default_page_size, limits.max_page_size)
                .map_err(page)?;
        let filter = AuditFilter {
            organization: caller.organization.clone(),
            environment: req.environment,
            action: req.action,
            actor: req.actor,
            resource_type: req.resource_type,
            resource_id: req.resource_id,
            start: req.start_time.as_ref().and_then(from_timestamp),
            end: req.end_time.as_ref().and_then(from_timestamp),
        };
        let found = self.host.audit_table().list_audit(&filter, &page_request).await.map_err(|e| {
            if e.kind == promotion_store::StoreErrorKind::Corrupt && page_request.after.is_some() {
                page(promotion_core::cursor::PageError::BadToken)
            } else {
                store_failure(e.is_unavailable(), &e.message)
            }
        })?;
        Ok(Response::new(pb::ListAuditEventsResponse {
            events: found.items.iter().map(event_to_proto).collect(),
            next_page_token: token(found.next.as_ref()),
        }))
    }
}
