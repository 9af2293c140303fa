//! Validation of what callers send the package service: names, descriptions, ids,
//! requested roots, and the fingerprint of a request body for idempotency.
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{invalid, PackageError};
use promotion_core::catalog::Catalog;
use promotion_core::objects::ObjectCollection;

pub const NAME_CHARS: std::ops::RangeInclusive<usize> = 5..=255;
pub const MAX_DESCRIPTION_CHARS: usize = 4_000;

/// Package names are 5..255 characters (surrounding spaces do not count), without
/// control characters.
pub fn validate_name(name: &str) -> Result<(), PackageError> {
    let total = name.chars().count();
    // Surrounding spaces do not make a short name long enough.
    let visible = name.trim().chars().count();
    if visible < *NAME_CHARS.start() || total > *NAME_CHARS.end() {
        let counted = if total > *NAME_CHARS.end() { total } else { visible };
        return Err(invalid(
            "INVALID_NAME",
            "name",
            format!("name must be {}..{} characters, not {counted}", NAME_CHARS.start(), NAME_CHARS.end()),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("INVALID_NAME", "name", "name must not contain control characters"));
    }
    Ok(())
}

pub fn validate_description(description: &str) -> Result<(), PackageError> {
    let chars = description.chars().count();
    if chars > MAX_DESCRIPTION_CHARS {
        return Err(invalid(
            "DESCRIPTION_TOO_LONG",
            "description",
            format!("description must be at most {MAX_DESCRIPTION_CHARS} characters, not {chars}"),
        ));
    }
    Ok(())
}

/// Request ids are optional; when given they are UUIDs.
pub fn validate_request_id(request_id: &str) -> Result<(), PackageError> {
    if !request_id.is_empty() && uuid::Uuid::parse_str(request_id).is_err() {
        return Err(invalid("INVALID_REQUEST_ID", "request_id", format!("request_id {request_id:?} is not a UUID")));
    }
    Ok(())
}

/// Package ids are UUIDs.
pub fn validate_package_id(id: &str, field: &str) -> Result<(), PackageError> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(invalid("INVALID_PACKAGE_ID", field, format!("package id {id:?} is not a UUID")));
    }
    Ok(())
}

/// Requested roots: known root types of the catalog, well-formed ids, no empty
/// collection, and no more roots than a package may hold.
pub fn validate_roots(catalog: &Catalog, roots: &[ObjectCollection], max_objects: usize) -> Result<(), PackageError> {
    catalog.validate_roots(roots).map_err(|e| PackageError::Invalid {
        reason: e.reason,
        field: e.field,
        message: e.message,
    })?;
    for (i, c) in roots.iter().enumerate() {
        for (j, e) in c.entities.iter().enumerate().filter(|(_, e)| !e.name.is_empty()) {
            let field = format!("object_collections[{i}].entities[{j}].name");
            promotion_core::validate::name(&e.name, &field)
                .map_err(|v| invalid(v.reason(), v.field().to_string(), v.message().to_string()))?;
        }
    }
    let total: usize = roots.iter().map(|c| c.entities.len()).sum();
    if total > promotion_core::validate::MAX_PACKAGE_ROOTS {
        return Err(PackageError::TooLarge {
            limit: "max_package_roots",
            field: "object_collections".into(),
            message: format!(
                "{total} roots requested; a package names at most {} roots (max_package_roots)",
                promotion_core::validate::MAX_PACKAGE_ROOTS
            ),
        });
    }
    if total > max_objects {
        return Err(PackageError::TooLarge {
            limit: "max_package_objects",
            field: "object_collections".into(),
            message: format!("{total} roots requested; a package holds at most {max_objects} objects"),
        });
    }
    Ok(())
}

/// Installation ids are the UUIDs installation services give installations: anything
/// else names no installation, and is refused before any service is asked about it.
pub fn validate_installation_id(id: &str) -> Result<(), PackageError> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(invalid(
            "INVALID_INSTALLATION_ID",
            "installation_id",
            "installation_id must be a UUID: the id the installation service gave the installation",
        ));
    }
    Ok(())
}

/// A fingerprint of a create request, so a reused request id with another body is caught.
pub fn fingerprint(parts: &impl Serialize) -> String {
    let bytes = serde_json::to_vec(parts).expect("request parts serialise");
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use promotion_core::catalog::workfront;
    use promotion_core::objects::EntityRef;

    fn reason(r: Result<(), PackageError>) -> &'static str {
        match r {
            Err(PackageError::Invalid { reason, .. }) => reason,
            Err(PackageError::TooLarge { .. }) => "TOO_LARGE",
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn names_descriptions_and_ids_are_checked() {
        assert!(validate_name("Agency Onboarding - 2023-06-06").is_ok());
        assert_eq!(reason(validate_name("abcd")), "INVALID_NAME");
        assert_eq!(reason(validate_name("   abcd   ")), "INVALID_NAME");
        assert_eq!(reason(validate_name(&"x".repeat(256))), "INVALID_NAME");
        assert!(validate_name(&"é".repeat(255)).is_ok());
        assert_eq!(reason(validate_name("bad\nname")), "INVALID_NAME");
        assert!(validate_description(&"d".repeat(4000)).is_ok());
        assert_eq!(reason(validate_description(&"d".repeat(4001))), "DESCRIPTION_TOO_LONG");
        assert!(validate_request_id("").is_ok());
        assert!(validate_request_id("1d5693b9-b7b5-492d-8219-c21f34bcaca6").is_ok());
        assert_eq!(reason(validate_request_id("req-1")), "INVALID_REQUEST_ID");
        assert_eq!(reason(validate_package_id("nope", "id")), "INVALID_PACKAGE_ID");
        assert_eq!(reason(validate_installation_id("")), "INVALID_INSTALLATION_ID");
        assert_eq!(reason(validate_installation_id("0191d2a4-inst")), "INVALID_INSTALLATION_ID");
        assert!(validate_installation_id("0191d2a4-5b6c-7d8e-9f00-0123456789ab").is_ok());
    }

    #[test]
    fn roots_must_be_root_types_with_good_ids() {
        let catalog = workfront();
        let coll = |code: &str, ids: &[&str]| ObjectCollection {
            obj_code: code.into(),
            entities: ids.iter().map(|id| EntityRef { id: id.to_string(), name: String::new() }).collect(),
        };
        let id = "6419b8b9001151ee258921a4f7597bb2";
        assert!(validate_roots(&catalog, &[coll("TMPL", &[id])], 10).is_ok());
        assert_eq!(reason(validate_roots(&catalog, &[coll("NOPE", &[id])], 10)), "UNKNOWN_TYPE");
        assert_eq!(reason(validate_roots(&catalog, &[coll("TTSK", &[id])], 10)), "NOT_A_ROOT_TYPE");
        assert_eq!(reason(validate_roots(&catalog, &[coll("TMPL", &["XYZ"])], 10)), "INVALID_ID");
        assert_eq!(reason(validate_roots(&catalog, &[coll("TMPL", &[])], 10)), "EMPTY_COLLECTION");
        assert_eq!(reason(validate_roots(&catalog, &[coll("TMPL", &[id, id])], 1)), "TOO_LARGE");
    }
}
