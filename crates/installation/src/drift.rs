//! Drift reports (GetDrift): for every object installations wrote into an environment, or
//! adopted while it held the package's content, whether it is unchanged since, edited
//! locally (with the field changes, references given as the source's ids), or deleted.
use std::collections::HashMap;

use crate::plan::{diff, FieldChange};
use promotion_core::cursor::{Page, PageRequest};
use promotion_core::objects::{ConfigObject, ObjectKey, Reference};
use promotion_core::records::HistoryEntry;
use promotion_store::{InstallationStore, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftState {
    Unchanged,
    /// Edited in the environment since an installation last wrote it.
    LocallyModified,
    Deleted,
}

/// Where one installed object stands now.
#[derive(Debug, Clone)]
pub struct DriftEntry {
    /// The translation history entry that tracks it (without its image).
    pub history: HistoryEntry,
    /// Its name now, or as installed when it is gone.
    pub name: String,
    pub state: DriftState,
    /// Its revision now; 0 when deleted.
    pub current_revision: u64,
    /// Before: as installed; after: now. Ids of objects that came from the source are
    /// the source's ids, so that they read like the package.
    pub changes: Vec<FieldChange>,
}

impl DriftEntry {
    pub fn drifted(&self) -> bool {
        self.state != DriftState::Unchanged
    }
}

/// One page of the drift of `env`, in (source environment, source id) order. A page may
/// hold fewer entries than asked for: history entries of objects no installation ever
/// wrote (registered while keeping content of their own) are not part of the report.
pub async fn drift(
    store: &dyn InstallationStore,
    env: &str,
    page: &PageRequest,
) -> Result<Page<DriftEntry>, StoreError> {
    let history = store.list_history(env, page).await?;
    let mut to_source = SourceIds::default();
    let mut items = Vec::with_capacity(history.items.len());
    for h in history.items {
        if h.written_revision == 0 {
            continue;
        }
        items.push(entry(store, env, h, &mut to_source).await?);
    }
    Ok(Page { items, next: history.next })
}

async fn entry(
    store: &dyn InstallationStore,
    env: &str,
    mut h: HistoryEntry,
    to_source: &mut SourceIds,
) -> Result<DriftEntry, StoreError> {
    let installed = h.installed.take();
    let now = store.get(env, &ObjectKey::new(&h.obj_code, &h.target_id)).await?;
    let Some(now) = now else {
        let name = installed.map(|o| o.name).unwrap_or_default();
        return Ok(DriftEntry { history: h, name, state: DriftState::Deleted, current_revision: 0, changes: vec![] });
    };
    let changes = match &installed {
        _ if now.revision == h.written_revision => Vec::new(),
        Some(before) => {
            let before = to_source.translate(store, env, before).await?;
            let after = to_source.translate(store, env, &now).await?;
            diff(&before, &after, &HashMap::new())
        }
        None => Vec::new(),
    };
    // Without an image (an entry recorded before images were kept) a new revision is all
    // that is known: it is reported as an edit without its changes.
    let edited = !changes.is_empty() || (installed.is_none() && now.revision != h.written_revision);
    let state = if edited { DriftState::LocallyModified } else { DriftState::Unchanged };
    Ok(DriftEntry { history: h, name: now.name, state, current_revision: now.revision, changes })
}

/// Destination id -> the source id a promotion mapped onto it, looked up once per page.
#[derive(Default)]
struct SourceIds(HashMap<String, String>);

impl SourceIds {
    async fn source_id(&mut self, store: &dyn InstallationStore, env: &str, id: &str) -> Result<String, StoreError> {
        if let Some(s) = self.0.get(id) {
            return Ok(s.clone());
        }
        // An object no promotion brought keeps its own id: it has no other.
        let source = store.history_by_target(env, id).await?.map_or_else(|| id.to_string(), |h| h.source_id);
        self.0.insert(id.to_string(), source.clone());
        Ok(source)
    }

    /// `o` with its parent and references named by source ids.
    async fn translate(
        &mut self,
        store: &dyn InstallationStore,
        env: &str,
        o: &ConfigObject,
    ) -> Result<ConfigObject, StoreError> {
        let mut out = o.clone();
        if let Some(p) = out.parent.as_mut() {
            p.id = self.source_id(store, env, &p.id).await?;
        }
        let mut references = Vec::with_capacity(o.references.len());
        for r in &o.references {
            references.push(Reference { id: self.source_id(store, env, &r.id).await?, ..r.clone() });
        }
        out.references = references;
        Ok(out)
    }
}
