//! `promotion.v1.EnvironmentService`: the hosted environments' configuration registry.
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status};

use super::{bad_field, page_error};
use crate::installation::environments::{self, EnvError};
use crate::installation::state::{State, SERVICE_NAME};
use crate::installation::store::Changes;
use crate::proto::v1 as pb;
use crate::shared::audit::AuditEvent;
use crate::shared::auth::Permission;
use crate::shared::config::EnvironmentKind;
use crate::shared::directory::EnvironmentInfo;
use crate::shared::errors::status;
use crate::shared::objects::{ConfigObject, ObjectKey};
use crate::shared::pagination::{token_after, Page};
use crate::shared::serving::{caller, environment_not_found};

pub struct EnvironmentApi {
    state: Arc<State>,
}

impl EnvironmentApi {
    pub fn new(state: Arc<State>) -> Self {
        EnvironmentApi { state }
    }

    fn describe(&self, info: &EnvironmentInfo) -> Result<pb::Environment, Status> {
        let (revision, object_counts) = if self.state.is_hosted(&info.id) {
            let s = self.state.store.env_state(&info.id).map_err(EnvError::from)?;
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

    fn page(&self, size: i32, token: &str) -> Result<Page, Status> {
        let l = &self.state.config.limits;
        Page::parse(size, token, l.default_page_size, l.max_page_size).map_err(page_error)
    }
}

pub fn kind_to_proto(kind: EnvironmentKind) -> pb::EnvironmentKind {
    match kind {
        EnvironmentKind::Sandbox => pb::EnvironmentKind::Sandbox,
        EnvironmentKind::Production => pb::EnvironmentKind::Production,
    }
}

pub fn catalog_to_proto(c: &crate::shared::catalog::Catalog) -> pb::Catalog {
    pb::Catalog {
        name: c.name.clone(),
        description: c.description.clone(),
        types: c
            .types
            .iter()
            .map(|t| pb::ObjectType {
                obj_code: t.obj_code.clone(),
                display_name: t.display_name.clone(),
                root: t.root,
                includes: t.includes.clone(),
                parent_types: t.parent_types.clone(),
                unique_names: t.unique_names,
                excluded_fields: t.excluded_fields.clone(),
                install_rank: t.install_rank,
                never_carried: t.never_carried,
            })
            .collect(),
    }
}

fn require_key(obj_code: &str, id: &str) -> Result<ObjectKey, Status> {
    if obj_code.is_empty() {
        return Err(bad_field("MISSING_FIELD", "obj_code", "obj_code is required"));
    }
    if !crate::shared::objects::is_valid_object_id(id) {
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
        let after = page.after.map(|a| String::from_utf8_lossy(&a).into_owned());
        let mut environments = Vec::new();
        let mut next_page_token = String::new();
        for info in self.state.directory.of_organization(&caller.organization) {
            if after.as_ref().is_some_and(|a| info.id.as_str() <= a.as_str()) {
                continue;
            }
            if environments.len() == page.size {
                next_page_token =
                    token_after(environments.last().map_or(b"" as &[u8], |e: &pb::Environment| e.id.as_bytes()));
                break;
            }
            environments.push(self.describe(info)?);
        }
        Ok(Response::new(pb::ListEnvironmentsResponse { environments, next_page_token }))
    }

    async fn get_environment(
        &self,
        req: Request<pb::GetEnvironmentRequest>,
    ) -> Result<Response<pb::Environment>, Status> {
        let caller = caller(&req)?;
        let id = &req.get_ref().id;
        let info = self.state.directory.visible(&caller, id).ok_or_else(|| environment_not_found(id))?;
        Ok(Response::new(self.describe(&info)?))
    }

    async fn get_catalog(&self, req: Request<pb::GetCatalogRequest>) -> Result<Response<pb::Catalog>, Status> {
        let caller = caller(&req)?;
        let req = req.into_inner();
        let catalog = if !req.environment.is_empty() {
            let info = self
                .state
                .directory
                .visible(&caller, &req.environment)
                .ok_or_else(|| environment_not_found(&req.environment))?;
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
        let max = self.state.config.limits.max_objects_per_put;
        if req.objects.len() > max {
            return Err(EnvError::TooLarge {
                field: "objects".into(),
                message: format!("at most {max} objects per call"),
            }
            .into());
        }
        let objects: Vec<ConfigObject> = req.objects.into_iter().map(ConfigObject::from).collect();
        let _guard = self.state.lock(&info.id).await;
        let mut changes =
            environments::plan_put(&self.state.store, &info.id, &info.catalog, objects, &req.expected_revisions)?;
        let event = AuditEvent::new(SERVICE_NAME, &caller, &info.id, "OBJECTS_PUT", ("environment", &info.id))
            .request_id(&req.request_id)
            .detail("count", changes.upserts.len() as u64);
        changes.record(event.record_key(), &event);
        let written = self.state.store.write(&info.id, changes, chrono::Utc::now()).await.map_err(EnvError::from)?;
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
        let _view = self.state.read_view(&info.id).await;
        let object = self.state.store.get(&info.id, &key.obj_code, &key.id).map_err(EnvError::from)?;
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
        let page = self.page(req.page_size, &req.page_token)?;
        if info.catalog.get(&req.obj_code).is_none() {
            return Err(bad_field(
                "UNKNOWN_TYPE",
                "obj_code",
                format!("type {:?} is not in catalog {}", req.obj_code, info.catalog.name),
            ));
        }
        let keep = |o: &ConfigObject| {
            o.name.starts_with(&req.name_prefix)
                && (req.parent_id.is_empty() || o.parent.as_ref().is_some_and(|p| p.id == req.parent_id))
        };
        if page.after.as_deref().is_some_and(|a| !self.state.store.is_list_key(&info.id, &req.obj_code, a)) {
            return Err(page_error(crate::shared::pagination::PageError::BadToken));
        }
        let _view = self.state.read_view(&info.id).await;
        let (objects, last) = self
            .state
            .store
            .list(&info.id, &req.obj_code, page.after.as_deref(), keep, page.size)
            .map_err(EnvError::from)?;
        Ok(Response::new(pb::ListObjectsResponse {
            objects: objects.iter().map(Into::into).collect(),
            next_page_token: last.map(|k| token_after(&k)).unwrap_or_default(),
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
        let _guard = self.state.lock(&info.id).await;
        let mut changes: Changes = environments::plan_delete(&self.state.store, &info.id, &key, req.cascade)?;
        let deleted: Vec<pb::ObjectKey> = changes.deletes.iter().map(Into::into).collect();
        let event = AuditEvent::new(SERVICE_NAME, &caller, &info.id, "OBJECT_DELETED", (&key.obj_code, &key.id))
            .request_id(&req.request_id)
            .detail("deleted", deleted.len() as u64)
            .detail("cascade", req.cascade);
        changes.record(event.record_key(), &event);
        let written = self.state.store.write(&info.id, changes, chrono::Utc::now()).await.map_err(EnvError::from)?;
        Ok(Response::new(pb::DeleteObjectResponse { deleted, revision: written.revision }))
    }

    async fn export_objects(&self, req: Request<pb::ExportObjectsRequest>) -> Result<Response<ExportStream>, Status> {
        let caller = caller(&req)?;
        let req = req.into_inner();
        let info = self.state.authorize(&caller, &req.environment, Permission::EnvironmentRead).await?;
        let roots: Vec<_> = req.roots.into_iter().map(Into::into).collect();
        // Read under the write lock so the closure is one consistent revision.
        let export = {
            let _guard = self.state.lock(&info.id).await;
            let store = self.state.store.clone();
            let catalog = info.catalog.clone();
            let env = info.id.clone();
            tokio::task::spawn_blocking(move || environments::export(&store, &env, &catalog, &roots))
                .await
                .map_err(|e| Status::internal(format!("export task failed: {e}")))??
        };
        let chunks = export_chunks(export, self.state.config.limits.stream_chunk_bytes);
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks.into_iter().map(Ok)))))
    }
}

/// Splits an export into messages of at most `budget` bytes of objects each; the first
/// carries the warnings, revision and install order.
fn export_chunks(export: environments::Export, budget: usize) -> Vec<pb::ExportObjectsResponse> {
    use prost::Message;
    let mut chunks = vec![pb::ExportObjectsResponse {
        warnings: export.warnings,
        revision: export.revision,
        install_order: export.install_order,
        ..Default::default()
    }];
    let mut size = 0;
    for o in &export.objects {
        let o: pb::ConfigObject = o.into();
        let len = o.encoded_len() + 8;
        if size + len > budget && size > 0 {
            chunks.push(pb::ExportObjectsResponse::default());
            size = 0;
        }
        size += len;
        chunks.last_mut().expect("one chunk exists").objects.push(o);
    }
    for r in &export.external_references {
        let r: pb::ExternalReference = r.into();
        let len = r.encoded_len() + 8;
        if size + len > budget && size > 0 {
            chunks.push(pb::ExportObjectsResponse::default());
            size = 0;
        }
        size += len;
        chunks.last_mut().expect("one chunk exists").external_references.push(r);
    }
    chunks
}
