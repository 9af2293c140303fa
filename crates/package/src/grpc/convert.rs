//! Conversions between package-service messages and the package domain's types.
use tonic::{Code, Status as GrpcStatus};

use crate::diff::{DiffKind, ObjectDiff, VersionDiff};
use crate::update::Changes;
use promotion_api::convert::{opt_timestamp, timestamp};
use promotion_api::status::status;
use promotion_api::v1 as pb;
use promotion_core::package::{DefinitionChunk, DefinitionHeader, Package, Status};

/// The fields an UpdatePackage mask names, taken from `package`.
pub fn changes_from_mask(package: &pb::Package, mask: Option<prost_types::FieldMask>) -> Result<Changes, GrpcStatus> {
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
pub fn optional_status(value: i32, field: &str) -> Result<Option<Status>, GrpcStatus> {
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

pub fn status_from_proto(s: pb::PackageStatus) -> Option<Status> {
    use Status::*;
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

pub fn status_to_proto(s: Status) -> pb::PackageStatus {
    use Status::*;
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

pub fn header_to_proto(h: &DefinitionHeader) -> pb::GetPackageDefinitionResponse {
    let header = pb::PackageDefinitionHeader {
        package_id: h.package_id.clone(),
        version: h.version,
        digest: h.digest.clone(),
        metadata: Some(pb::PackageMetadata {
            install_order: h.metadata.install_order.clone(),
            display_order: h.metadata.display_order.clone(),
        }),
        entity_counts: h.entity_counts.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        source_environment: h.source_environment.clone(),
        organization: h.organization.clone(),
        entity_total: h.entity_total,
    };
    pb::GetPackageDefinitionResponse { part: Some(pb::get_package_definition_response::Part::Header(header)) }
}

pub fn chunk_to_proto(c: &DefinitionChunk) -> pb::GetPackageDefinitionResponse {
    let entities = pb::PackageEntities {
        objects: c.objects.iter().map(Into::into).collect(),
        external_references: c.external_references.iter().map(Into::into).collect(),
    };
    pb::GetPackageDefinitionResponse { part: Some(pb::get_package_definition_response::Part::Entities(entities)) }
}

pub fn object_diff_to_proto(d: &ObjectDiff) -> pb::ObjectDiff {
    pb::ObjectDiff {
        obj_code: d.obj_code.clone(),
        id: d.id.clone(),
        name: d.name.clone(),
        kind: match d.kind {
            DiffKind::Added => pb::ObjectDiffKind::Added,
            DiffKind::Removed => pb::ObjectDiffKind::Removed,
            DiffKind::Changed => pb::ObjectDiffKind::Changed,
        } as i32,
        changes: d.changes.iter().map(pb::FieldChange::from).collect(),
    }
}

pub fn version_diff_to_proto(d: &VersionDiff) -> pb::DiffPackageVersionsResponse {
    pb::DiffPackageVersionsResponse {
        id: d.from.package_id.clone(),
        from_version: d.from.version,
        to_version: d.to.version,
        from_digest: d.from.digest.clone(),
        to_digest: d.to.digest.clone(),
        summary: d.summary.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        objects: d.objects.iter().map(object_diff_to_proto).collect(),
        next_page_token: d.next_page_token.clone(),
    }
}
