//! Translation history: which destination object each source object was installed as,
//! and when this service last wrote it. Stored as records in the installation store.
use serde::{Deserialize, Serialize};

use super::store::{Changes, Store, StoreError};

/// One source object's mapping into one destination environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

fn forward_key(dest: &str, source_env: &str, source_id: &str) -> Vec<u8> {
    format!("hist/{dest}\0{source_env}\0{source_id}").into_bytes()
}

fn reverse_key(dest: &str, target_id: &str) -> Vec<u8> {
    format!("histrev/{dest}\0{target_id}").into_bytes()
}

pub fn get(store: &Store, dest: &str, source_env: &str, source_id: &str) -> Result<Option<HistoryEntry>, StoreError> {
    store.get_record(&forward_key(dest, source_env, source_id))
}

/// The history entry whose target is `target_id`, if a promotion mapped one onto it.
pub fn by_target(store: &Store, dest: &str, target_id: &str) -> Result<Option<HistoryEntry>, StoreError> {
    store.get_record(&reverse_key(dest, target_id))
}

pub fn put(changes: &mut Changes, dest: &str, entry: &HistoryEntry) {
    changes.record(forward_key(dest, &entry.source_environment, &entry.source_id), entry);
    changes.record(reverse_key(dest, &entry.target_id), entry);
}

/// Removes `entry` (both directions).
pub fn remove(changes: &mut Changes, dest: &str, entry: &HistoryEntry) {
    changes.records.push((forward_key(dest, &entry.source_environment, &entry.source_id), None));
    changes.records.push((reverse_key(dest, &entry.target_id), None));
}
