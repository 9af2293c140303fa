//! `promotion.v1.PackageService`: converts requests, calls the package domain, starts the
//! extractions it asks for.
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{Request, Response, Status};

use super::commands::OnPackage;
use super::convert::{
    chunk_to_proto, header_to_proto, object_diff_to_proto, optional_status, package_to_proto, version_diff_to_proto,
};
use crate::create::{create, NewPackage};
use crate::delete::delete;
use crate::diff::{diff_versions, DiffQuery};
use crate::extraction;
use crate::read::{self, ListQuery};
use crate::record_installation::{record_installation, InstallationReport};
use crate::replace::{replace, Replacement};
use crate::state::State;
use crate::update::{update, Changes};
use crate::validate::validate_package_id;
use crate::watch::Change;
use crate::PackageError;
use promotion_api::convert::item_len;
use promotion_api::v1 as pb;
use promotion_core::identity::Credentials;
use promotion_serving::caller;

pub struct PackageApi {
    state: Arc<State>,
}

impl PackageApi {
    pub fn new(state: Arc<State>) -> Self {
        PackageApi { state }
    }

    fn start(&self, job: Option<extraction::Job>, credentials: Option<Credentials>) {
        if let Some(job) = job {
            extraction::spawn(self.state.clone(), job, credentials);
        }
    }
}

type DefinitionStream = Pin<Box<dyn Stream<Item = Result<pb::GetPackageDefinitionResponse, Status>> + Send>>;
type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::Package, Status>> + Send>>;

#[tonic::async_trait]
impl pb::package_service_server::PackageService for PackageApi {
    async fn create_package(&self, req: Request<pb::CreatePackageRequest>) -> Result<Response<pb::Package>, Status> {
        let caller = caller(&req)?;
        let token = promotion_serving::credentials(&req).ok();
        let outcome = create(&self.state, &caller, NewPackage::from(req.into_inner())).await?;
        self.start(outcome.extraction, token);
        Ok(Response::new(package_to_proto(&outcome.package)))
    }

    async fn list_packages(
        &self,
        req: Request<pb::ListPackagesRequest>,
    ) -> Result<Response<pb::ListPackagesResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let query = ListQuery {
            page_size: r.page_size,
            page_token: r.page_token,
            status: optional_status(r.status, "status")?,
            source_environment: r.source_environment,
            show_retired: r.show_retired,
        };
        let (packages, next_page_token) =
            read::list(&self.state, &caller, query, |p| item_len(&package_to_proto(p))).await?;
        Ok(Response::new(pb::ListPackagesResponse {
            packages: packages.iter().map(package_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn diff_package_versions(
        &self,
        req: Request<pb::DiffPackageVersionsRequest>,
    ) -> Result<Response<pb::DiffPackageVersionsResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let query = DiffQuery {
            id: r.id,
            from_version: r.from_version,
            to_version: r.to_version,
            page_size: r.page_size,
            page_token: r.page_token,
        };
        let found = diff_versions(&self.state, &caller, query, |d| item_len(&object_diff_to_proto(d))).await?;
        Ok(Response::new(version_diff_to_proto(&found)))
    }

    async fn get_package(&self, req: Request<pb::GetPackageRequest>) -> Result<Response<pb::Package>, Status> {
        let caller = caller(&req)?;
        let package = read::get(&self.state, &caller, &req.get_ref().id).await?;
        Ok(Response::new(package_to_proto(&package)))
    }

    async fn get_package_definition(
        &self,
        req: Request<pb::GetPackageDefinitionRequest>,
    ) -> Result<Response<DefinitionStream>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let header = read::definition(&self.state, &caller, &r.id, r.version).await?;
        let state = self.state.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            if tx.send(Ok(header_to_proto(&header))).await.is_err() {
                return;
            }
            for n in 0.. {
                let message = match state.store.definition_chunk(&header.package_id, header.version, n).await {
                    Ok(Some(chunk)) => Ok(chunk_to_proto(&chunk)),
                    Ok(None) => return,
                    Err(e) => Err(Status::from(PackageError::Store(e))),
                };
                let failed = message.is_err();
                if tx.send(message).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn replace_package(&self, req: Request<pb::ReplacePackageRequest>) -> Result<Response<pb::Package>, Status> {
        let caller = caller(&req)?;
        let token = promotion_serving::credentials(&req).ok();
        let r = OnPackage::<Replacement>::try_from(req.into_inner())?;
        let outcome = replace(&self.state, &caller, &r.id, r.command).await?;
        self.start(outcome.extraction, token);
        Ok(Response::new(package_to_proto(&outcome.package)))
    }

    async fn update_package(&self, req: Request<pb::UpdatePackageRequest>) -> Result<Response<pb::Package>, Status> {
        let caller = caller(&req)?;
        let token = promotion_serving::credentials(&req).ok();
        let r = OnPackage::<Changes>::try_from(req.into_inner())?;
        let outcome = update(&self.state, &caller, &r.id, &r.etag, r.command, &r.request_id).await?;
        self.start(outcome.extraction, token);
        Ok(Response::new(package_to_proto(&outcome.package)))
    }

    async fn delete_package(
        &self,
        req: Request<pb::DeletePackageRequest>,
    ) -> Result<Response<pb::DeletePackageResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        delete(&self.state, &caller, &r.id, &r.etag, &r.request_id).await?;
        Ok(Response::new(pb::DeletePackageResponse {}))
    }

    async fn watch_package(&self, req: Request<pb::WatchPackageRequest>) -> Result<Response<WatchStream>, Status> {
        let caller = caller(&req)?;
        let id = req.into_inner().id;
        validate_package_id(&id, "id")?;
        // Subscribed before reading, so no change falls between the read and the stream.
        let mut changes = self.state.watchers.subscribe(&id);
        let current = read::get(&self.state, &caller, &id).await?;
        let mut stopping = self.state.stopping();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut last = current.sequence;
            if tx.send(Ok(package_to_proto(&current))).await.is_err() {
                return;
            }
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = async { stopping.wait_for(|stop| *stop).await.map(|_| ()) } => {
                        let _ = tx.send(Err(Status::unavailable("the package service is shutting down; watch again"))).await;
                        return;
                    }
                    changed = changes.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let change = changes.borrow_and_update().clone();
                        match change {
                            Change::Updated(p) if p.sequence > last => {
                                last = p.sequence;
                                if tx.send(Ok(package_to_proto(&p))).await.is_err() {
                                    return;
                                }
                            }
                            Change::Deleted => return,
                            _ => {}
                        }
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn record_installation(
        &self,
        req: Request<pb::RecordInstallationRequest>,
    ) -> Result<Response<pb::RecordInstallationResponse>, Status> {
        let caller = caller(&req)?;
        let reporter = promotion_serving::credentials(&req)?;
        let report = InstallationReport::from(req.into_inner());
        let (newly_recorded, counts) = record_installation(&self.state, &caller, &reporter, report).await?;
        Ok(Response::new(pb::RecordInstallationResponse {
            newly_recorded,
            installation_counts: counts.into_iter().collect(),
        }))
    }
}
