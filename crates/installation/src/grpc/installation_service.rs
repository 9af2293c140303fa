//! `promotion.v1.InstallationService`: pre-runs, installations, rollbacks and drift reports.
use std::sync::Arc;
use tonic::{Request, Response, Status};

use super::commands::ForEnvironment;
use super::convert::{drift_entry_to_proto, installation_to_proto, pre_run_to_proto, EntryPage};
use super::{check_request_id, list_failure, next_page_token, page_request, require_uuid};
use crate::drift::drift;
use crate::install::{create_installation, InstallRequest};
use crate::installations::{check_installation, get_installation, list_installations, ReportedInstallation};
use crate::pre_run::{create_pre_run, get_pre_run, PreRunRequest};
use crate::rollback::rollback;
use crate::state::State;
use promotion_api::convert::item_len;
use promotion_api::v1 as pb;
use promotion_core::cursor::{bounded, Scope, PAGE_BYTES};
use promotion_core::identity::Permission;
use promotion_serving::{caller, credentials};

pub struct InstallationApi {
    state: Arc<State>,
}

impl InstallationApi {
    pub fn new(state: Arc<State>) -> Self {
        InstallationApi { state }
    }
}

#[tonic::async_trait]
impl pb::installation_service_server::InstallationService for InstallationApi {
    async fn create_pre_run(&self, req: Request<pb::CreatePreRunRequest>) -> Result<Response<pb::PreRun>, Status> {
        let caller = caller(&req)?;
        let token = credentials(&req)?;
        let ForEnvironment { environment, command } = ForEnvironment::<PreRunRequest>::try_from(req.into_inner())?;
        let dest = self.state.authorize(&caller, &environment, Permission::InstallationWrite).await?;
        let record = create_pre_run(&self.state, &caller, &token, &dest, command).await?;
        Ok(Response::new(pre_run_to_proto(&record, EntryPage::default())))
    }

    async fn get_pre_run(&self, req: Request<pb::GetPreRunRequest>) -> Result<Response<pb::PreRun>, Status> {
        let caller = caller(&req)?;
        let req = req.into_inner();
        require_uuid("id", &req.id)?;
        let page = EntryPage::parse(req.entries_page_size, &req.entries_page_token)?;
        let record = get_pre_run(&self.state, &caller, &req.id).await?;
        self.state.authorize(&caller, &record.destination, Permission::InstallationRead).await?;
        Ok(Response::new(pre_run_to_proto(&record, page)))
    }

    async fn create_installation(
        &self,
        req: Request<pb::CreateInstallationRequest>,
    ) -> Result<Response<pb::Installation>, Status> {
        let caller = caller(&req)?;
        let token = credentials(&req)?;
        let ForEnvironment { environment, command: request } =
            ForEnvironment::<InstallRequest>::try_from(req.into_inner())?;
        let dest = self.state.authorize(&caller, &environment, Permission::InstallationWrite).await?;
        let package_id = request.package_id.clone();
        match create_installation(&self.state, &caller, &token, &dest, request).await {
            Ok(record) => Ok(Response::new(installation_to_proto(&record, EntryPage::default()))),
            Err(e) => {
                let failure = Status::from(e);
                let code = promotion_api::status::domain_code(failure.code());
                let reason = promotion_api::status::reason_of(&failure);
                let event =
                    crate::install::failure_event(&caller, &dest.id, &package_id, code, reason, failure.message());
                self.state.audit_failure(event).await;
                Err(failure)
            }
        }
    }

    async fn list_installations(
        &self,
        req: Request<pb::ListInstallationsRequest>,
    ) -> Result<Response<pb::ListInstallationsResponse>, Status> {
        let caller = caller(&req)?;
        let req = req.into_inner();
        let scope = Scope::new("ListInstallations", &caller.organization)
            .filter(&req.package_id)
            .filter(&req.destination_environment);
        let page_request = page_request(&self.state, &scope, req.page_size, &req.page_token).await?;
        if !req.destination_environment.is_empty() {
            self.state.authorize(&caller, &req.destination_environment, Permission::InstallationRead).await?;
        }
        let (state, caller, req) = (self.state.as_ref(), &caller, &req);
        let found = bounded(page_request.clone(), PAGE_BYTES, item_len, |p| async move {
            let found = list_installations(state, caller, &req.package_id, &req.destination_environment, &p).await;
            found.map(|page| page.map(|r| installation_to_proto(&r, EntryPage::NONE)))
        })
        .await
        .map_err(|e| match e {
            crate::error::InstallError::Store(s) => list_failure(s, &page_request),
            e => e.into(),
        })?;
        Ok(Response::new(pb::ListInstallationsResponse {
            next_page_token: next_page_token(state, &scope, found.next.as_ref()).await?,
            installations: found.items,
        }))
    }

    async fn get_installation(
        &self,
        req: Request<pb::GetInstallationRequest>,
    ) -> Result<Response<pb::Installation>, Status> {
        let caller = caller(&req)?;
        let req = req.into_inner();
        require_uuid("id", &req.id)?;
        let page = EntryPage::parse(req.entries_page_size, &req.entries_page_token)?;
        let record = get_installation(&self.state, &caller, &req.id, true).await?;
        self.state.authorize(&caller, &record.destination, Permission::InstallationRead).await?;
        Ok(Response::new(installation_to_proto(&record, page)))
    }

    async fn check_installation(
        &self,
        req: Request<pb::CheckInstallationRequest>,
    ) -> Result<Response<pb::CheckInstallationResponse>, Status> {
        let caller = caller(&req)?;
        let reported = ReportedInstallation::try_from(req.into_inner())?;
        check_installation(&self.state, &caller, &reported).await?;
        Ok(Response::new(pb::CheckInstallationResponse {}))
    }

    async fn rollback_installation(
        &self,
        req: Request<pb::RollbackInstallationRequest>,
    ) -> Result<Response<pb::Installation>, Status> {
        let caller = caller(&req)?;
        let req = req.into_inner();
        require_uuid("id", &req.id)?;
        check_request_id(&req.request_id)?;
        let record = get_installation(&self.state, &caller, &req.id, false).await?;
        self.state.authorize(&caller, &record.destination, Permission::InstallationWrite).await?;
        let record =
            rollback(&self.state, &caller, &req.id, req.force, &req.request_id, &req.window_override_reason).await?;
        Ok(Response::new(installation_to_proto(&record, EntryPage::default())))
    }

    async fn get_drift(&self, req: Request<pb::GetDriftRequest>) -> Result<Response<pb::GetDriftResponse>, Status> {
        let caller = caller(&req)?;
        let req = req.into_inner();
        let info = self.state.authorize(&caller, &req.environment, Permission::InstallationRead).await?;
        let scope = Scope::new("GetDrift", &caller.organization).filter(&info.id);
        let page_request = page_request(&self.state, &scope, req.page_size, &req.page_token).await?;
        let (store, env) = (self.state.store.as_ref(), info.id.as_str());
        let found = bounded(page_request.clone(), PAGE_BYTES, item_len, |p| async move {
            drift(store, env, &p).await.map(|page| page.map(|e| drift_entry_to_proto(&e)))
        })
        .await
        .map_err(|e| list_failure(e, &page_request))?;
        Ok(Response::new(pb::GetDriftResponse {
            environment: info.id.clone(),
            next_page_token: next_page_token(&self.state, &scope, found.next.as_ref()).await?,
            entries: found.items,
        }))
    }
}
