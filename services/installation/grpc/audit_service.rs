//! `promotion.v1.AuditService` on the installation service.
use std::sync::Arc;
use tonic::{Request, Response, Status};

use crate::installation::state::State;
use crate::proto::v1 as pb;
use crate::shared::audit;
use crate::shared::auth::Permission;
use crate::shared::serving::{caller, permission_denied};

pub struct AuditApi {
    state: Arc<State>,
}

impl AuditApi {
    pub fn new(state: Arc<State>) -> Self {
        AuditApi { state }
    }
}

#[tonic::async_trait]
impl pb::audit_service_server::AuditService for AuditApi {
    async fn list_audit_events(
        &self,
        req: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let caller = caller(&req)?;
        let req = req.into_inner();
        match audit::authorize_read(&caller, &req.environment, &self.state.directory) {
            Ok(()) => {}
            Err(Ok(not_found)) => return Err(not_found),
            Err(Err(env)) => {
                self.state.audit_denied(&caller, &env, Permission::AuditRead).await;
                return Err(permission_denied(Permission::AuditRead, &env));
            }
        }
        let records = self.state.store.scan_records(audit::RECORD_PREFIX, false).map(|r| r.map_err(|e| e.0));
        audit::list_page(&caller, req, &self.state.config.limits, records).map(Response::new)
    }
}
