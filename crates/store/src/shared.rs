//! Tables both services keep: the audit trail and request-id idempotency records.
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use promotion_core::audit::{AuditEvent, AuditFilter};
use promotion_core::cursor::{Page, PageRequest, PageTokens};

use crate::error::Result;

/// Who sent a request id: ids are remembered per caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RequestKey {
    pub organization: String,
    pub subject: String,
    pub request_id: String,
}

/// What a request id was first used for and what it produced, so that a retry returns
/// the first response and a different request under the same id is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub key: RequestKey,
    /// The RPC the id was first used with.
    pub method: String,
    /// A digest of the first request's body.
    pub fingerprint: String,
    /// The resource the first call created or changed.
    pub resource_id: String,
    /// The first response, when the resource alone cannot reproduce it (a package that was
    /// since deleted, say).
    #[serde(default)]
    pub response: Option<serde_json::Value>,
}

#[async_trait]
pub trait AuditTable: Send + Sync {
    /// Events matching `filter`, oldest first, resuming after the page's position.
    async fn list_audit(&self, filter: &AuditFilter, page: &PageRequest) -> Result<Page<AuditEvent>>;
}

#[async_trait]
pub trait IdempotencyTable: Send + Sync {
    async fn request(&self, key: &RequestKey) -> Result<Option<IdempotencyRecord>>;
}

#[async_trait]
pub trait KeyTable: Send + Sync {
    /// The secret named `name`: 32 random bytes generated the first time any replica asks
    /// for it, and the same for every replica and after every restart from then on (a
    /// database backend inserts it if absent, then reads it back). Page tokens are MAC'd
    /// with the key named `"page-tokens"`. It never leaves the service.
    async fn secret_key(&self, name: &str) -> Result<Vec<u8>>;
}

/// The page-token key of a service, read from its store once and then kept.
#[derive(Default)]
pub struct PageTokenKey(tokio::sync::OnceCell<PageTokens>);

impl PageTokenKey {
    pub async fn get(&self, keys: &dyn KeyTable) -> Result<&PageTokens> {
        self.0.get_or_try_init(|| async { Ok(PageTokens::new(&keys.secret_key("page-tokens").await?)) }).await
    }
}
