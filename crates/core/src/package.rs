//! Packages as the package service keeps them: the record and its status lifecycle.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

use crate::objects::ObjectCollection;

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
    /// The lifecycle's allowed moves; EXTRACTING and EXTRACTION_FAILED are set by the
    /// service only.
    pub fn can_become(self, to: Status) -> bool {
        use Status::*;
        match (self, to) {
            (_, Extracting | ExtractionFailed) => false,
            (from, to) if from == to => true,
            (Building, Preview) | (Preview, Public) | (Public, Retired) => true,
            (Preview | Public | Retired, Building) => true,
            _ => false,
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
#[cfg(test)]
mod tests {
    use super::*;

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
                assert_eq!(from.can_become(to), expected, "{from:?} -> {to:?}");
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
}

/// What describes one stored version of a definition: the first message of its stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DefinitionHeader {
    pub package_id: String,
    pub version: i64,
    pub digest: String,
    pub metadata: Metadata,
    pub entity_counts: BTreeMap<String, i64>,
    pub source_environment: String,
    pub organization: String,
    pub entity_total: i64,
}

/// One stream message of a stored definition's entities, bounded in size when built.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DefinitionChunk {
    pub objects: Vec<crate::objects::ConfigObject>,
    pub external_references: Vec<crate::objects::ExternalReference>,
}

/// A RecordInstallation report as the package service keeps it, once per installation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedInstallation {
    pub package_id: String,
    pub installation_id: String,
    pub destination_environment: String,
    pub package_version: i64,
    pub recorded_by: String,
    pub time: DateTime<Utc>,
}
