//! Where extraction reads configuration from: the port the package domain calls, which the
//! gRPC client in `grpc::export_client` implements against the installation service hosting
//! the source environment (and tests implement in memory).
use async_trait::async_trait;

use promotion_core::directory::EnvironmentInfo;
use promotion_core::identity::Credentials;
use promotion_core::objects::ObjectCollection;

use crate::definitions::Content;

/// The closure of some roots, as the source environment exported it.
#[derive(Debug, Default)]
pub struct Exported {
    pub content: Content,
    pub warnings: Vec<String>,
}

#[async_trait]
pub trait ObjectSource: Send + Sync {
    /// Exports the closure of `roots` from `environment` with the caller's credentials.
    /// The error is a failure reason a person can act on (it becomes the package's
    /// `failure_reason`).
    async fn export(
        &self,
        environment: &EnvironmentInfo,
        roots: &[ObjectCollection],
        credentials: Option<&Credentials>,
        max_objects: usize,
    ) -> Result<Exported, String>;
}
