//! `promotion.v1.EnvironmentService`: the hosted environments' configuration registry.
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status};

use super::convert::{catalog_to_proto, export_chunks, kind_to_proto};
use crate::environments::{self, EnvError};
use crate::state::State;
use promotion_api::status::{access, bad_field, page, status};
use promotion_api::v1 as pb;
use promotion_core::cursor::{token, PageRequest, Position};
use promotion_core::directory::EnvironmentInfo;
use promotion_core::identity::Permission;
use promotion_core::objects::{ConfigObject, ObjectKey};
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

    fn page(&self, size: i32, token: &str) -> Result<PageRequest, Status> {
        let l = &self.state.config.limits;
        PageRequest::parse(size, token, l.default_page_size, l.max_page_size).map_err(page)
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
        let page = self.page(req.page_size, &req.page_token)?;
        let after = page.after.map(|a| String::from_utf8_lossy(a.as_bytes()).into_owned());
        let mut environments = Vec::new();
        let mut next_page_token = String::new();
        for info in self.state.directory.of_organization(&caller.organization) {
            if after.as_ref().is_some_and(|a| info.id.as_str() <= a.as_str()) {
                continue;
            }
            if environments.len() == page.size {
                let last = environments.last().map_or(String::new(), |e: &pb::Environment| e.id.clone());
                next_page_token = token(Some(&Position::from_bytes(last.into_bytes())));
                break;
            }
            environments.push(self.describe(info).await?);
        }
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
        if req.objects.is_empty() {
            return Err(bad_field("MISSING_FIELD", "objects", "objects must name at least one object"));
        }
        let objects: Vec<ConfigObject> = req.objects.into_iter().map(ConfigObject::from).collect();
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
        let page_request = self.page(req.page_size, &req.page_token)?;
        if info.catalog.get(&req.obj_code).is_none() {
            return Err(bad_field(
                "UNKNOWN_TYPE",
                "obj_code",
                format!("type {:?} is not in catalog {}", req.obj_code, info.catalog.name),
            ));
        }
        let query = ObjectQuery { obj_code: req.obj_code, name_prefix: req.name_prefix, parent_id: req.parent_id };
        let found = self.state.store.list_objects(&info.id, &query, &page_request).await.map_err(|e| {
            if e.kind == promotion_store::StoreErrorKind::Corrupt && page_request.after.is_some() {
                page(promotion_core::cursor::PageError::BadToken)
            } else {
                EnvError::from(e).into()
            }
        })?;
        Ok(Response::new(pb::ListObjectsResponse {
            objects: found.items.iter().map(Into::into).collect(),
            next_page_token: token(found.next.as_ref()),
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
}
