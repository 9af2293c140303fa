//! Packages as the service keeps them: the record, its status lifecycle, the validation of
//! what callers send, and the package area's error enum.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

use super::store::StoreError;
use crate::shared::auth::Permission;
use crate::shared::catalog::Catalog;
use crate::shared::objects::ObjectCollection;

pub const NAME_CHARS: std::ops::RangeInclusive<usize> = 5..=255;
pub const MAX_DESCRIPTION_CHARS: usize = 4_000;
/// Installation ids come from installation services; anything longer is not one of theirs.
pub const MAX_INSTALLATION_ID_CHARS: usize = 128;

/// The seed's package statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Extracting,
    Building,
    Preview,
    Public,
    Retired,
    ExtractionFailed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Extracting => "EXTRACTING",
            Status::Building => "BUILDING",
            Status::Preview => "PREVIEW",
            Status::Public => "PUBLIC",
            Status::Retired => "RETIRED",
            Status::ExtractionFailed => "EXTRACTION_FAILED",
        }
    }

    /// Whether a caller may move a package from `self` to `to`. Keeping the status is not
    /// a transition; EXTRACTING and EXTRACTION_FAILED are only ever set by the service.
    pub fn check_transition(self, to: Status) -> Result<(), PackageError> {
        use Status::*;
        let allowed = match (self, to) {
            (_, Extracting | ExtractionFailed) => false,
            (from, to) if from == to => true,
            (Building, Preview) | (Preview, Public) | (Public, Retired) => true,
            (Preview | Public | Retired, Building) => true,
            _ => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(PackageError::InvalidTransition { from: self, to })
        }
    }

    /// The definition may be replaced (re-extracted or given) only while being built or
    /// after a failed extraction.
    pub fn allows_redefinition(self) -> bool {
        matches!(self, Status::Building | Status::ExtractionFailed)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub install_order: Vec<String>,
    pub display_order: Vec<String>,
}

/// A package record. `version`, `digest`, `metadata`, `entity_counts` and `warnings`
/// describe the current definition; earlier versions live in the store unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Package {
    pub id: String,
    pub name: String,
    pub description: String,
    pub status: Status,
    pub version: i64,
    pub organization: String,
    pub source_environment: String,
    pub object_collections: Vec<ObjectCollection>,
    pub metadata: Metadata,
    pub entity_counts: BTreeMap<String, i64>,
    pub digest: String,
    pub installation_counts: BTreeMap<String, i64>,
    pub is_private: bool,
    pub create_time: DateTime<Utc>,
    pub created_by: String,
    pub update_time: DateTime<Utc>,
    pub publish_time: Option<DateTime<Utc>>,
    pub retire_time: Option<DateTime<Utc>>,
    pub failure_reason: String,
    pub warnings: Vec<String>,
    /// Incremented by every change of what callers edit or the lifecycle decides (not by
    /// installation counts); the etag is derived from it.
    pub revision: u64,
    /// Incremented by every write, installation counts included: orders watch updates.
    #[serde(default)]
    pub sequence: u64,
    /// Whether `version` has a stored definition (false until the first extraction ends).
    pub has_definition: bool,
    /// Identifies the extraction in flight, so a late or stale result is never applied.
    pub extraction: Option<String>,
}

impl Package {
    /// Opaque; changes with every edit, status change and new definition. Installation
    /// counts, which other services move at any time, leave it alone so that they never
    /// make a caller's update fail ABORTED.
    pub fn etag(&self) -> String {
        let digest = Sha256::digest(format!("{}/{}", self.id, self.revision));
        hex::encode(&digest[..10])
    }

    /// Marks a change: new revision (hence etag) and update time.
    pub fn touch(&mut self, now: DateTime<Utc>) {
        self.revision += 1;
        self.sequence += 1;
        self.update_time = now;
    }

    /// Counts one more successful installation into `environment`.
    pub fn count_installation(&mut self, environment: &str) {
        *self.installation_counts.entry(environment.to_string()).or_default() += 1;
        self.sequence += 1;
    }

    /// The version the next stored definition gets: the first one is version 1.
    pub fn next_version(&self) -> i64 {
        if self.has_definition {
            self.version + 1
        } else {
            self.version
        }
    }

    /// Moves to `to` (already checked), stamping publish and retire times.
    pub fn set_status(&mut self, to: Status, now: DateTime<Utc>) {
        if to != self.status {
            match to {
                Status::Public => self.publish_time = Some(now),
                Status::Retired => self.retire_time = Some(now),
                _ => {}
            }
        }
        self.status = to;
    }

    /// Starts a new extraction of `roots`: EXTRACTING with a fresh attempt id.
    pub fn start_extraction(&mut self, roots: Vec<ObjectCollection>) -> String {
        let attempt = uuid::Uuid::new_v4().to_string();
        self.object_collections = roots;
        self.status = Status::Extracting;
        self.failure_reason.clear();
        self.extraction = Some(attempt.clone());
        attempt
    }

    /// Whether the extraction `attempt` is still the one this package waits for.
    pub fn awaits(&self, attempt: &str) -> bool {
        self.status == Status::Extracting && self.extraction.as_deref() == Some(attempt)
    }
}

/// Errors of the package area; the gRPC layer maps each to one code and reason.
#[derive(Debug)]
pub enum PackageError {
    /// Malformed input, whatever the state (INVALID_ARGUMENT).
    Invalid {
        reason: &'static str,
        field: String,
        message: String,
    },
    NotFound(String),
    VersionNotFound {
        id: String,
        version: i64,
    },
    EnvironmentNotFound(String),
    /// The caller lacks `permission` on `environment` (already audited).
    PermissionDenied {
        permission: Permission,
        environment: String,
    },
    /// The package has no stored definition yet.
    DefinitionNotReady {
        id: String,
        status: Status,
    },
    InvalidTransition {
        from: Status,
        to: Status,
    },
    /// The definition can only change in BUILDING or EXTRACTION_FAILED.
    NotEditable {
        id: String,
        status: Status,
    },
    EtagMismatch {
        id: String,
        given: String,
    },
    TooLarge {
        field: String,
        message: String,
    },
    Store(StoreError),
}

impl From<StoreError> for PackageError {
    fn from(e: StoreError) -> Self {
        PackageError::Store(e)
    }
}

impl std::fmt::Display for PackageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PackageError::Invalid { message, .. } | PackageError::TooLarge { message, .. } => f.write_str(message),
            PackageError::NotFound(id) => write!(f, "package {id:?} not found"),
            PackageError::VersionNotFound { id, version } => write!(f, "package {id} has no version {version}"),
            PackageError::EnvironmentNotFound(id) => write!(f, "environment {id:?} not found"),
            PackageError::PermissionDenied { permission, environment } => {
                write!(f, "the caller lacks {} on environment {environment}", permission.as_str())
            }
            PackageError::DefinitionNotReady { id, status } => {
                write!(f, "package {id} has no definition yet (status {})", status.as_str())
            }
            PackageError::InvalidTransition { from, to } => {
                write!(f, "a package cannot go from {} to {}", from.as_str(), to.as_str())
            }
            PackageError::NotEditable { id, status } => write!(
                f,
                "the definition of package {id} can only change in BUILDING or EXTRACTION_FAILED, not {}",
                status.as_str()
            ),
            PackageError::EtagMismatch { id, given } => {
                write!(f, "etag {given:?} is stale: package {id} changed since it was read")
            }
            PackageError::Store(e) => write!(f, "{e}"),
        }
    }
}

pub fn invalid(reason: &'static str, field: impl Into<String>, message: impl Into<String>) -> PackageError {
    PackageError::Invalid { reason, field: field.into(), message: message.into() }
}

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
    use crate::installation::environments::{validate_roots, EnvError};
    validate_roots(catalog, roots).map_err(|e| match e {
        EnvError::Invalid { reason, field, message } => PackageError::Invalid { reason, field, message },
        other => invalid("INVALID_OBJECT_COLLECTIONS", "object_collections", other.to_string()),
    })?;
    let total: usize = roots.iter().map(|c| c.entities.len()).sum();
    if total > max_objects {
        return Err(PackageError::TooLarge {
            field: "object_collections".into(),
            message: format!("{total} roots requested; a package holds at most {max_objects} objects"),
        });
    }
    Ok(())
}

pub fn validate_installation_id(id: &str) -> Result<(), PackageError> {
    let chars = id.chars().count();
    if id.trim().is_empty() || chars > MAX_INSTALLATION_ID_CHARS || id.chars().any(char::is_control) {
        return Err(invalid(
            "INVALID_INSTALLATION_ID",
            "installation_id",
            format!("installation_id must be 1..{MAX_INSTALLATION_ID_CHARS} printable characters"),
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
    use crate::shared::catalog::workfront;
    use crate::shared::objects::EntityRef;

    const ALL: [Status; 6] = [
        Status::Extracting,
        Status::Building,
        Status::Preview,
        Status::Public,
        Status::Retired,
        Status::ExtractionFailed,
    ];

    #[test]
    fn only_the_brief_transitions_are_allowed() {
        use Status::*;
        let allowed = [
            (Building, Preview),
            (Preview, Public),
            (Public, Retired),
            (Preview, Building),
            (Public, Building),
            (Retired, Building),
        ];
        for from in ALL {
            for to in ALL {
                let expected =
                    allowed.contains(&(from, to)) || (from == to && !matches!(to, Extracting | ExtractionFailed));
                assert_eq!(from.check_transition(to).is_ok(), expected, "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn only_building_and_failed_packages_take_a_new_definition() {
        let editable: Vec<_> = ALL.into_iter().filter(|s| s.allows_redefinition()).collect();
        assert_eq!(editable, vec![Status::Building, Status::ExtractionFailed]);
    }

    fn package() -> Package {
        let now = Utc::now();
        Package {
            id: uuid::Uuid::now_v7().to_string(),
            name: "Agency Onboarding".into(),
            description: String::new(),
            status: Status::Building,
            version: 1,
            organization: "acme".into(),
            source_environment: "dev".into(),
            object_collections: vec![],
            metadata: Metadata::default(),
            entity_counts: BTreeMap::new(),
            digest: String::new(),
            installation_counts: BTreeMap::new(),
            is_private: false,
            create_time: now,
            created_by: "alice".into(),
            update_time: now,
            publish_time: None,
            retire_time: None,
            failure_reason: String::new(),
            warnings: vec![],
            revision: 1,
            sequence: 1,
            has_definition: false,
            extraction: None,
        }
    }

    #[test]
    fn etags_change_with_every_edit_but_not_with_installation_counts() {
        let mut p = package();
        let before = p.etag();
        assert_eq!(p.next_version(), 1);
        p.touch(Utc::now());
        assert_ne!(p.etag(), before);
        p.has_definition = true;
        assert_eq!(p.next_version(), 2);
        let (etag, sequence) = (p.etag(), p.sequence);
        p.count_installation("qa");
        assert_eq!((p.etag(), p.sequence, p.installation_counts["qa"]), (etag, sequence + 1, 1));
    }

    #[test]
    fn publishing_and_retiring_stamp_their_times() {
        let mut p = package();
        let now = Utc::now();
        p.set_status(Status::Preview, now);
        assert!(p.publish_time.is_none());
        p.set_status(Status::Public, now);
        assert_eq!(p.publish_time, Some(now));
        p.set_status(Status::Retired, now);
        assert_eq!(p.retire_time, Some(now));
    }

    #[test]
    fn stale_extraction_attempts_are_recognised() {
        let mut p = package();
        let first = p.start_extraction(vec![]);
        assert!(p.awaits(&first));
        let second = p.start_extraction(vec![]);
        assert!(!p.awaits(&first) && p.awaits(&second));
        p.status = Status::Building;
        assert!(!p.awaits(&second));
    }

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
        assert!(validate_installation_id("0191d2a4-inst").is_ok());
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
