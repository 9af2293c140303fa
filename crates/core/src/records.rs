//! The stored shapes of the installation service's records: pre-runs, installations with
//! their per-entry outcomes and undo data, translation history, and the installation-count
//! outbox.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::objects::{ConfigObject, ObjectKey};
use crate::plan::Plan;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreRunRecord {
    pub id: String,
    pub organization: String,
    pub package_id: String,
    pub package_version: i64,
    pub package_digest: String,
    pub source_environment: String,
    pub destination: String,
    pub destination_revision: u64,
    pub create_time: DateTime<Utc>,
    pub expire_time: DateTime<Utc>,
    pub created_by: String,
    /// Stored apart from the header, one record per entry (see [`save_plan`]).
    #[serde(skip)]
    pub plan: Plan,
    #[serde(default)]
    pub summary: BTreeMap<String, i64>,
    #[serde(default)]
    pub entry_count: usize,
    /// Every entry valid: installable as planned.
    #[serde(default)]
    pub ready: bool,
}

impl PreRunRecord {
    /// READY when every entry is valid; otherwise the plan needs overrides.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Fills the header fields that summarise the plan.
    pub fn summarise(&mut self) {
        self.summary = self.plan.summary();
        self.entry_count = self.plan.entries.len();
        self.ready = self.plan.entries.iter().all(|e| e.is_valid);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstallationStatus {
    Installing,
    Installed,
    Failed,
    /// A large rollback being applied in batches; recovery finishes it.
    RollingBack,
    RolledBack,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstallationRecord {
    pub id: String,
    pub organization: String,
    pub package_id: String,
    pub package_version: i64,
    pub source_environment: String,
    pub destination: String,
    pub pre_run_id: String,
    pub status: InstallationStatus,
    /// Stored apart from the header, one record per entry; loaded by [`Self::load`].
    #[serde(skip)]
    pub plan: Plan,
    /// Per entry of `plan`, once applied.
    #[serde(skip)]
    pub statuses: Vec<EntryStatus>,
    #[serde(default)]
    pub summary: BTreeMap<String, i64>,
    #[serde(default)]
    pub entry_count: usize,
    pub create_time: DateTime<Utc>,
    pub finish_time: Option<DateTime<Utc>>,
    pub created_by: String,
    pub failure_reason: String,
    pub prune_children: bool,
    pub destination_revision: u64,
    pub rollback_time: Option<DateTime<Utc>>,
    pub rolled_back_by: String,
    /// The promotion request whose acceptance made this installation, if any: a rollback
    /// tells it.
    #[serde(default)]
    pub promotion_request_id: String,
}

impl InstallationRecord {
    /// Fills the header fields that summarise the plan; a header loaded without its plan
    /// keeps the summary it was saved with.
    pub fn summarise(&mut self) {
        if !self.plan.entries.is_empty() {
            self.summary = self.plan.summary();
            self.entry_count = self.plan.entries.len();
        }
    }

    /// Makes the per-entry outcomes say where they stand: the stored ones say what the
    /// installation did, and once it is rolled back what it installed or registered is
    /// undone. Applied when read rather than rewritten by the rollback, so that rolling
    /// back a 100,000-entry installation need not store its plan again.
    pub fn reflect_rollback(&mut self) {
        if self.status == InstallationStatus::RolledBack {
            self.statuses.iter_mut().for_each(|s| *s = s.after_rollback());
        }
    }
}

/// Per-entry outcome recorded on the installation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryStatus {
    Installed,
    Registered,
    Skipped,
    Failed,
    /// Never stored: what an installed or registered entry reports after a rollback.
    RolledBack,
}

impl EntryStatus {
    /// A rollback restores what an entry wrote and the translation history it registered;
    /// skipped and failed entries changed nothing.
    pub fn after_rollback(self) -> EntryStatus {
        match self {
            EntryStatus::Installed | EntryStatus::Registered => EntryStatus::RolledBack,
            s => s,
        }
    }
}

/// One destination object an installation wrote or pruned, as it was before.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UndoObject {
    pub key: ObjectKey,
    /// None: the installation created it.
    pub before: Option<ConfigObject>,
    /// The installation deleted it (prune_children).
    pub pruned: bool,
}

/// Everything an installation changed, so that a rollback can undo it exactly.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Undo {
    pub objects: Vec<UndoObject>,
    /// History entries before and after the installation.
    pub history: Vec<(Option<HistoryEntry>, HistoryEntry)>,
}

/// One source object's mapping into one destination environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub source_environment: String,
    pub source_id: String,
    pub obj_code: String,
    pub target_id: String,
    /// The target's revision right after this service last wrote or registered it; a
    /// different revision now means someone edited it locally since. 0 when it was only
    /// registered while holding content of its own (never written from this source).
    pub written_revision: u64,
    /// The target was created by a promotion (prune_children may delete it).
    pub created_by_promotion: bool,
    pub installation_id: String,
    /// The target as this service last wrote it (or found it holding the package's
    /// content when it registered it), at `written_revision`: what a drift report compares
    /// the target with now. None when it never held the package's content, and in entries
    /// recorded before images were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed: Option<ConfigObject>,
}

impl HistoryEntry {
    /// The entry without its image: what indexes and undo records need to find it.
    pub fn without_image(&self) -> HistoryEntry {
        HistoryEntry { installed: None, ..self.clone() }
    }
}

/// A RecordInstallation call still to be delivered to the package service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub installation_id: String,
    pub package_id: String,
    pub package_version: i64,
    pub destination: String,
}
