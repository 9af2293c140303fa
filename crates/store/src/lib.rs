//! Storage behind traits. Each service's tables are typed traits (`installation`,
//! `package`, and the `shared` audit and idempotency tables); every key, prefix and codec
//! lives in this crate. The implementations run on an ordered key-value engine: sled on
//! disk (the embedded default: one process per data directory), PostgreSQL (any number of
//! replicas on one database) and memory (domain tests). Writes are atomic and durable
//! before they return; a commit too large for one sled batch goes through a journal that
//! start-up rolls back after a crash, and on PostgreSQL is one transaction.
mod codec;
mod engine;
pub mod error;
pub mod installation;
mod journal;
mod kv_installation;
mod kv_keys;
mod kv_package;
pub mod locks;
pub mod package;
mod pg_engine;
pub mod pg_scratch;
pub mod shared;

use std::path::Path;
use std::sync::Arc;

pub use error::{Result, StoreError, StoreErrorKind};
pub use installation::InstallationStore;
pub use package::PackageStore;

/// sled's page cache per database unless configured (`limits.store_cache_bytes`). sled
/// keeps more than this resident under write load; it is the part an operator can bound.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// The installation service's store in `dir` (sled).
pub fn open_installation_store(dir: &Path) -> Result<Arc<dyn InstallationStore>> {
    open_installation_store_cached(dir, DEFAULT_CACHE_BYTES)
}

/// [`open_installation_store`] with a page cache of `cache_bytes`.
pub fn open_installation_store_cached(dir: &Path, cache_bytes: u64) -> Result<Arc<dyn InstallationStore>> {
    let engine = engine::SledEngine::open(&dir.join("installation.sled"), cache_bytes)?;
    let store = kv_installation::KvInstallationStore::open(Arc::new(engine))?;
    Ok(Arc::new(kv_installation::SharedKvInstallationStore(Arc::new(store))))
}

/// The installation service's store on the PostgreSQL database at `url`, shared by every
/// replica; the schema is migrated first.
pub fn open_installation_store_pg(url: &str) -> Result<Arc<dyn InstallationStore>> {
    let engine = pg_engine::PgEngine::open(url, pg_engine::Space::Installation)?;
    let store = kv_installation::KvInstallationStore::open(Arc::new(engine))?;
    Ok(Arc::new(kv_installation::SharedKvInstallationStore(Arc::new(store))))
}

/// An installation store in memory, for tests.
pub fn memory_installation_store() -> Arc<dyn InstallationStore> {
    let store = kv_installation::KvInstallationStore::open(Arc::new(engine::MemoryEngine::default()))
        .expect("an empty memory engine has nothing to recover");
    Arc::new(kv_installation::SharedKvInstallationStore(Arc::new(store)))
}

/// The package service's store in `dir` (sled).
pub fn open_package_store(dir: &Path) -> Result<Arc<dyn PackageStore>> {
    open_package_store_cached(dir, DEFAULT_CACHE_BYTES)
}

/// [`open_package_store`] with a page cache of `cache_bytes`.
pub fn open_package_store_cached(dir: &Path, cache_bytes: u64) -> Result<Arc<dyn PackageStore>> {
    let engine = engine::SledEngine::open(&dir.join("package.sled"), cache_bytes)?;
    Ok(Arc::new(kv_package::SharedKvPackageStore(kv_package::KvPackageStore::open(Arc::new(engine))?)))
}

/// The package service's store on the PostgreSQL database at `url`, shared by every
/// replica; the schema is migrated first.
pub fn open_package_store_pg(url: &str) -> Result<Arc<dyn PackageStore>> {
    let engine = pg_engine::PgEngine::open(url, pg_engine::Space::Package)?;
    Ok(Arc::new(kv_package::SharedKvPackageStore(kv_package::KvPackageStore::open(Arc::new(engine))?)))
}

/// A package store in memory, for tests.
pub fn memory_package_store() -> Arc<dyn PackageStore> {
    let store = kv_package::KvPackageStore::open(Arc::new(engine::MemoryEngine::default()))
        .expect("an empty memory engine has nothing to recover");
    Arc::new(kv_package::SharedKvPackageStore(store))
}
