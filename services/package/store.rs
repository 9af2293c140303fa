//! The package service's sled store. One tree; keys are prefixed by record kind so one
//! `Batch` (atomic on one tree) covers a change and the audit event recording it.
//!
//! Keys (built only by [`keys`]; `\0` separates parts that could otherwise run together):
//! - `pkg/{id}` package record (JSON)
//! - `pkgorg/{organization}\0{id}` listing index; ids are UUID v7, so key order is
//!   creation order and a reverse scan lists newest first
//! - `extracting/{id}` packages in EXTRACTING, for start-up recovery
//! - `def/{id}/{version:016}/0` definition header, `def/{id}/{version:016}/1/{n:08}` entity
//!   chunks: encoded `GetPackageDefinitionResponse` messages, written once, never changed
//! - `req/{organization}\0{subject}\0{request_id}` idempotency records
//! - `inst/{package}/{installation_id}` recorded installations
//! - `audit/{uuid v7}` audit events (see `shared::audit`)
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;

pub use crate::shared::store_error::{Result, StoreError};

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

    /// Records under `prefix` with keys strictly before `before` (or all of them), newest
    /// key first: one page of a newest-first listing without rereading earlier pages.
    pub fn scan_before(&self, prefix: &[u8], before: Option<&[u8]>) -> Records {
        let start = prefix.to_vec();
        let iter = match before {
            Some(b) if b <= prefix => return Box::new(std::iter::empty()),
            Some(b) => self.db.range(start..b.to_vec()),
            None => self.db.scan_prefix(prefix),
        };
        let prefix = prefix.to_vec();
        Box::new(iter.rev().take_while(move |item| item.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix))).map(
            |item| {
                let (k, v) = item?;
                Ok((k.to_vec(), v.to_vec()))
            },
        ))
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

/// The key layout described at the top of this module.
pub mod keys {
    pub const PACKAGE_PREFIX: &[u8] = b"pkg/";
    pub const EXTRACTING_PREFIX: &[u8] = b"extracting/";

    pub fn package(id: &str) -> Vec<u8> {
        [PACKAGE_PREFIX, id.as_bytes()].concat()
    }

    pub fn organization_prefix(organization: &str) -> Vec<u8> {
        format!("pkgorg/{organization}\0").into_bytes()
    }

    pub fn organization_index(organization: &str, id: &str) -> Vec<u8> {
        [organization_prefix(organization), id.as_bytes().to_vec()].concat()
    }

    pub fn extracting(id: &str) -> Vec<u8> {
        [EXTRACTING_PREFIX, id.as_bytes()].concat()
    }

    /// Every stored version of a package's definition.
    pub fn definitions_prefix(id: &str) -> Vec<u8> {
        format!("def/{id}/").into_bytes()
    }

    /// One version: its header sorts before its chunks, which sort in stream order.
    pub fn definition_prefix(id: &str, version: i64) -> Vec<u8> {
        format!("def/{id}/{version:016}/").into_bytes()
    }

    pub fn definition_header(id: &str, version: i64) -> Vec<u8> {
        [definition_prefix(id, version), b"0".to_vec()].concat()
    }

    pub fn definition_chunk(id: &str, version: i64, n: usize) -> Vec<u8> {
        [definition_prefix(id, version), format!("1/{n:08}").into_bytes()].concat()
    }

    pub fn request(organization: &str, subject: &str, request_id: &str) -> Vec<u8> {
        format!("req/{organization}\0{subject}\0{request_id}").into_bytes()
    }

    pub fn installations_prefix(package: &str) -> Vec<u8> {
        format!("inst/{package}/").into_bytes()
    }

    pub fn installation(package: &str, installation_id: &str) -> Vec<u8> {
        [installations_prefix(package), installation_id.as_bytes().to_vec()].concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn scan_before_pages_newest_first_inside_the_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut write = Write::default();
        for k in ["a/1", "a/2", "a/3", "b/1", "0"] {
            write.put_raw(k, vec![]);
        }
        store.apply(write).await.unwrap();
        let keys = |before: Option<&[u8]>| -> Vec<String> {
            store.scan_before(b"a/", before).map(|r| String::from_utf8(r.unwrap().0).unwrap()).collect()
        };
        assert_eq!(keys(None), vec!["a/3", "a/2", "a/1"]);
        assert_eq!(keys(Some(b"a/3")), vec!["a/2", "a/1"]);
        assert_eq!(keys(Some(b"a/1")), Vec::<String>::new());
    }

    #[test]
    fn definition_headers_sort_before_their_chunks() {
        let header = keys::definition_header("p", 2);
        let chunk = keys::definition_chunk("p", 2, 0);
        assert!(header < chunk && chunk < keys::definition_chunk("p", 2, 10));
        assert!(header.starts_with(&keys::definition_prefix("p", 2)));
        assert!(!keys::definition_chunk("p", 12, 0).starts_with(&keys::definition_prefix("p", 1)));
    }
}
