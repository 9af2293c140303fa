//! The package store on an ordered key-value engine (sled on disk, memory in tests). One
//! keyspace, so that one batch covers a change and the audit event recording it.
//!
//! Keys (`\0` separates parts that could otherwise run together):
//! - `pkg/{id}` package record
//! - `pkgorg/{organization}\0{id}` listing index; ids are UUID v7, so key order is
//!   creation order and a reverse scan lists newest first
//! - `extracting/{id}` packages in EXTRACTING, for start-up recovery
//! - `def/{id}/{version:016}/0` definition header, `def/{id}/{version:016}/1/{n:08}` entity
//!   chunks: written once, never changed
//! - `req/{organization}\0{subject}\0{request_id}` idempotency records
//! - `inst/{package}/{installation_id}` recorded installations
//! - `audit/{uuid v7}` audit events
//! - `J...` the journal of a large commit in progress (see `journal`)
use async_trait::async_trait;
use std::sync::Arc;

use promotion_core::audit::{AuditEvent, AuditFilter};
use promotion_core::cursor::{Page, PageRequest, Position};
use promotion_core::package::{DefinitionChunk, DefinitionHeader, Package, Status};

use crate::codec::{decode, encode};
use crate::engine::{prefix_end, scan_prefix, Engine, Held, Op};
use crate::error::{Result, StoreError};
use crate::locks::KeyedLocks;
use crate::package::*;
use crate::shared::{AuditTable, IdempotencyRecord, IdempotencyTable, KeyTable, RequestKey};

mod keys {
    pub const PACKAGE_PREFIX: &[u8] = b"pkg/";
    pub const EXTRACTING_PREFIX: &[u8] = b"extracting/";
    pub const AUDIT_PREFIX: &[u8] = b"audit/";

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

    pub fn request(k: &crate::shared::RequestKey) -> Vec<u8> {
        format!("req/{}\0{}\0{}", k.organization, k.subject, k.request_id).into_bytes()
    }

    pub fn installations_prefix(package: &str) -> Vec<u8> {
        format!("inst/{package}/").into_bytes()
    }

    pub fn installation(package: &str, installation_id: &str) -> Vec<u8> {
        [installations_prefix(package), installation_id.as_bytes().to_vec()].concat()
    }
}

pub struct KvPackageStore {
    engine: Arc<dyn Engine>,
    locks: KeyedLocks,
}

impl KvPackageStore {
    pub fn open(engine: Arc<dyn Engine>) -> Result<Arc<KvPackageStore>> {
        let rolled_back = crate::journal::recover(engine.as_ref())?;
        if rolled_back > 0 {
            tracing::warn!(commits = rolled_back, "rolled back writes a crash interrupted");
        }
        Ok(Arc::new(KvPackageStore { engine, locks: KeyedLocks::default() }))
    }

    fn get_json<T: serde::de::DeserializeOwned>(&self, k: &[u8]) -> Result<Option<T>> {
        self.engine.get(k)?.map(|v| decode(&v)).transpose()
    }

    fn record_ops(&self, r: PackageRecord, ops: &mut Vec<Op>) -> Result<()> {
        match r {
            PackageRecord::Package(p) => {
                ops.push((keys::organization_index(&p.organization, &p.id), Some(Vec::new())));
                let extracting = keys::extracting(&p.id);
                ops.push((extracting, (p.status == Status::Extracting).then(Vec::new)));
                ops.push((keys::package(&p.id), Some(encode(&*p))));
            }
            PackageRecord::Definition { header, chunks } => {
                ops.push((keys::definition_header(&header.package_id, header.version), Some(encode(&*header))));
                for (n, chunk) in chunks.iter().enumerate() {
                    ops.push((keys::definition_chunk(&header.package_id, header.version, n), Some(encode(chunk))));
                }
            }
            PackageRecord::Deleted { package_id, organization } => {
                ops.push((keys::package(&package_id), None));
                ops.push((keys::organization_index(&organization, &package_id), None));
                ops.push((keys::extracting(&package_id), None));
                for prefix in [keys::definitions_prefix(&package_id), keys::installations_prefix(&package_id)] {
                    for item in scan_prefix(self.engine.as_ref(), &prefix, false) {
                        ops.push((item?.0, None));
                    }
                }
            }
            PackageRecord::RecordedInstallation(r) => {
                ops.push((keys::installation(&r.package_id, &r.installation_id), Some(encode(&r))));
            }
            PackageRecord::Idempotency(i) => ops.push((keys::request(&i.key), Some(encode(&i)))),
            PackageRecord::Audit(e) => ops.push(([keys::AUDIT_PREFIX, e.id.as_bytes()].concat(), Some(encode(&*e)))),
        }
        Ok(())
    }
}

#[derive(Clone)]
pub struct SharedKvPackageStore(pub Arc<KvPackageStore>);

/// What a [`PackageLock`] of this store holds: the in-process lock, and the lock across
/// processes where the engine is shared (the commit made under the lock goes through it).
struct KvPackageLock {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    held: Option<Box<dyn Held>>,
}

#[async_trait]
impl PackageTable for SharedKvPackageStore {
    async fn package(&self, id: &str) -> Result<Option<Package>> {
        self.0.get_json(&keys::package(id))
    }

    async fn list_packages(&self, query: &PackageQuery, page: &PageRequest) -> Result<Page<Package>> {
        let prefix = keys::organization_prefix(&query.organization);
        let end = match &page.after {
            Some(p) if p.as_bytes().starts_with(&prefix) && p.as_bytes().len() > prefix.len() => p.as_bytes().to_vec(),
            Some(_) => return Err(StoreError::corrupt("page position does not belong to this listing")),
            None => prefix_end(&prefix).expect("the prefix ends below 0xff"),
        };
        let mut items = Vec::new();
        let mut last = None;
        for item in self.0.engine.range(&prefix, Some(&end), true) {
            let (k, _) = item?;
            let id =
                std::str::from_utf8(&k[prefix.len()..]).map_err(|_| StoreError::corrupt("package id not UTF-8"))?;
            let Some(package) = self.0.get_json::<Package>(&keys::package(id))? else { continue };
            if !query.matches(&package) {
                continue;
            }
            if items.len() == page.size {
                return Ok(Page { items, next: last.map(Position::from_bytes) });
            }
            last = Some(k);
            items.push(package);
        }
        Ok(Page { items, next: None })
    }

    async fn extracting(&self) -> Result<Vec<String>> {
        scan_prefix(self.0.engine.as_ref(), keys::EXTRACTING_PREFIX, false)
            .map(|item| {
                let (k, _) = item?;
                Ok(String::from_utf8_lossy(&k[keys::EXTRACTING_PREFIX.len()..]).into_owned())
            })
            .collect()
    }

    async fn recorded_installation(&self, package_id: &str, installation_id: &str) -> Result<bool> {
        Ok(self.0.engine.get(&keys::installation(package_id, installation_id))?.is_some())
    }
}

#[async_trait]
impl DefinitionTable for SharedKvPackageStore {
    async fn definition_header(&self, package_id: &str, version: i64) -> Result<Option<DefinitionHeader>> {
        self.0.get_json(&keys::definition_header(package_id, version))
    }

    async fn definition_chunk(&self, package_id: &str, version: i64, n: usize) -> Result<Option<DefinitionChunk>> {
        self.0.get_json(&keys::definition_chunk(package_id, version, n))
    }
}

#[async_trait]
impl KeyTable for SharedKvPackageStore {
    async fn secret_key(&self, name: &str) -> Result<Vec<u8>> {
        crate::kv_keys::secret_key(self.0.engine.as_ref(), name).await
    }
}

#[async_trait]
impl IdempotencyTable for SharedKvPackageStore {
    async fn request(&self, k: &RequestKey) -> Result<Option<IdempotencyRecord>> {
        self.0.get_json(&keys::request(k))
    }
}

#[async_trait]
impl AuditTable for SharedKvPackageStore {
    async fn list_audit(&self, filter: &AuditFilter, page: &PageRequest) -> Result<Page<AuditEvent>> {
        crate::kv_installation::list_audit(self.0.engine.as_ref(), keys::AUDIT_PREFIX, filter, page)
    }
}

#[async_trait]
impl PackageStore for SharedKvPackageStore {
    async fn lock(&self, key: LockKey) -> Result<PackageLock> {
        let name = match key {
            LockKey::Package(id) => format!("pkg/{id}"),
            LockKey::Request(r) => format!("req/{}\0{}\0{}", r.organization, r.subject, r.request_id),
        };
        let guard = self.0.locks.lock(&name).await;
        let held = self.0.engine.hold(name.as_bytes()).await?;
        Ok(PackageLock::new(KvPackageLock { _guard: guard, held }))
    }

    async fn commit(&self, lock: Option<PackageLock>, records: Vec<PackageRecord>) -> Result<()> {
        let store = self.0.clone();
        let mut lock = lock.and_then(|l| l.into_guard().downcast::<KvPackageLock>().ok());
        let held = lock.as_mut().and_then(|l| l.held.take());
        let result = tokio::task::spawn_blocking(move || {
            let mut ops = Vec::new();
            for r in records {
                store.record_ops(r, &mut ops)?;
            }
            match held {
                Some(held) => held.apply(ops),
                None if ops.is_empty() => Ok(()),
                None => crate::journal::apply(store.engine.as_ref(), ops),
            }
        })
        .await
        .map_err(|e| StoreError::engine(format!("commit task failed: {e}")))?;
        drop(lock);
        result
    }

    async fn flush(&self) -> Result<()> {
        let engine = self.0.engine.clone();
        tokio::task::spawn_blocking(move || engine.flush())
            .await
            .map_err(|e| StoreError::engine(format!("flush task failed: {e}")))?
    }

    fn size_on_disk(&self) -> u64 {
        self.0.engine.size_on_disk()
    }
}
