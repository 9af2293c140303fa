//! Plans: what a pre-run decided for every package object (action, match, collision,
//! field changes, validity), and the overrides a caller may apply to one.
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    Create,
    UseExisting,
    Overwriting,
    Ignore,
    CreateWithAltName,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Create => "CREATE",
            Action::UseExisting => "USEEXISTING",
            Action::Overwriting => "OVERWRITING",
            Action::Ignore => "IGNORE",
            Action::CreateWithAltName => "CREATEWITHALTNAME",
        }
    }

    pub fn creates(self) -> bool {
        matches!(self, Action::Create | Action::CreateWithAltName)
    }

    pub fn writes(self) -> bool {
        self.creates() || self == Action::Overwriting
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchKind {
    None,
    History,
    Id,
    Name,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Collision {
    None,
    LocallyModified,
    IdMatch,
    NameMatch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    pub path: String,
    pub before: Value,
    pub after: Value,
}

/// The plan for one package object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub obj_code: String,
    pub source_id: String,
    pub name: String,
    pub action: Action,
    pub is_valid: bool,
    pub target_id: String,
    pub matched_by: MatchKind,
    pub collision: Collision,
    pub changes: Vec<FieldChange>,
    pub reason: String,
    pub alt_name: String,
    pub candidate_ids: Vec<String>,
    /// Revision of the matched target when planned; a different one at install time
    /// makes the plan stale.
    pub observed_revision: Option<u64>,
}

/// A whole pre-run: entries in install order (types by rank, parents before children).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub entries: Vec<Entry>,
    /// External references: source id -> destination id when resolved.
    pub externals: BTreeMap<String, Option<String>>,
}

/// A caller's change to one entry.
#[derive(Debug, Clone, Default)]
pub struct Override {
    pub obj_code: String,
    pub source_id: String,
    pub action: Option<Action>,
    pub target_id: String,
    pub alt_name: String,
}

impl Plan {
    pub fn summary(&self) -> BTreeMap<String, i64> {
        let mut summary = BTreeMap::new();
        for e in &self.entries {
            *summary.entry(e.action.name().to_string()).or_insert(0) += 1;
            if !e.is_valid {
                *summary.entry("INVALID".to_string()).or_insert(0) += 1;
            }
        }
        summary
    }

    pub fn invalid_entries(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| !e.is_valid)
            .map(|e| format!("{}:{} ({})", e.obj_code, e.source_id, e.reason))
            .collect()
    }

    /// Source id -> destination id for every entry that has one.
    pub fn targets(&self) -> HashMap<&str, &str> {
        let mut map: HashMap<&str, &str> = HashMap::new();
        for e in &self.entries {
            let ignored_unmatched = e.action == Action::Ignore && e.matched_by == MatchKind::None;
            if !e.target_id.is_empty() && !ignored_unmatched {
                map.insert(&e.source_id, &e.target_id);
            }
        }
        for (src, target) in &self.externals {
            if let Some(t) = target {
                map.insert(src, t);
            }
        }
        map
    }
}
