//! The package service's tables: packages, their immutable definition versions, recorded
//! installations, idempotency records and the audit trail. Every write is one atomic,
//! durable list of [`PackageRecord`]s; read-modify-writes of a package or a request id
//! happen under the store's lock on it.
use async_trait::async_trait;

use promotion_core::audit::AuditEvent;
use promotion_core::cursor::{Page, PageRequest};
use promotion_core::package::{DefinitionChunk, DefinitionHeader, Package, RecordedInstallation, Status};

use crate::error::Result;
use crate::shared::{AuditTable, IdempotencyRecord, IdempotencyTable, KeyTable, RequestKey};

/// ListPackages filters.
#[derive(Debug, Clone, Default)]
pub struct PackageQuery {
    pub organization: String,
    pub status: Option<Status>,
    pub source_environment: String,
    pub show_retired: bool,
}

impl PackageQuery {
    pub fn matches(&self, p: &Package) -> bool {
        let retired_shown = self.show_retired || self.status == Some(Status::Retired);
        p.organization == self.organization
            && self.status.is_none_or(|s| s == p.status)
            && (self.source_environment.is_empty() || self.source_environment == p.source_environment)
            && (retired_shown || p.status != Status::Retired)
    }
}

#[derive(Debug, Clone)]
pub enum PackageRecord {
    /// The package as it now is (with its listing and in-progress indexes).
    Package(Box<Package>),
    /// A new definition version: written once, never changed.
    Definition {
        header: Box<DefinitionHeader>,
        chunks: Vec<DefinitionChunk>,
    },
    /// Removes the package with every version and recorded installation.
    Deleted {
        package_id: String,
        organization: String,
    },
    RecordedInstallation(RecordedInstallation),
    Idempotency(IdempotencyRecord),
    Audit(Box<AuditEvent>),
}

impl PackageRecord {
    pub fn audit(event: AuditEvent) -> PackageRecord {
        PackageRecord::Audit(Box::new(event))
    }
}

/// What a lock serialises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockKey {
    Package(String),
    Request(RequestKey),
}

#[async_trait]
pub trait PackageTable: Send + Sync {
    async fn package(&self, id: &str) -> Result<Option<Package>>;
    /// Packages matching `query`, newest first.
    async fn list_packages(&self, query: &PackageQuery, page: &PageRequest) -> Result<Page<Package>>;
    /// Ids of the packages whose extraction is in progress (start-up recovery).
    async fn extracting(&self) -> Result<Vec<String>>;
    async fn recorded_installation(&self, package_id: &str, installation_id: &str) -> Result<bool>;
}

#[async_trait]
pub trait DefinitionTable: Send + Sync {
    async fn definition_header(&self, package_id: &str, version: i64) -> Result<Option<DefinitionHeader>>;
    /// The `n`th entities message of a version, in stream order; None past the last.
    async fn definition_chunk(&self, package_id: &str, version: i64, n: usize) -> Result<Option<DefinitionChunk>>;
}

/// Held while a package (or a request id) is read, changed and written back.
pub struct PackageLock {
    guard: Box<dyn std::any::Any + Send + Sync>,
}

impl PackageLock {
    pub fn new(guard: impl std::any::Any + Send + Sync) -> Self {
        PackageLock { guard: Box::new(guard) }
    }

    /// What the store put in the lock, for its commit to write through.
    pub(crate) fn into_guard(self) -> Box<dyn std::any::Any + Send + Sync> {
        self.guard
    }
}

#[async_trait]
pub trait PackageStore: PackageTable + DefinitionTable + IdempotencyTable + AuditTable + KeyTable {
    async fn lock(&self, key: LockKey) -> Result<PackageLock>;
    /// Writes every record or none, durably, before returning; then releases `lock`
    /// (taken on what the records change, when they were read first).
    async fn commit(&self, lock: Option<PackageLock>, records: Vec<PackageRecord>) -> Result<()>;
    async fn flush(&self) -> Result<()>;
    fn size_on_disk(&self) -> u64;
}
