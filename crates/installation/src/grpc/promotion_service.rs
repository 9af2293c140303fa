//! `promotion.v1.PromotionService`: promotion requests and approval tasks.
use std::sync::Arc;
use tonic::{Request, Response, Status};

use super::commands::{check_comment, ForEnvironment, OnRequest};
use super::convert::{promotion_status_to_proto, promotion_to_proto as to_proto};
use super::{check_request_id, next_page_token, page_request, require_uuid};
use crate::promotions::{self, Attach, Decision};
use crate::refusal::Refusal;
use crate::stale_promotions::end_stale;
use crate::state::State;
use promotion_api::convert::item_len;
use promotion_api::status::{access, bad_field, page};
use promotion_api::v1 as pb;
use promotion_core::cursor::{bounded, Page, PageRequest, Scope, PAGE_BYTES};
use promotion_core::identity::{Credentials, Identity};
use promotion_core::promotion::PromotionRecord;
use promotion_core::promotion::PromotionStatus;
use promotion_core::AccessError;
use promotion_serving::{caller, credentials};

pub struct PromotionApi {
    state: Arc<State>,
}

impl PromotionApi {
    pub fn new(state: Arc<State>) -> Self {
        PromotionApi { state }
    }

    /// One byte-bounded page of the requests `filter` keeps, as messages.
    /// Pending requests whose package is gone end on the way (see `stale_promotions`).
    async fn listed(
        &self,
        caller: &Identity,
        credentials: &Credentials,
        filter: impl Fn(&PromotionRecord) -> bool + Send + Sync,
        tasks_only: bool,
        page: PageRequest,
    ) -> Result<Page<pb::PromotionRequest>, Status> {
        let (state, filter) = (self.state.as_ref(), &filter);
        bounded(page.clone(), PAGE_BYTES, item_len, |p| async move {
            let found = promotions::list(state, caller, filter, tasks_only, &p).await?;
            let items = end_stale(state, credentials, found.items).await;
            let items = items.into_iter().filter(|r| !tasks_only || r.status == PromotionStatus::ToBeValidated);
            Ok::<_, promotions::PromotionError>(Page { items: items.map(|r| to_proto(&r)).collect(), next: found.next })
        })
        .await
        .map_err(|e| bad_token(e, &page))
    }
}

#[tonic::async_trait]
impl pb::promotion_service_server::PromotionService for PromotionApi {
    async fn request_promotion(
        &self,
        req: Request<pb::RequestPromotionRequest>,
    ) -> Result<Response<pb::PromotionRequest>, Status> {
        let caller = caller(&req)?;
        let token = credentials(&req)?;
        let ForEnvironment { environment, command } =
            ForEnvironment::<promotions::Request>::try_from(req.into_inner())?;
        // The requester needs no role on the target: visibility and hosting are enough.
        let target = self
            .state
            .directory
            .visible(&caller, &environment)
            .ok_or_else(|| access(AccessError::EnvironmentNotFound(environment.clone())))?;
        if !self.state.is_hosted(&target.id) {
            return Err(Refusal::NotHosted {
                environment: target.id.clone(),
                installation_service: target.installation_service.clone(),
            }
            .into());
        }
        let record = promotions::request(&self.state, &caller, &token, &target, command).await?;
        Ok(Response::new(to_proto(&record)))
    }

    async fn list_promotion_tasks(
        &self,
        req: Request<pb::ListPromotionTasksRequest>,
    ) -> Result<Response<pb::ListPromotionTasksResponse>, Status> {
        let caller = caller(&req)?;
        let token = credentials(&req)?;
        let scope = Scope::new("ListPromotionTasks", &caller.organization);
        let page = page_request(&self.state, &scope, req.get_ref().page_size, &req.get_ref().page_token).await?;
        let found = self.listed(&caller, &token, |_| true, true, page).await?;
        Ok(Response::new(pb::ListPromotionTasksResponse {
            next_page_token: next_page_token(&self.state, &scope, found.next.as_ref()).await?,
            promotion_requests: found.items,
        }))
    }

    async fn list_promotion_requests(
        &self,
        req: Request<pb::ListPromotionRequestsRequest>,
    ) -> Result<Response<pb::ListPromotionRequestsResponse>, Status> {
        let caller = caller(&req)?;
        let token = credentials(&req)?;
        let req = req.into_inner();
        let scope = Scope::new("ListPromotionRequests", &caller.organization)
            .filter(&req.environment)
            .filter(req.status)
            .filter(&req.package_id);
        let page = page_request(&self.state, &scope, req.page_size, &req.page_token).await?;
        if !req.environment.is_empty() && self.state.directory.visible(&caller, &req.environment).is_none() {
            return Err(access(AccessError::EnvironmentNotFound(req.environment.clone())));
        }
        let wanted = match pb::PromotionStatus::try_from(req.status) {
            Ok(pb::PromotionStatus::Unspecified) => None,
            Ok(s) => Some(s),
            Err(_) => return Err(bad_field("INVALID_STATUS", "status", format!("unknown status {}", req.status))),
        };
        let filter = |r: &PromotionRecord| {
            (req.environment.is_empty()
                || r.target_environment == req.environment
                || r.source_environment == req.environment)
                && (req.package_id.is_empty() || r.package_id == req.package_id)
                && wanted.is_none_or(|s| promotion_status_to_proto(r.status) == s)
        };
        let found = self.listed(&caller, &token, filter, false, page).await?;
        Ok(Response::new(pb::ListPromotionRequestsResponse {
            next_page_token: next_page_token(&self.state, &scope, found.next.as_ref()).await?,
            promotion_requests: found.items,
        }))
    }

    async fn get_promotion_request(
        &self,
        req: Request<pb::GetPromotionRequestRequest>,
    ) -> Result<Response<pb::PromotionRequest>, Status> {
        let caller = caller(&req)?;
        let token = credentials(&req)?;
        require_uuid("id", &req.get_ref().id)?;
        let record = promotions::get(&self.state, &caller, &req.get_ref().id).await?;
        let record = end_stale(&self.state, &token, vec![record]).await.remove(0);
        Ok(Response::new(to_proto(&record)))
    }

    async fn accept_promotion_request(
        &self,
        req: Request<pb::AcceptPromotionRequestRequest>,
    ) -> Result<Response<pb::PromotionRequest>, Status> {
        let caller = caller(&req)?;
        let token = credentials(&req)?;
        let OnRequest { id, command } = OnRequest::<Decision>::try_from(req.into_inner())?;
        // A request whose package is gone ends here (CANCELLED), and the accept is refused.
        if let Some(r) = self.state.store.promotion(&id).await.ok().flatten() {
            if r.organization == caller.organization {
                end_stale(&self.state, &token, vec![r]).await;
            }
        }
        let record = promotions::accept(&self.state, &caller, &token, &id, command).await?;
        Ok(Response::new(to_proto(&record)))
    }

    async fn attach_pre_run(
        &self,
        req: Request<pb::AttachPreRunRequest>,
    ) -> Result<Response<pb::PromotionRequest>, Status> {
        let caller = caller(&req)?;
        let OnRequest { id, command } = OnRequest::<Attach>::try_from(req.into_inner())?;
        let record = promotions::attach(&self.state, &caller, &id, command).await?;
        Ok(Response::new(to_proto(&record)))
    }

    async fn reject_promotion_request(
        &self,
        req: Request<pb::RejectPromotionRequestRequest>,
    ) -> Result<Response<pb::PromotionRequest>, Status> {
        let caller = caller(&req)?;
        let req = req.into_inner();
        require_uuid("id", &req.id)?;
        check_request_id(&req.request_id)?;
        check_comment(&req.comment)?;
        let record = promotions::close(&self.state, &caller, &req.id, false, req.comment, &req.request_id).await?;
        Ok(Response::new(to_proto(&record)))
    }

    async fn cancel_promotion_request(
        &self,
        req: Request<pb::CancelPromotionRequestRequest>,
    ) -> Result<Response<pb::PromotionRequest>, Status> {
        let caller = caller(&req)?;
        let req = req.into_inner();
        require_uuid("id", &req.id)?;
        check_request_id(&req.request_id)?;
        check_comment(&req.comment)?;
        let record = promotions::close(&self.state, &caller, &req.id, true, req.comment, &req.request_id).await?;
        Ok(Response::new(to_proto(&record)))
    }
}

/// A page position this listing did not produce is a bad token, not a store failure.
fn bad_token(e: promotions::PromotionError, page_request: &PageRequest) -> Status {
    match e {
        promotions::PromotionError::Store(s)
            if s.kind == promotion_store::StoreErrorKind::Corrupt && page_request.after.is_some() =>
        {
            page(promotion_core::cursor::PageError::BadToken)
        }
        e => e.into(),
    }
}
