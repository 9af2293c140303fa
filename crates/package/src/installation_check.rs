//! Where RecordInstallation reports are checked: the port the package domain calls, which
//! `grpc::installation_client` implements against the installation service hosting the
//! destination (and tests implement in memory).
use async_trait::async_trait;

use promotion_core::directory::EnvironmentInfo;
use promotion_core::identity::Credentials;
use promotion_core::upstream::UpstreamError;

/// An installation as a report names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub installation_id: String,
    pub package_id: String,
    pub package_version: i64,
}

#[async_trait]
pub trait InstallationCheck: Send + Sync {
    /// Ok when the installation service hosting `destination` holds a completed
    /// installation exactly as `installed` says. Its refusal otherwise (NOT_FOUND
    /// `INSTALLATION_NOT_FOUND` when it holds none), or UNAVAILABLE when it cannot answer.
    async fn check(
        &self,
        destination: &EnvironmentInfo,
        installed: &Installed,
        credentials: &Credentials,
    ) -> Result<(), UpstreamError>;
}
