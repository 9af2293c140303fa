//! `promotion.v1.PromotionService`: promotion requests and approval tasks.
use std::sync::Arc;
use tonic::{Code, Request, Response, Status};

use super::installation_service::overrides_from_proto;
use super::{bad_field, check_request_id, forwarded_token, page_error, require_uuid};
use crate::installation::promotions::{self, Decision, PromotionError, PromotionRecord, PromotionStatus};
use crate::installation::state::State;
use crate::proto::v1 as pb;
use crate::shared::convert::timestamp;
use crate::shared::errors::status;
use crate::shared::pagination::{token_after, Page};
use crate::shared::serving::{caller, environment_not_found, permission_denied};

pub struct PromotionApi {
    state: Arc<State>,
}

impl PromotionApi {
    pub fn new(state: Arc<State>) -> Self {
        PromotionApi { state }
    }

    fn page(&self, size: i32, token: &str) -> Result<Page, Status> {
        let l = &self.state.config.limits;
        Page::parse(size, token, l.default_page_size, l.max_page_size).map_err(page_error)
    }
}

impl From<PromotionError> for Status {
    fn from(e: PromotionError) -> Status {
        match e {
            PromotionError::Install(e) => e.into(),
            PromotionError::NotFound(id) => {
                status(Code::NotFound, "PROMOTION_REQUEST_NOT_FOUND", format!("promotion request {id} not found"), [("id", id)])
            }
            PromotionError::VersionNotFound { package_id, version } => status(
                Code::NotFound,
                "VERSION_NOT_FOUND",
                format!("package {package_id} has no version {version}"),
                [("package_id", package_id), ("version", version.to_string())],
            ),
            PromotionError::SameEnvironment(env) => status(
                Code::FailedPrecondition,
                "SAME_ENVIRONMENT",
                format!("the package comes from {env}; promote it into another environment"),
                [("target_environment", env)],
            ),
            PromotionError::AlreadyInProgress { existing } => status(
                Code::AlreadyExists,
                "PROMOTION_ALREADY_IN_PROGRESS",
                format!("promotion request {existing} for this package and target is still pending; wait until it is accepted, rejected or cancelled"),
                [("existing_request", existing)],
            ),
            PromotionError::NotPending { id, status: s } => status(
                Code::FailedPrecondition,
                "PROMOTION_NOT_PENDING",
                format!("promotion request {id} is {} and can no longer change", status_name(s)),
                [("id", id), ("status", status_name(s).into())],
            ),
            PromotionError::NotRequester(requester) => status(
                Code::PermissionDenied,
                "NOT_REQUESTER",
                format!("only the requester ({requester}) can cancel a promotion request"),
                [("requested_by", requester)],
            ),
            PromotionError::PermissionDenied { permission, environment } => permission_denied(permission, &environment),
            PromotionError::Store(e) => {
                tracing::error!(error = %e, "store failure");
                status(Code::Internal, "STORE_FAILURE", "the store failed; nothing was acknowledged", [])
            }
        }
    }
}

fn status_name(s: PromotionStatus) -> &'static str {
    match s {
        PromotionStatus::ToBeValidated => "TO_BE_VALIDATED",
        PromotionStatus::Accepted => "ACCEPTED",
        PromotionStatus::Rejected => "REJECTED",
        PromotionStatus::Cancelled => "CANCELLED",
    }
}

fn status_to_proto(s: PromotionStatus) -> pb::PromotionStatus {
    match s {
        PromotionStatus::ToBeValidated => pb::PromotionStatus::ToBeValidated,
        PromotionStatus::Accepted => pb::PromotionStatus::Accepted,
        PromotionStatus::Rejected => pb::PromotionStatus::Rejected,
        PromotionStatus::Cancelled => pb::PromotionStatus::Cancelled,
    }
}

fn to_proto(r: &PromotionRecord) -> pb::PromotionRequest {
    pb::PromotionRequest {
        id: r.id.clone(),
        package_id: r.package_id.clone(),
        package_version: r.package_version,
        package_name: r.package_name.clone(),
        source_environment: r.source_environment.clone(),
        target_environment: r.target_environment.clone(),
        organization: r.organization.clone(),
        status: status_to_proto(r.status) as i32,
        comment: r.comment.clone(),
        requested_by: r.requested_by.clone(),
        create_time: Some(timestamp(r.create_time)),
        update_time: Some(timestamp(r.update_time)),
        is_update: r.is_update,
        decided_by: r.decided_by.clone(),
        decision_comment: r.decision_comment.clone(),
        installation_id: r.installation_id.clone(),
        last_error: r.last_error.clone(),
    }
}

const MAX_COMMENT_CHARS: usize = 4000;

fn check_comment(comment: &str) -> Result<(), Status> {
    if comment.chars().count() > MAX_COMMENT_CHARS {
        return Err(bad_field(
            "COMMENT_TOO_LONG",
            "comment",
            format!("comments are at most {MAX_COMMENT_CHARS} characters"),
        ));
    }
    Ok(())
}

#[tonic::async_trait]
impl pb::promotion_service_server::PromotionService for PromotionApi {
    async fn request_promotion(
        &self,
        req: Request<pb::RequestPromotionRequest>,
    ) -> Result<Response<pb::PromotionRequest>, Status> {
        let caller = caller(&req)?;
        let token = forwarded_token(&req)?;
        let req = req.into_inner();
        require_uuid("package_id", &req.package_id)?;
        check_request_id(&req.request_id)?;
        check_comment(&req.comment)?;
        if req.package_version < 0 {
            return Err(bad_field(
                "INVALID_VERSION",
                "package_version",
                "package_version must be 0 (current) or a version number",
            ));
        }
        if req.target_environment.is_empty() {
            return Err(bad_field("MISSING_FIELD", "target_environment", "target_environment is required"));
        }
        // The requester needs no role on the target: visibility and hosting are enough.
        let target = self
            .state
            .directory
            .visible(&caller, &req.target_environment)
            .ok_or_else(|| environment_not_found(&req.target_environment))?;
        if !self.state.is_hosted(&target.id) {
            return Err(status(
                Code::FailedPrecondition,
                "ENVIRONMENT_NOT_HOSTED",
                format!(
                    "request promotions into {} from the installation service at {}",
                    target.id, target.installation_service
                ),
                [("installation_service", target.installation_service.clone())],
            ));
        }
        let request = promotions::Request {
            package_id: req.package_id,
            package_version: req.package_version,
            comment: req.comment,
            request_id: req.request_id,
        };
        let record = promotions::request(&self.state, &caller, &token, &target, request).await?;
        Ok(Response::new(to_proto(&record)))
    }

    async fn list_promotion_tasks(
        &self,
        req: Request<pb::ListPromotionTasksRequest>,
    ) -> Result<Response<pb::ListPromotionTasksResponse>, Status> {
        let caller = caller(&req)?;
        let page = self.page(req.get_ref().page_size, &req.get_ref().page_token)?;
        let (records, last) = promotions::list(&self.state, &caller, |_| true, true, page.after.as_deref(), page.size)?;
        Ok(Response::new(pb::ListPromotionTasksResponse {
            promotion_requests: records.iter().map(to_proto).collect(),
            next_page_token: last.map(|k| token_after(&k)).unwrap_or_default(),
        }))
    }

    async fn list_promotion_requests(
        &self,
        req: Request<pb::ListPromotionRequestsRequest>,
    ) -> Result<Response<pb::ListPromotionRequestsResponse>, Status> {
        let caller = caller(&req)?;
        let req = req.into_inner();
        let page = self.page(req.page_size, &req.page_token)?;
        if !req.environment.is_empty() && self.state.directory.visible(&caller, &req.environment).is_none() {
            return Err(environment_not_found(&req.environment));
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
                && wanted.is_none_or(|s| status_to_proto(r.status) == s)
        };
        let (records, last) = promotions::list(&self.state, &caller, filter, false, page.after.as_deref(), page.size)?;
        Ok(Response::new(pb::ListPromotionRequestsResponse {
            promotion_requests: records.iter().map(to_proto).collect(),
            next_page_token: last.map(|k| token_after(&k)).unwrap_or_default(),
        }))
    }

    async fn get_promotion_request(
        &self,
        req: Request<pb::GetPromotionRequestRequest>,
    ) -> Result<Response<pb::PromotionRequest>, Status> {
        let caller = caller(&req)?;
        require_uuid("id", &req.get_ref().id)?;
        Ok(Response::new(to_proto(&promotions::get(&self.state, &caller, &req.get_ref().id).await?)))
    }

    async fn accept_promotion_request(
        &self,
        req: Request<pb::AcceptPromotionRequestRequest>,
    ) -> Result<Response<pb::PromotionRequest>, Status> {
        let caller = caller(&req)?;
        let token = forwarded_token(&req)?;
        let req = req.into_inner();
        require_uuid("id", &req.id)?;
        check_request_id(&req.request_id)?;
        check_comment(&req.comment)?;
        let decision = Decision {
            comment: req.comment,
            request_id: req.request_id,
            overrides: overrides_from_proto(req.translation_map)?,
            prune_children: req.prune_children,
        };
        let record = promotions::accept(&self.state, &caller, &token, &req.id, decision).await?;
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
