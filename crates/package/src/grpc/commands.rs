//! Requests as package-domain commands: each conversion checks what only the request's
//! shape can tell (a missing message, a field mask, an unknown status) and builds the
//! command the domain validates and carries out.
use tonic::{Code, Status};

use super::convert::changes_from_mask;
use crate::create::NewPackage;
use crate::definitions::Content;
use crate::record_installation::InstallationReport;
use crate::replace::{Definition, Replacement};
use crate::update::Changes;
use promotion_api::convert::objects_from_proto;
use promotion_api::status::{non_finite, status};
use promotion_api::v1 as pb;

/// A command on one package.
pub struct OnPackage<T> {
    pub id: String,
    pub etag: String,
    pub request_id: String,
    pub command: T,
}

impl From<pb::CreatePackageRequest> for NewPackage {
    fn from(r: pb::CreatePackageRequest) -> Self {
        NewPackage {
            name: r.name,
            description: r.description,
            source_environment: r.source_environment,
            object_collections: r.object_collections.into_iter().map(Into::into).collect(),
            is_private: r.is_private,
            request_id: r.request_id,
        }
    }
}

impl TryFrom<pb::ReplacePackageRequest> for OnPackage<Replacement> {
    type Error = Status;

    fn try_from(r: pb::ReplacePackageRequest) -> Result<Self, Status> {
        use pb::replace_package_request::Definition as Def;
        let definition = match r.definition {
            None => None,
            Some(Def::ObjectCollections(c)) => {
                Some(Definition::Extract(c.collections.into_iter().map(Into::into).collect()))
            }
            Some(Def::Entities(e)) => Some(Definition::Given(Content {
                objects: objects_from_proto(e.objects, "entities.objects").map_err(non_finite)?,
                external_references: e.external_references.into_iter().map(Into::into).collect(),
            })),
        };
        let command = Replacement {
            name: r.name,
            description: r.description,
            is_private: r.is_private,
            definition,
            etag: r.etag.clone(),
            request_id: r.request_id.clone(),
        };
        Ok(OnPackage { id: r.id, etag: r.etag, request_id: r.request_id, command })
    }
}

impl TryFrom<pb::UpdatePackageRequest> for OnPackage<Changes> {
    type Error = Status;

    fn try_from(r: pb::UpdatePackageRequest) -> Result<Self, Status> {
        let package = r.package.ok_or_else(|| {
            status(Code::InvalidArgument, "MISSING_FIELD", "package is required", [("field", "package".into())])
        })?;
        let command = changes_from_mask(&package, r.update_mask)?;
        Ok(OnPackage { id: package.id, etag: package.etag, request_id: r.request_id, command })
    }
}

impl From<pb::RecordInstallationRequest> for InstallationReport {
    fn from(r: pb::RecordInstallationRequest) -> Self {
        InstallationReport {
            package_id: r.package_id,
            package_version: r.package_version,
            installation_id: r.installation_id,
            destination_environment: r.destination_environment,
            request_id: r.request_id,
        }
    }
}
