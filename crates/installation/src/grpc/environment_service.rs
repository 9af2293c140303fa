//! `promotion.v1.EnvironmentService`: the hosted environments' configuration registry.
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status};

use super::commands::ForEnvironment;
use super::convert::{catalog_to_proto, export_chunks, kind_to_proto, policy_to_proto};
use super::{check_request_id, list_failure, next_page_token, page_request};
use crate::environments::{self, EnvError};
use crate::policies::{self, PolicyChange};
use crate::state::State;
use promotion_api::convert::item_len;
use promotion_api::convert::objects_from_proto;
use promotion_api::status::{access, bad_field, non_finite, status};
use promotion_api::v1 as pb;
use promotion_core::cursor::{bounded, Position, Scope, PAGE_BYTES};
use promotion_core::directory::EnvironmentInfo;
use promotion_core::identity::Permission;
use promotion_core::objects::ObjectKey;
use promotion_core::AccessError;
use promotion_serving::caller;
use promotion_store::installation::ObjectQuery;

pub struct EnvironmentApi {
    state: Arc<State>,
}

impl EnvironmentApi {
    pub fn new(state: Arc<State>) -> Self {
        EnvironmentApi { state }
    }

    async fn describe(&self, info: &EnvironmentInfo) -> Result<pb::Environment, Status> {
        let (revision, object_counts) = if self.state.is_hosted(&info.id) {
            let s = self.state.store.env_state(&info.id).await.map_err(EnvError::from)?;
            (s.revision, s.counts.into_iter().collect())
        } else {
            (0, Default::default())
        };
        Ok(pb::Environment {
            id: info.id.clone(),
            display_name: info.display_name.clone(),
            organization: info.organization.clone(),
            kind: kind_to_proto(info.kind) as i32,
            catalog: info.catalog.name.clone(),
            revision,
            object_counts,
            installation_service: info.installation_service.clone(),
        })
    }
}

fn require_key(obj_code: &str, id: &str) -> Result<ObjectKey, Status> {
    if obj_code.is_empty() {
        return Err(bad_field("MISSING_FIELD", "obj_code", "obj_code is required"));
    }
    if !promotion_core::objects::is_valid_object_id(id) {
        return Err(bad_field("INVALID_ID", "id", format!("id {id:?} is not 32 lowercase hex characters")));
    }
    Ok(ObjectKey::new(obj_code, id))
}

type ExportStream = Pin<Box<dyn Stream<Item = Result<pb::ExportObjectsResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::environment_service_server::EnvironmentService for EnvironmentApi {
    async fn list_environments(
        &self,
        req: Request<pb::ListEnvironmentsRequest>,
    ) -> Result<Response<pb::ListEnvironmentsResponse>, Status> {
        let caller = caller(&req)?;
        let req = req.into_inner();
        let scope = Scope::new("ListEnvironments", &caller.organization);
        let page = page_request(&self.state, &scope, req.page_size, &req.page_token).await?;
        let after = page.after.map(|a| String::from_utf8_lossy(a.as_bytes()).into_owned());
        let mut environments = Vec::new();
        let mut next = None;
        for info in self.state.directory.of_organization(&caller.organization) {
            if after.as_ref().is_some_and(|a| info.id.as_str() <= a.as_str()) {
                continue;
            }
            if environments.len() == page.size {
                let last = environments.last().map_or(String::new(), |e: &pb::Environment| e.id.clone());
                next = Some(Position::from_bytes(last.into_bytes()));
                break;
            }
            environments.push(self.describe(info).await?);
        }
        let next_page_token = next_page_token(&self.state, &scope, next.as_ref()).await?;
        Ok(Response::new(pb::ListEnvironmentsResponse { environments, next_page_token }))
    }

    async fn get_environment(
        &self,
        req: Request<pb::GetEnvironmentRequest>,
    ) -> Result<Response<pb::Environment>, Status> {
        let caller = caller(&req)?;
        let id = &req.get_ref().id;
        let info = self
            .state
            .directory
            .visible(&caller, id)
            .ok_or_else(|| access(AccessError::EnvironmentNotFound(id.clone())))?;
        Ok(Response::new(self.describe(&info).await?))
    }

    async fn get_catalog(&self, req: Request<pb::GetCatalogRequest>) -> Result<Response<pb::Catalog>, Status> {
        let caller = caller(&req)?;
        let req = req.into_inner();
        let catalog = if !req.environment.is_empty() {
            let info = self
                .state
                .directory
                .visible(&caller, &req.environment)
                .ok_or_else(|| access(AccessError::EnvironmentNotFound(req.environment.clone())))?;
            info.catalog.clone()
        } else if !req.name.is_empty() {
            // Only catalogs the caller's organization uses are visible to it.
            self.state
                .directory
                .of_organization(&caller.organization)
                .find(|e| e.catalog.name == req.name)
                .map(|e| e.catalog.clone())
                .ok_or_else(|| {
                    status(
                        Code::NotFound,
                        "CATALOG_NOT_FOUND",
                        format!("catalog {:?} not found", req.name),
                        [("name", req.name.clone())],
                    )
                })?
        } else {
            return Err(bad_field("MISSING_FIELD", "name", "name a catalog or an environment"));
        };
        Ok(Response::new(catalog_to_proto(&catalog)))
    }

    async fn put_objects(
        &self,
        req: Request<pb::PutObjectsRequest>,
    ) -> Result<Response<pb::PutObjectsResponse>, Status> {
        let caller = caller(&req)?;
        let req = req.into_inner();
        let info = self.state.authorize(&caller, &req.environment, Permission::EnvironmentWrite).await?;
        check_request_id(&req.request_id)?;
        if req.objects.is_empty() {
            return Err(bad_field("MISSING_FIELD", "objects", "objects must name at least one object"));
        }
        let objects = objects_from_proto(req.objects, "objects").map_err(non_finite)?;
        let written =
            environments::put_objects(&self.state, &caller, &info, objects, &req.expected_revisions, &req.request_id)
                .await?;
        Ok(Response::new(pb::PutObjectsResponse {
            objects: written.objects.iter().map(Into::into).collect(),
            revision: written.revision,
        }))
    }

    async fn get_object(&self, req: Request<pb::GetObjectRequest>) -> Result<Response<pb::ConfigObject>, Status> {
        let caller = caller(&req)?;
        let req = req.into_inner();
        let info = self.state.authorize(&caller, &req.environment, Permission::EnvironmentRead).await?;
        let key = require_key(&req.obj_code, &req.id)?;
        let object = self.state.store.get(&info.id, &key).await.map_err(EnvError::from)?;
        let object = object.ok_or(EnvError::ObjectNotFound(key))?;
        Ok(Response::new((&object).into()))
    }

    async fn list_objects(
        &self,
        req: Request<pb::ListObjectsRequest>,
    ) -> Result<Response<pb::ListObjectsResponse>, Status> {
        let caller = caller(&req)?;
        let req = req.into_inner();
        let info = self.state.authorize(&caller, &req.environment, Permission::EnvironmentRead).await?;
        if info.catalog.get(&req.obj_code).is_none() {
            return Err(bad_field(
                "UNKNOWN_TYPE",
                "obj_code",
                format!("type {:?} is not in catalog {}", req.obj_code, info.catalog.name),
            ));
        }
        let scope = Scope::new("ListObjects", &caller.organization)
            .filter(&info.id)
            .filter(&req.obj_code)
            .filter(&req.name_prefix)
            .filter(&req.parent_id);
        let page_request = page_request(&self.state, &scope, req.page_size, &req.page_token).await?;
        let query = ObjectQuery { obj_code: req.obj_code, name_prefix: req.name_prefix, parent_id: req.parent_id };
        let (store, query, env) = (self.state.store.as_ref(), &query, info.id.as_str());
        let found = bounded(page_request.clone(), PAGE_BYTES, item_len, |p| async move {
            let found = store.list_objects(env, query, &p).await;
            found.map(|page| page.map(|o| pb::ConfigObject::from(&o)))
        })
        .await
        .map_err(|e| list_failure(e, &page_request))?;
        Ok(Response::new(pb::ListObjectsResponse {
            next_page_token: next_page_token(&self.state, &scope, found.next.as_ref()).await?,
            objects: found.items,
        }))
    }

    async fn delete_object(
        &self,
        req: Request<pb::DeleteObjectRequest>,
    ) -> Result<Response<pb::DeleteObjectResponse>, Status> {
        let caller = caller(&req)?;
        let req = req.into_inner();
        let info = self.state.authorize(&caller, &req.environment, Permission::EnvironmentWrite).await?;
        let key = require_key(&req.obj_code, &req.id)?;
        check_request_id(&req.request_id)?;
        let (deleted, revision) =
            environments::delete_object(&self.state, &caller, &info, &key, req.cascade, &req.request_id).await?;
        Ok(Response::new(pb::DeleteObjectResponse { deleted: deleted.iter().map(Into::into).collect(), revision }))
    }

    async fn export_objects(&self, req: Request<pb::ExportObjectsRequest>) -> Result<Response<ExportStream>, Status> {
        let caller = caller(&req)?;
        let req = req.into_inner();
        let info = self.state.authorize(&caller, &req.environment, Permission::EnvironmentRead).await?;
        let roots: Vec<_> = req.roots.into_iter().map(Into::into).collect();
        let export = environments::export_roots(&self.state, &info, &roots).await?;
        let chunks = export_chunks(export, self.state.config.limits.stream_chunk_bytes);
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks.into_iter().map(Ok)))))
    }

    async fn get_environment_policy(
        &self,
        req: Request<pb::GetEnvironmentPolicyRequest>,
    ) -> Result<Response<pb::EnvironmentPolicy>, Status> {
        let caller = caller(&req)?;
        let policy = policies::get(&self.state, &caller, &req.get_ref().environment).await?;
        Ok(Response::new(policy_to_proto(&policy)))
    }

    async fn update_environment_policy(
        &self,
        req: Request<pb::UpdateEnvironmentPolicyRequest>,
    ) -> Result<Response<pb::EnvironmentPolicy>, Status> {
        let caller = caller(&req)?;
        let ForEnvironment { environment, command } = ForEnvironment::<PolicyChange>::try_from(req.into_inner())?;
        let policy = policies::update(&self.state, &caller, &environment, command).await?;
        Ok(Response::new(policy_to_proto(&policy)))
    }
}
