//! Pre-run and installation records, their keys in the installation store, and the
//! outbox entries that carry installation counts to the package service.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::apply::EntryStatus;
use super::plan::Plan;

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
    pub plan: Plan,
}

impl PreRunRecord {
    pub fn key(id: &str) -> Vec<u8> {
        format!("prerun/{id}").into_bytes()
    }

    /// READY when every entry is valid; otherwise the plan needs overrides.
    pub fn is_ready(&self) -> bool {
        self.plan.entries.iter().all(|e| e.is_valid)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstallationStatus {
    Installing,
    Installed,
    Failed,
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
    pub plan: Plan,
    /// Per entry of `plan`, once applied.
    pub statuses: Vec<EntryStatus>,
    pub create_time: DateTime<Utc>,
    pub finish_time: Option<DateTime<Utc>>,
    pub created_by: String,
    pub failure_reason: String,
    pub prune_children: bool,
    pub destination_revision: u64,
    pub rollback_time: Option<DateTime<Utc>>,
    pub rolled_back_by: String,
}

impl InstallationRecord {
    /// Installation ids are UUID v7, so key order is creation order.
    pub fn key(id: &str) -> Vec<u8> {
        format!("inst/{id}").into_bytes()
    }

    pub fn undo_key(id: &str) -> Vec<u8> {
        format!("undo/{id}").into_bytes()
    }
}

pub const INSTALLATION_PREFIX: &[u8] = b"inst/";

/// A RecordInstallation call still to be delivered to the package service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub installation_id: String,
    pub package_id: String,
    pub package_version: i64,
    pub destination: String,
}

pub const OUTBOX_PREFIX: &[u8] = b"outbox/";

impl OutboxEntry {
    pub fn key(&self) -> Vec<u8> {
        format!("outbox/{}", self.installation_id).into_bytes()
    }
}

/// Remembers the response of a create call with a request id, per caller.
pub fn request_key(kind: &str, caller: &str, request_id: &str) -> Vec<u8> {
    format!("req/{kind}/{caller}\0{request_id}").into_bytes()
}
