//! Pre-run and installation records, their keys in the installation store, and the
//! outbox entries that carry installation counts to the package service.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use super::apply::{EntryStatus, Undo, UndoObject};
use super::history::HistoryEntry;
use super::plan::{Entry, Plan};
use super::store::{Changes, Store, StoreError};

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
    pub fn key(id: &str) -> Vec<u8> {
        format!("prerun/{id}").into_bytes()
    }

    /// READY when every entry is valid; otherwise the plan needs overrides.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// The header and every entry of the plan.
    pub fn save(&mut self, changes: &mut Changes) {
        self.summary = self.plan.summary();
        self.entry_count = self.plan.entries.len();
        self.ready = self.plan.entries.iter().all(|e| e.is_valid);
        changes.record(Self::key(&self.id), &*self);
        save_plan(changes, "prerun", &self.id, &self.plan, &[]);
    }

    pub fn load(store: &Store, id: &str) -> Result<Option<PreRunRecord>, StoreError> {
        let Some(mut r) = store.get_record::<PreRunRecord>(&Self::key(id))? else { return Ok(None) };
        r.plan = load_plan(store, "prerun", id)?.0;
        Ok(Some(r))
    }
}

/// Plans are stored apart from their header in records of [`CHUNK`] entries: one value
/// per plan would be rewritten whole whenever the same batch touched a neighbouring key,
/// and one record per entry multiplies the keys the store keeps in memory.
const CHUNK: usize = 512;

fn save_plan(changes: &mut Changes, kind: &str, id: &str, plan: &Plan, statuses: &[EntryStatus]) {
    changes.record(format!("plan/{kind}/{id}/x").into_bytes(), &plan.externals);
    for (n, entries) in plan.entries.chunks(CHUNK).enumerate() {
        let chunk: Vec<(&Entry, Option<&EntryStatus>)> =
            entries.iter().enumerate().map(|(i, e)| (e, statuses.get(n * CHUNK + i))).collect();
        changes.record(format!("plan/{kind}/{id}/e/{n:08}").into_bytes(), &chunk);
    }
}

fn load_plan(store: &Store, kind: &str, id: &str) -> Result<(Plan, Vec<EntryStatus>), StoreError> {
    let externals = store.get_record(format!("plan/{kind}/{id}/x").as_bytes())?.unwrap_or_default();
    let mut plan = Plan { externals, ..Default::default() };
    let mut statuses = Vec::new();
    for item in store.scan_records(format!("plan/{kind}/{id}/e/").as_bytes(), false) {
        let (_, v) = item?;
        let chunk: Vec<(Entry, Option<EntryStatus>)> = serde_json::from_slice(&v)?;
        for (entry, status) in chunk {
            plan.entries.push(entry);
            statuses.extend(status);
        }
    }
    Ok((plan, statuses))
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
}

impl InstallationRecord {
    /// Installation ids are UUID v7, so key order is creation order.
    pub fn key(id: &str) -> Vec<u8> {
        format!("inst/{id}").into_bytes()
    }

    /// The header only: status changes rewrite this small record.
    pub fn save_header(&mut self, changes: &mut Changes) {
        // A header loaded without its plan keeps the summary it was saved with.
        if !self.plan.entries.is_empty() {
            self.summary = self.plan.summary();
            self.entry_count = self.plan.entries.len();
        }
        changes.record(Self::key(&self.id), &*self);
    }

    /// The header, every entry with its outcome, and the data a rollback needs.
    pub fn save(&mut self, changes: &mut Changes, undo: &Undo) {
        self.save_header(changes);
        save_plan(changes, "installation", &self.id, &self.plan, &self.statuses);
        for (n, objects) in undo.objects.chunks(CHUNK).enumerate() {
            changes.record(format!("undo/{}/o/{n:08}", self.id).into_bytes(), &objects);
        }
        for (n, history) in undo.history.chunks(CHUNK).enumerate() {
            changes.record(format!("undo/{}/h/{n:08}", self.id).into_bytes(), &history);
        }
    }

    /// The header, with the plan and outcomes when `with_plan`.
    pub fn load(store: &Store, id: &str, with_plan: bool) -> Result<Option<InstallationRecord>, StoreError> {
        let Some(mut r) = store.get_record::<InstallationRecord>(&Self::key(id))? else { return Ok(None) };
        if with_plan {
            (r.plan, r.statuses) = load_plan(store, "installation", id)?;
        }
        Ok(Some(r))
    }

    pub fn load_undo(store: &Store, id: &str) -> Result<Undo, StoreError> {
        let mut undo = Undo::default();
        for item in store.scan_records(format!("undo/{id}/o/").as_bytes(), false) {
            undo.objects.extend(serde_json::from_slice::<Vec<UndoObject>>(&item?.1)?);
        }
        for item in store.scan_records(format!("undo/{id}/h/").as_bytes(), false) {
            undo.history.extend(serde_json::from_slice::<Vec<(Option<HistoryEntry>, HistoryEntry)>>(&item?.1)?);
        }
        Ok(undo)
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
