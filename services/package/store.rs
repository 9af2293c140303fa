//! The package service's sled store. One tree; keys are prefixed by record kind so one
//! `Batch` (atomic on one tree) covers a change and the audit event recording it.
//!
//! Key prefixes (owned by this module; callers pass the part after the prefix):
//! - `audit/{uuid v7}` audit events (see `shared::audit`)
//! - other prefixes are allocated by the package domain modules through [`Store::apply`].
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;

#[derive(Debug)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError(e.to_string())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError(format!("corrupt record: {e}"))
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Key/value pairs from a prefix scan.
pub type Records = Box<dyn Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> + Send>;

/// A set of puts and deletes applied atomically and durably.
#[derive(Debug, Default)]
pub struct Write {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Write {
    pub fn put<T: Serialize>(&mut self, key: impl Into<Vec<u8>>, value: &T) {
        self.ops.push((key.into(), Some(serde_json::to_vec(value).expect("records serialise"))));
    }

    pub fn put_raw(&mut self, key: impl Into<Vec<u8>>, value: Vec<u8>) {
        self.ops.push((key.into(), Some(value)));
    }

    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), None));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store> {
        let db = sled::Config::new().path(dir.join("package.sled")).cache_capacity(128 * 1024 * 1024).open()?;
        Ok(Store { db })
    }

    pub fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        match self.db.get(key)? {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        }
    }

    pub fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get(key)?.map(|v| v.to_vec()))
    }

    /// Records under a prefix in key order (or reversed), as (key, value) pairs.
    pub fn scan(&self, prefix: &[u8], reverse: bool) -> Records {
        let iter = self.db.scan_prefix(prefix);
        let map = |item: sled::Result<(sled::IVec, sled::IVec)>| -> Result<(Vec<u8>, Vec<u8>)> {
            let (k, v) = item?;
            Ok((k.to_vec(), v.to_vec()))
        };
        if reverse {
            Box::new(iter.rev().map(map))
        } else {
            Box::new(iter.map(map))
        }
    }

    /// Applies `write` atomically and flushes it before returning.
    pub async fn apply(&self, write: Write) -> Result<()> {
        if write.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for (k, v) in write.ops {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        self.db.apply_batch(batch)?;
        self.flush().await
    }

    pub async fn flush(&self) -> Result<()> {
        self.db.flush_async().await?;
        Ok(())
    }

    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}
