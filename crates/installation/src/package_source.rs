//! Where the installation service reads packages from and reports installations to: the
//! port the domain calls, which `grpc::package_client` implements against the package
//! service (forwarding the caller's credentials) and tests implement in memory.
use async_trait::async_trait;

use promotion_core::identity::Credentials;
use promotion_core::package::Status;
use promotion_core::records::OutboxEntry;
use promotion_core::upstream::UpstreamError;

use crate::plan::PackageContent;

/// What the installation service needs to know about a package.
#[derive(Debug, Clone)]
pub struct PackageInfo {
    pub id: String,
    pub name: String,
    pub version: i64,
    pub status: Status,
    pub organization: String,
    pub source_environment: String,
    pub digest: String,
}

#[async_trait]
pub trait PackageSource: Send + Sync {
    async fn info(&self, package_id: &str, credentials: &Credentials) -> Result<PackageInfo, UpstreamError>;
    /// The full definition of one version (0: the current one).
    async fn content(
        &self,
        package_id: &str,
        version: i64,
        credentials: &Credentials,
    ) -> Result<PackageContent, UpstreamError>;
    /// Reports a successful installation (the outbox's delivery).
    async fn record_installation(&self, credentials: &Credentials, entry: &OutboxEntry) -> Result<(), UpstreamError>;
    /// Credentials of the service's own identity.
    async fn service_credentials(&self, client_id: &str, secret: &str) -> Result<Credentials, UpstreamError>;
}
