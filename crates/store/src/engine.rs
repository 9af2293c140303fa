//! The ordered key-value engines the stores run on: sled on disk, a BTreeMap in memory
//! (both owned by one process), and a PostgreSQL table (`pg_engine`, shared by replicas).
//! Each applies a batch atomically; sled makes it durable on `flush`.
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, RwLock};

use crate::error::Result;

/// One key operation: insert a value, or remove the key.
pub type Op = (Vec<u8>, Option<Vec<u8>>);
/// A key and its value.
pub type Pair = (Vec<u8>, Vec<u8>);
/// Pairs in key order (or reversed).
pub type Pairs<'a> = Box<dyn Iterator<Item = Result<Pair>> + 'a>;

/// A lock that other processes sharing the engine honour too (a row lock held by an open
/// database transaction). Writes applied through it commit as the lock is released;
/// dropping it unapplied releases it and writes nothing.
pub trait Held: Send + Sync {
    /// Applies every operation or none, durably, and releases the lock.
    fn apply(self: Box<Self>, ops: Vec<Op>) -> Result<()>;
}

#[async_trait]
pub trait Engine: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// The values of those of `keys` that exist, in one round trip where the engine is
    /// remote.
    fn get_many(&self, keys: Vec<Vec<u8>>) -> Result<HashMap<Vec<u8>, Vec<u8>>> {
        let mut found = HashMap::with_capacity(keys.len());
        for k in keys {
            if let Some(v) = self.get(&k)? {
                found.insert(k, v);
            }
        }
        Ok(found)
    }
    /// Pairs with keys in `[start, end)` (or from `start` on), in key order or reversed.
    fn range(&self, start: &[u8], end: Option<&[u8]>, reverse: bool) -> Box<dyn Iterator<Item = Result<Pair>> + '_>;
    /// Applies every operation or none.
    fn apply(&self, ops: Vec<Op>) -> Result<()>;
    /// Makes every applied batch durable.
    fn flush(&self) -> Result<()>;
    fn size_on_disk(&self) -> u64;
    /// Takes the lock named `name` across every process sharing the engine. None where one
    /// process owns the engine: its in-process locks (`locks`) already serialise writers.
    async fn hold(&self, _name: &[u8]) -> Result<Option<Box<dyn Held>>> {
        Ok(None)
    }
    /// Whether one `apply` is atomic and affordable however large (a database transaction);
    /// otherwise large commits go through the journal in small batches.
    fn unbounded_batches(&self) -> bool {
        false
    }
}

/// The smallest key greater than every key starting with `prefix`, if any.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Every pair under `prefix`, in key order or reversed.
pub fn scan_prefix<'a>(e: &'a dyn Engine, prefix: &[u8], reverse: bool) -> Box<dyn Iterator<Item = Result<Pair>> + 'a> {
    let end = prefix_end(prefix);
    e.range(prefix, end.as_deref(), reverse)
}

pub struct SledEngine {
    db: sled::Db,
}

impl SledEngine {
    /// Opens (or creates) the database at `path`. sled's page cache is bounded by
    /// `cache_bytes`; one process per directory.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<SledEngine> {
        let db = sled::Config::new().path(path).cache_capacity(cache_bytes).open()?;
        Ok(SledEngine { db })
    }
}

impl Engine for SledEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get(key)?.map(|v| v.to_vec()))
    }

    fn range(&self, start: &[u8], end: Option<&[u8]>, reverse: bool) -> Box<dyn Iterator<Item = Result<Pair>> + '_> {
        let iter = match end {
            Some(end) if end <= start => return Box::new(std::iter::empty()),
            Some(end) => self.db.range(start.to_vec()..end.to_vec()),
            None => self.db.range(start.to_vec()..),
        };
        let map = |item: sled::Result<(sled::IVec, sled::IVec)>| -> Result<Pair> {
            let (k, v) = item?;
            Ok((k.to_vec(), v.to_vec()))
        };
        if reverse {
            Box::new(iter.rev().map(map))
        } else {
            Box::new(iter.map(map))
        }
    }

    fn apply(&self, ops: Vec<Op>) -> Result<()> {
        let mut batch = sled::Batch::default();
        for (k, v) in ops {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        self.db.apply_batch(batch)?;
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

/// An engine in memory, for domain tests: the same semantics, nothing on disk.
#[derive(Default, Clone)]
pub struct MemoryEngine {
    map: Arc<RwLock<BTreeMap<Vec<u8>, Vec<u8>>>>,
}

impl Engine for MemoryEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.map.read().expect("memory engine lock").get(key).cloned())
    }

    fn range(&self, start: &[u8], end: Option<&[u8]>, reverse: bool) -> Box<dyn Iterator<Item = Result<Pair>> + '_> {
        let map = self.map.read().expect("memory engine lock");
        let upper = match end {
            Some(end) if end <= start => return Box::new(std::iter::empty()),
            Some(end) => Bound::Excluded(end.to_vec()),
            None => Bound::Unbounded,
        };
        // A snapshot: the caller may write while iterating.
        let mut pairs: Vec<Pair> =
            map.range((Bound::Included(start.to_vec()), upper)).map(|(k, v)| (k.clone(), v.clone())).collect();
        if reverse {
            pairs.reverse();
        }
        Box::new(pairs.into_iter().map(Ok))
    }

    fn apply(&self, ops: Vec<Op>) -> Result<()> {
        let mut map = self.map.write().expect("memory engine lock");
        for (k, v) in ops {
            match v {
                Some(v) => map.insert(k, v),
                None => map.remove(&k),
            };
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn size_on_disk(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engines() -> (tempfile::TempDir, Vec<Box<dyn Engine>>) {
        let dir = tempfile::tempdir().unwrap();
        let sled = SledEngine::open(&dir.path().join("db"), 8 << 20).unwrap();
        (dir, vec![Box::new(sled), Box::new(MemoryEngine::default())])
    }

    #[test]
    fn ranges_and_prefixes_agree_on_both_engines() {
        let (_dir, engines) = engines();
        for e in engines {
            let ops = ["a/1", "a/2", "a/3", "b/1", "0"].iter().map(|k| (k.as_bytes().to_vec(), Some(vec![]))).collect();
            e.apply(ops).unwrap();
            let keys = |it: Box<dyn Iterator<Item = Result<Pair>> + '_>| -> Vec<String> {
                it.map(|r| String::from_utf8(r.unwrap().0).unwrap()).collect()
            };
            assert_eq!(keys(scan_prefix(e.as_ref(), b"a/", false)), ["a/1", "a/2", "a/3"]);
            assert_eq!(keys(scan_prefix(e.as_ref(), b"a/", true)), ["a/3", "a/2", "a/1"]);
            assert_eq!(keys(e.range(b"a/", Some(b"a/3"), true)), ["a/2", "a/1"]);
            assert_eq!(keys(e.range(b"a/3", Some(b"a/"), false)), Vec::<String>::new());
            e.apply(vec![(b"a/2".to_vec(), None)]).unwrap();
            assert!(e.get(b"a/2").unwrap().is_none());
        }
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff"), None);
    }
}
