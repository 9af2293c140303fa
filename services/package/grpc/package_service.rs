//! `promotion.v1.PackageService`: converts requests, calls `package::operations`, starts
//! the extractions they ask for, and maps package errors to statuses.
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{Code, Request, Response, Status};

use crate::package::definitions::Content;
use crate::package::extraction;
use crate::package::operations::{self, Changes, Definition, InstallationReport, ListQuery, NewPackage, Replacement};
use crate::package::packages::{self, Package, PackageError};
use crate::package::state::State;
use crate::package::watch::Change;
use crate::proto::v1 as pb;
use crate::shared::convert::{opt_timestamp, timestamp};
use crate::shared::errors::status;
use crate::shared::serving::{bearer, caller, environment_not_found, permission_denied};

pub struct PackageApi {
    state: Arc<State>,
}

impl PackageApi {
    pub fn new(state: Arc<State>) -> Self {
        PackageApi { state }
    }

    fn start(
        &self,
        job: Option<extraction::Job>,
        token: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    ) {
        if let Some(job) = job {
            extraction::spawn(self.state.clone(), job, token);
        }
    }
}

type DefinitionStream = Pin<Box<dyn Stream<Item = Result<pb::GetPackageDefinitionResponse, Status>> + Send>>;
type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::Package, Status>> + Send>>;

#[tonic::async_trait]
impl pb::package_service_server::PackageService for PackageApi {
    async fn create_package(&self, req: Request<pb::CreatePackageRequest>) -> Result<Response<pb::Package>, Status> {
        let caller = caller(&req)?;
        let token = bearer(req.metadata());
        let r = req.into_inner();
        let new = NewPackage {
            name: r.name,
            description: r.description,
            source_environment: r.source_environment,
            object_collections: r.object_collections.into_iter().map(Into::into).collect(),
            is_private: r.is_private,
            request_id: r.request_id,
        };
        let outcome = operations::create(&self.state, &caller, new).await?;
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
        let (packages, next_page_token) = operations::list(&self.state, &caller, query).await?;
        Ok(Response::new(pb::ListPackagesResponse {
            packages: packages.iter().map(package_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn get_package(&self, req: Request<pb::GetPackageRequest>) -> Result<Response<pb::Package>, Status> {
        let caller = caller(&req)?;
        let package = operations::get(&self.state, &caller, &req.get_ref().id).await?;
        Ok(Response::new(package_to_proto(&package)))
    }

    async fn get_package_definition(
        &self,
        req: Request<pb::GetPackageDefinitionRequest>,
    ) -> Result<Response<DefinitionStream>, Status> {
        use prost::Message;
        let caller = caller(&req)?;
        let r = req.into_inner();
        let (version, records) = operations::definition(&self.state, &caller, &r.id, r.version).await?;
        let id = r.id;
        let messages = records.map(move |item| {
            let (_, bytes) = item.map_err(|e| Status::from(PackageError::Store(e)))?;
            pb::GetPackageDefinitionResponse::decode(bytes.as_slice()).map_err(|e| {
                tracing::error!(package = %id, version, error = %e, "stored definition does not decode");
                status(
                    Code::DataLoss,
                    "DEFINITION_CORRUPT",
                    "the stored definition is damaged",
                    [("package_id", id.clone())],
                )
            })
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(messages))))
    }

    async fn replace_package(&self, req: Request<pb::ReplacePackageRequest>) -> Result<Response<pb::Package>, Status> {
        use pb::replace_package_request::Definition as Def;
        let caller = caller(&req)?;
        let token = bearer(req.metadata());
        let r = req.into_inner();
        let definition = r.definition.map(|d| match d {
            Def::ObjectCollections(c) => Definition::Extract(c.collections.into_iter().map(Into::into).collect()),
            Def::Entities(e) => {
                Definition::Given(Content { objects: e.objects, external_references: e.external_references })
            }
        });
        let replacement = Replacement {
            name: r.name,
            description: r.description,
            is_private: r.is_private,
            definition,
            etag: r.etag,
            request_id: r.request_id,
        };
        let outcome = operations::replace(&self.state, &caller, &r.id, replacement).await?;
        self.start(outcome.extraction, token);
        Ok(Response::new(package_to_proto(&outcome.package)))
    }

    async fn update_package(&self, req: Request<pb::UpdatePackageRequest>) -> Result<Response<pb::Package>, Status> {
        let caller = caller(&req)?;
        let token = bearer(req.metadata());
        let r = req.into_inner();
        let package = r.package.ok_or_else(|| {
            status(Code::InvalidArgument, "MISSING_FIELD", "package is required", [("field", "package".into())])
        })?;
        let changes = changes_from_mask(&package, r.update_mask)?;
        let outcome = operations::update(&self.state, &caller, &package.id, &package.etag, changes).await?;
        self.start(outcome.extraction, token);
        Ok(Response::new(package_to_proto(&outcome.package)))
    }

    async fn delete_package(
        &self,
        req: Request<pb::DeletePackageRequest>,
    ) -> Result<Response<pb::DeletePackageResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        operations::delete(&self.state, &caller, &r.id, &r.etag).await?;
        Ok(Response::new(pb::DeletePackageResponse {}))
    }

    async fn watch_package(&self, req: Request<pb::WatchPackageRequest>) -> Result<Response<WatchStream>, Status> {
        let caller = caller(&req)?;
        let id = req.into_inner().id;
        packages::validate_package_id(&id, "id")?;
        // Subscribed before reading, so no change falls between the read and the stream.
        let mut changes = self.state.watchers.subscribe(&id);
        let current = operations::get(&self.state, &caller, &id).await?;
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
        let r = req.into_inner();
        let report = InstallationReport {
            package_id: r.package_id,
            package_version: r.package_version,
            installation_id: r.installation_id,
            destination_environment: r.destination_environment,
        };
        let (newly_recorded, counts) = operations::record_installation(&self.state, &caller, report).await?;
        Ok(Response::new(pb::RecordInstallationResponse {
            newly_recorded,
            installation_counts: counts.into_iter().collect(),
        }))
    }
}

/// The fields an UpdatePackage mask names, taken from `package`.
fn changes_from_mask(package: &pb::Package, mask: Option<prost_types::FieldMask>) -> Result<Changes, Status> {
    let bad_mask = |message: String, field: &str| {
        status(Code::InvalidArgument, "INVALID_FIELD_MASK", message, [("field", field.to_string())])
    };
    let paths = mask.map(|m| m.paths).unwrap_or_default();
    if paths.is_empty() {
        return Err(bad_mask(
            "update_mask must name the fields to change: name, description, status, is_private, object_collections"
                .into(),
            "update_mask",
        ));
    }
    let mut changes = Changes::default();
    for path in &paths {
        match path.as_str() {
            "name" => changes.name = Some(package.name.clone()),
            "description" => changes.description = Some(package.description.clone()),
            "is_private" => changes.is_private = Some(package.is_private),
            "status" => {
                changes.status = Some(optional_status(package.status, "package.status")?.ok_or_else(|| {
                    status(
                        Code::InvalidArgument,
                        "INVALID_STATUS",
                        "status is in the mask but not set",
                        [("field", "package.status".into())],
                    )
                })?)
            }
            "object_collections" => {
                changes.object_collections = Some(package.object_collections.iter().cloned().map(Into::into).collect())
            }
            other => {
                return Err(bad_mask(
                    format!(
                        "{other:?} cannot be updated; the mask may name name, description, status, is_private, \
                         object_collections"
                    ),
                    other,
                ))
            }
        }
    }
    Ok(changes)
}

/// A status filter or value: UNSPECIFIED is none, an unknown number is invalid.
fn optional_status(value: i32, field: &str) -> Result<Option<packages::Status>, Status> {
    let parsed = pb::PackageStatus::try_from(value).map_err(|_| {
        status(
            Code::InvalidArgument,
            "INVALID_STATUS",
            format!("{value} is not a package status"),
            [("field", field.to_string())],
        )
    })?;
    Ok(status_from_proto(parsed))
}

pub fn status_from_proto(s: pb::PackageStatus) -> Option<packages::Status> {
    use packages::Status::*;
    match s {
        pb::PackageStatus::Unspecified => None,
        pb::PackageStatus::Extracting => Some(Extracting),
        pb::PackageStatus::Building => Some(Building),
        pb::PackageStatus::Preview => Some(Preview),
        pb::PackageStatus::Public => Some(Public),
        pb::PackageStatus::Retired => Some(Retired),
        pb::PackageStatus::ExtractionFailed => Some(ExtractionFailed),
    }
}

pub fn status_to_proto(s: packages::Status) -> pb::PackageStatus {
    use packages::Status::*;
    match s {
        Extracting => pb::PackageStatus::Extracting,
        Building => pb::PackageStatus::Building,
        Preview => pb::PackageStatus::Preview,
        Public => pb::PackageStatus::Public,
        Retired => pb::PackageStatus::Retired,
        ExtractionFailed => pb::PackageStatus::ExtractionFailed,
    }
}

pub fn package_to_proto(p: &Package) -> pb::Package {
    pb::Package {
        id: p.id.clone(),
        name: p.name.clone(),
        description: p.description.clone(),
        status: status_to_proto(p.status) as i32,
        version: p.version,
        organization: p.organization.clone(),
        source_environment: p.source_environment.clone(),
        object_collections: p.object_collections.iter().map(Into::into).collect(),
        metadata: Some(pb::PackageMetadata {
            install_order: p.metadata.install_order.clone(),
            display_order: p.metadata.display_order.clone(),
        }),
        entity_counts: p.entity_counts.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        digest: p.digest.clone(),
        installation_counts: p.installation_counts.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        is_private: p.is_private,
        create_time: Some(timestamp(p.create_time)),
        created_by: p.created_by.clone(),
        update_time: Some(timestamp(p.update_time)),
        publish_time: opt_timestamp(p.publish_time),
        retire_time: opt_timestamp(p.retire_time),
        etag: p.etag(),
        failure_reason: p.failure_reason.clone(),
        warnings: p.warnings.clone(),
    }
}

fn status_name(s: packages::Status) -> String {
    status_to_proto(s).as_str_name().to_string()
}

impl From<PackageError> for Status {
    fn from(e: PackageError) -> Status {
        let message = e.to_string();
        match e {
            PackageError::Invalid { reason, field, .. } => {
                status(Code::InvalidArgument, reason, message, [("field", field)])
            }
            PackageError::NotFound(id) => status(Code::NotFound, "PACKAGE_NOT_FOUND", message, [("package_id", id)]),
            PackageError::VersionNotFound { id, version } => status(
                Code::NotFound,
                "VERSION_NOT_FOUND",
                message,
                [("package_id", id), ("version", version.to_string())],
            ),
            PackageError::EnvironmentNotFound(id) => environment_not_found(&id),
            PackageError::PermissionDenied { permission, environment } => permission_denied(permission, &environment),
            PackageError::DefinitionNotReady { id, status: s } => status(
                Code::FailedPrecondition,
                "DEFINITION_NOT_READY",
                message,
                [("package_id", id), ("status", status_name(s))],
            ),
            PackageError::InvalidTransition { from, to } => status(
                Code::FailedPrecondition,
                "INVALID_STATUS_TRANSITION",
                message,
                [("from", status_name(from)), ("to", status_name(to))],
            ),
            PackageError::NotEditable { id, status: s } => status(
                Code::FailedPrecondition,
                "PACKAGE_NOT_EDITABLE",
                message,
                [("package_id", id), ("status", status_name(s))],
            ),
            PackageError::EtagMismatch { id, .. } => {
                status(Code::Aborted, "ETAG_MISMATCH", message, [("package_id", id)])
            }
            PackageError::TooLarge { field, .. } => {
                status(Code::ResourceExhausted, "LIMIT_EXCEEDED", message, [("field", field)])
            }
            PackageError::Store(e) => {
                tracing::error!(error = %e, "store failure");
                status(Code::Internal, "STORE_FAILURE", "the store failed; nothing was acknowledged", [])
            }
        }
    }
}
