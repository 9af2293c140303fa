//! The installation service's sled store and its key layout. Everything lives in one tree
//! so that one `Batch` (atomic on one tree) covers an object write, its indexes, the
//! environment revision, and the records written with it; every write is flushed before
//! it is acknowledged.
//!
//! Keys (`\0` separates parts; ids and codes never contain it):
//! - `E{env}` environment state (revision, counts)
//! - `O{env}\0{code}\0{id}` object; `D{env}\0{id}` id -> code
//! - `N{env}\0{code}\0{name}\0{id}` names; `C{env}\0{parent}\0{code}\0{id}` children
//! - `R{env}\0{target}\0{code}\0{id}` referrers
//! - `X{key}` records owned by other modules (history, installations, audit, ...)
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::shared::objects::{ConfigObject, ObjectKey};

pub use crate::shared::store_error::{Result, StoreError};

/// Revision and per-type counts of one environment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EnvState {
    pub revision: u64,
    pub counts: BTreeMap<String, i64>,
}

/// One atomic write into an environment.
#[derive(Debug, Default)]
pub struct Changes {
    /// Full new versions; revision and update time are set by the store.
    pub upserts: Vec<ConfigObject>,
    pub deletes: Vec<ObjectKey>,
    /// Earlier versions put back as they were, revision and write time included (rollback).
    pub restores: Vec<ConfigObject>,
    /// Records of other modules: key (without the `X` prefix) -> value, or None to delete.
    pub records: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.deletes.is_empty() && self.restores.is_empty() && self.records.is_empty()
    }

    pub fn record<T: Serialize>(&mut self, key: Vec<u8>, value: &T) {
        let bytes = serde_json::to_vec(value).expect("records serialise");
        self.records.push((key, Some(bytes)));
    }
}

/// What a write did: the new revision, and the stored objects.
#[derive(Debug, Default)]
pub struct Written {
    pub revision: u64,
    pub objects: Vec<ConfigObject>,
}

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
}

fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 1 {
            out.push(0);
        }
        out.extend_from_slice(p);
    }
    out
}

fn object_key(env: &str, code: &str, id: &str) -> Vec<u8> {
    key(&[b"O", env.as_bytes(), code.as_bytes(), id.as_bytes()])
}

fn id_key(env: &str, id: &str) -> Vec<u8> {
    key(&[b"D", env.as_bytes(), id.as_bytes()])
}

fn name_key(env: &str, o: &ConfigObject) -> Vec<u8> {
    key(&[b"N", env.as_bytes(), o.obj_code.as_bytes(), o.name.as_bytes(), o.id.as_bytes()])
}

fn child_key(env: &str, parent: &str, o: &ConfigObject) -> Vec<u8> {
    key(&[b"C", env.as_bytes(), parent.as_bytes(), o.obj_code.as_bytes(), o.id.as_bytes()])
}

fn referrer_key(env: &str, target: &str, o: &ConfigObject) -> Vec<u8> {
    key(&[b"R", env.as_bytes(), target.as_bytes(), o.obj_code.as_bytes(), o.id.as_bytes()])
}

/// The index entries an object version owns.
fn index_keys(env: &str, o: &ConfigObject) -> Vec<Vec<u8>> {
    let mut keys = vec![id_key(env, &o.id), name_key(env, o)];
    if let Some(p) = &o.parent {
        keys.push(child_key(env, &p.id, o));
    }
    for r in &o.references {
        keys.push(referrer_key(env, &r.id, o));
    }
    keys
}

/// Splits the last two `\0`-separated parts (code, id) off an index key.
fn tail_key(k: &[u8]) -> Option<ObjectKey> {
    let mut parts = k.rsplit(|b| *b == 0);
    let id = std::str::from_utf8(parts.next()?).ok()?;
    let code = std::str::from_utf8(parts.next()?).ok()?;
    Some(ObjectKey::new(code, id))
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store> {
        let db = sled::Config::new().path(dir.join("installation.sled")).cache_capacity(128 * 1024 * 1024).open()?;
        Ok(Store { db })
    }

    pub async fn flush(&self) -> Result<()> {
        self.db.flush_async().await?;
        Ok(())
    }

    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    pub fn env_state(&self, env: &str) -> Result<EnvState> {
        match self.db.get(key(&[b"E", env.as_bytes()]))? {
            Some(v) => Ok(serde_json::from_slice(&v)?),
            None => Ok(EnvState::default()),
        }
    }

    pub fn get(&self, env: &str, code: &str, id: &str) -> Result<Option<ConfigObject>> {
        match self.db.get(object_key(env, code, id))? {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        }
    }

    /// The object with this id, whatever its type.
    pub fn get_by_id(&self, env: &str, id: &str) -> Result<Option<ConfigObject>> {
        match self.db.get(id_key(env, id))? {
            Some(code) => self.get(env, std::str::from_utf8(&code).unwrap_or_default(), id),
            None => Ok(None),
        }
    }

    /// Whether `key` (a page token) belongs to a listing of `code` objects in `env`.
    pub fn is_list_key(&self, env: &str, code: &str, key: &[u8]) -> bool {
        key.starts_with(&self::key(&[b"O", env.as_bytes(), code.as_bytes(), b""]))
    }

    /// Objects of one type, in id order, starting after `after` (a key from a previous
    /// page). Returns the objects and the key of the last one.
    pub fn list(
        &self,
        env: &str,
        code: &str,
        after: Option<&[u8]>,
        mut keep: impl FnMut(&ConfigObject) -> bool,
        limit: usize,
    ) -> Result<(Vec<ConfigObject>, Option<Vec<u8>>)> {
        let prefix = key(&[b"O", env.as_bytes(), code.as_bytes(), b""]);
        let start = match after {
            Some(a) if a.starts_with(&prefix) => {
                let mut s = a.to_vec();
                s.push(0);
                s
            }
            Some(_) => return Err(StoreError("page token does not belong to this query".into())),
            None => prefix.clone(),
        };
        let mut out = Vec::new();
        for item in self.db.range(start..) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let o: ConfigObject = serde_json::from_slice(&v)?;
            if keep(&o) {
                out.push(o);
                if out.len() == limit {
                    return Ok((out, Some(k.to_vec())));
                }
            }
        }
        Ok((out, None))
    }

    /// Every object of one type (used by planning and benchmarks; bounded by the package).
    pub fn all_of_type(&self, env: &str, code: &str) -> Result<Vec<ConfigObject>> {
        let prefix = key(&[b"O", env.as_bytes(), code.as_bytes(), b""]);
        self.db.scan_prefix(prefix).map(|item| Ok(serde_json::from_slice(&item?.1)?)).collect()
    }

    /// Ids of the objects of `code` named exactly `name`.
    pub fn ids_named(&self, env: &str, code: &str, name: &str) -> Result<Vec<String>> {
        let prefix = key(&[b"N", env.as_bytes(), code.as_bytes(), name.as_bytes(), b""]);
        self.db.scan_prefix(prefix).map(|item| Ok(tail_key(&item?.0).map(|k| k.id).unwrap_or_default())).collect()
    }

    /// Owned children of `parent`.
    pub fn children(&self, env: &str, parent: &str) -> Result<Vec<ObjectKey>> {
        let prefix = key(&[b"C", env.as_bytes(), parent.as_bytes(), b""]);
        self.db
            .scan_prefix(prefix)
            .map(|item| Ok(tail_key(&item?.0).expect("index keys end with code and id")))
            .collect()
    }

    /// Objects holding a reference to `target`.
    pub fn referrers(&self, env: &str, target: &str) -> Result<Vec<ObjectKey>> {
        let prefix = key(&[b"R", env.as_bytes(), target.as_bytes(), b""]);
        self.db
            .scan_prefix(prefix)
            .map(|item| Ok(tail_key(&item?.0).expect("index keys end with code and id")))
            .collect()
    }

    pub fn get_record<T: for<'de> Deserialize<'de>>(&self, k: &[u8]) -> Result<Option<T>> {
        match self.db.get(key(&[b"X", k]))? {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        }
    }

    /// Records under a prefix, in key order (reversed for newest-first listings).
    pub fn scan_records(&self, prefix: &[u8], reverse: bool) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> {
        let full = key(&[b"X", prefix]);
        let iter = self.db.scan_prefix(full);
        let iter: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> =
            if reverse { Box::new(iter.rev()) } else { Box::new(iter) };
        iter.map(|item| {
            let (k, v) = item?;
            Ok((k[1..].to_vec(), v.to_vec()))
        })
    }

    /// Applies one atomic, durable write to `env`. The caller holds the environment's
    /// write lock, so the objects read here are the ones being replaced.
    pub async fn write(&self, env: &str, changes: Changes, now: DateTime<Utc>) -> Result<Written> {
        let (ops, written) = self.prepare(env, changes, now, true)?;
        let mut batch = sled::Batch::default();
        for (k, v) in ops {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        self.db.apply_batch(batch)?;
        self.flush().await?;
        Ok(written)
    }

    /// Applies a write too large for one batch in batches of [`LARGE_WRITE_BATCH_KEYS`]
    /// keys, then flushes. Not atomic: the caller must have made an undo record durable
    /// first, so that start-up recovery can put everything back after a crash (see
    /// `installer::recover`). sled pins every page a batch replaces until the batch ends,
    /// so one batch of 20,000 keys peaks near 3 GiB while 1,000-key batches stay near
    /// 250 MiB for a million keys.
    pub async fn write_in_batches(&self, env: &str, changes: Changes, now: DateTime<Utc>) -> Result<u64> {
        let (ops, written) = self.prepare(env, changes, now, false)?;
        for chunk in ops.chunks(LARGE_WRITE_BATCH_KEYS) {
            let mut batch = sled::Batch::default();
            for (k, v) in chunk {
                match v {
                    Some(v) => batch.insert(k.as_slice(), v.as_slice()),
                    None => batch.remove(k.as_slice()),
                }
            }
            self.db.apply_batch(batch)?;
        }
        self.flush().await?;
        Ok(written.revision)
    }

    /// How many keys a write of `changes` touches, roughly: enough to choose between one
    /// atomic batch and [`Store::write_in_batches`].
    pub fn estimated_keys(changes: &Changes) -> usize {
        let per_object = |o: &ConfigObject| 4 + o.references.len();
        changes.upserts.iter().chain(&changes.restores).map(per_object).sum::<usize>()
            + changes.deletes.len() * 5
            + changes.records.len()
    }

    /// Sets the environment's per-type counts from the objects it really holds (after
    /// recovery replayed an interrupted write), keeping its revision.
    pub async fn recount(&self, env: &str) -> Result<()> {
        let mut state = self.env_state(env)?;
        state.counts.clear();
        for item in self.db.scan_prefix(key(&[b"O", env.as_bytes(), b""])) {
            let (k, _) = item?;
            if let Some(obj) = tail_key(&k) {
                *state.counts.entry(obj.obj_code).or_default() += 1;
            }
        }
        self.db.insert(key(&[b"E", env.as_bytes()]), serde_json::to_vec(&state)?)?;
        self.flush().await
    }

    /// The ordered key operations of a write: the environment state first, then index
    /// removals before insertions (an index entry both removed and re-added must
    /// survive), then records.
    /// `keep_objects`: return the stored objects too (PutObjects answers with them).
    fn prepare(
        &self,
        env: &str,
        changes: Changes,
        now: DateTime<Utc>,
        keep_objects: bool,
    ) -> Result<(Vec<Op>, Written)> {
        let mut state = self.env_state(env)?;
        let mut removed: Vec<Vec<u8>> = Vec::new();
        let mut inserted: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let touches_objects =
            !changes.upserts.is_empty() || !changes.deletes.is_empty() || !changes.restores.is_empty();
        if touches_objects {
            state.revision += 1;
        }
        let mut count_delta: HashMap<String, i64> = HashMap::new();
        for k in &changes.deletes {
            if let Some(old) = self.get(env, &k.obj_code, &k.id)? {
                removed.push(object_key(env, &old.obj_code, &old.id));
                removed.extend(index_keys(env, &old));
                *count_delta.entry(old.obj_code.clone()).or_default() -= 1;
            }
        }
        let mut written = Vec::with_capacity(changes.upserts.len());
        let restores = changes.restores.into_iter().map(|o| (o, false));
        for (mut o, stamp) in changes.upserts.into_iter().map(|o| (o, true)).chain(restores) {
            match self.get(env, &o.obj_code, &o.id)? {
                Some(old) => removed.extend(index_keys(env, &old)),
                None => *count_delta.entry(o.obj_code.clone()).or_default() += 1,
            }
            if stamp {
                o.revision = state.revision;
                o.update_time = Some(now);
            }
            inserted.push((object_key(env, &o.obj_code, &o.id), serde_json::to_vec(&o)?));
            for ik in index_keys(env, &o) {
                let value = if ik[0] == b'D' { o.obj_code.as_bytes().to_vec() } else { Vec::new() };
                inserted.push((ik, value));
            }
            if keep_objects {
                written.push(o);
            }
        }
        for (code, delta) in count_delta {
            let c = state.counts.entry(code.clone()).or_default();
            *c += delta;
            if *c <= 0 {
                state.counts.remove(&code);
            }
        }
        let mut ops: Vec<Op> = Vec::with_capacity(removed.len() + inserted.len() + changes.records.len() + 1);
        if touches_objects {
            ops.push((key(&[b"E", env.as_bytes()]), Some(serde_json::to_vec(&state)?)));
        }
        ops.extend(removed.into_iter().map(|k| (k, None)));
        ops.extend(inserted.into_iter().map(|(k, v)| (k, Some(v))));
        ops.extend(changes.records.into_iter().map(|(k, v)| (key(&[b"X", &k]), v)));
        Ok((ops, Written { revision: state.revision, objects: written }))
    }
}

/// One key operation: insert a value, or remove the key.
type Op = (Vec<u8>, Option<Vec<u8>>);

/// Keys per batch in [`Store::write_in_batches`].
pub const LARGE_WRITE_BATCH_KEYS: usize = 1000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::objects::Reference;

    fn obj(code: &str, id: &str, name: &str) -> ConfigObject {
        ConfigObject {
            obj_code: code.into(),
            id: id.into(),
            name: name.into(),
            fields: Default::default(),
            parent: None,
            references: vec![],
            revision: 0,
            update_time: None,
        }
    }

    #[tokio::test]
    async fn writes_maintain_indexes_counts_and_revision() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let g = "a".repeat(32);
        let t = "b".repeat(32);
        let mut task = obj("TTSK", &t, "Kick-off");
        task.parent = Some(ObjectKey::new("TMPL", "c".repeat(32)));
        task.references.push(Reference {
            field: "group".into(),
            obj_code: "GROUP".into(),
            id: g.clone(),
            optional: false,
        });
        let changes = Changes { upserts: vec![obj("GROUP", &g, "Ops"), task], ..Default::default() };
        let w = store.write("dev", changes, Utc::now()).await.unwrap();
        assert_eq!(w.revision, 1);
        assert_eq!(store.ids_named("dev", "GROUP", "Ops").unwrap(), vec![g.clone()]);
        assert_eq!(store.referrers("dev", &g).unwrap(), vec![ObjectKey::new("TTSK", &t)]);
        assert_eq!(store.children("dev", &"c".repeat(32)).unwrap().len(), 1);
        assert_eq!(store.get_by_id("dev", &t).unwrap().unwrap().name, "Kick-off");

        // Renaming moves the name index; deleting removes every index entry.
        let changes = Changes {
            upserts: vec![obj("GROUP", &g, "Operations")],
            deletes: vec![ObjectKey::new("TTSK", &t)],
            ..Default::default()
        };
        let w = store.write("dev", changes, Utc::now()).await.unwrap();
        assert_eq!(w.revision, 2);
        assert!(store.ids_named("dev", "GROUP", "Ops").unwrap().is_empty());
        assert!(store.referrers("dev", &g).unwrap().is_empty());
        assert!(store.get_by_id("dev", &t).unwrap().is_none());
        let state = store.env_state("dev").unwrap();
        assert_eq!(state.counts.get("GROUP"), Some(&1));
        assert_eq!(state.counts.get("TTSK"), None);
        assert_eq!(store.env_state("qa").unwrap(), EnvState::default());
    }
}
