//! Request ids on the package service: a retry with the same id and body returns the
//! first response; the same id with another body is refused.
use promotion_core::identity::Identity;
use promotion_core::package::Package;
use promotion_store::package::{LockKey, PackageLock, PackageRecord};
use promotion_store::shared::{IdempotencyRecord, RequestKey};

use crate::error::{invalid, Result};
use crate::state::State;

/// One caller's use of one request id for one method and body.
pub struct Request {
    key: RequestKey,
    method: &'static str,
    fingerprint: String,
}

impl Request {
    pub fn new(caller: &Identity, request_id: &str, method: &'static str, fingerprint: String) -> Option<Request> {
        (!request_id.is_empty()).then(|| Request {
            key: RequestKey {
                organization: caller.organization.clone(),
                subject: caller.subject.clone(),
                request_id: request_id.to_string(),
            },
            method,
            fingerprint,
        })
    }

    /// Serialises concurrent uses of the same id.
    pub async fn lock(&self, state: &State) -> Result<PackageLock> {
        Ok(state.store.lock(LockKey::Request(self.key.clone())).await?)
    }

    /// The record remembering this request's outcome, written with it.
    pub fn record(&self, package: &Package) -> PackageRecord {
        PackageRecord::Idempotency(IdempotencyRecord {
            key: self.key.clone(),
            method: self.method.to_string(),
            fingerprint: self.fingerprint.clone(),
            resource_id: package.id.clone(),
            response: serde_json::to_value(package).ok(),
        })
    }
}

impl Request {
    /// The record remembering that this request answered `response`, written with it.
    pub fn record_response(&self, resource_id: &str, response: serde_json::Value) -> PackageRecord {
        PackageRecord::Idempotency(IdempotencyRecord {
            key: self.key.clone(),
            method: self.method.to_string(),
            fingerprint: self.fingerprint.clone(),
            resource_id: resource_id.to_string(),
            response: Some(response),
        })
    }
}

/// What the first call with this request id recorded, if there was one. A request id
/// reused for another request (another method or body) is refused.
pub async fn prior(state: &State, request: Option<&Request>) -> Result<Option<IdempotencyRecord>> {
    let Some(request) = request else { return Ok(None) };
    let Some(record) = state.store.request(&request.key).await? else { return Ok(None) };
    if record.method != request.method || record.fingerprint != request.fingerprint {
        return Err(invalid(
            "REQUEST_ID_REUSED",
            "request_id",
            format!("request_id was already used for another {} request", record.method),
        ));
    }
    Ok(Some(record))
}

/// The answer to a repeated request: the package as it is now (or as first returned, if
/// it has since been deleted). A request id reused for another request is refused.
pub async fn repeated(state: &State, request: Option<&Request>) -> Result<Option<Package>> {
    let Some(record) = prior(state, request).await? else { return Ok(None) };
    if let Some(current) = state.store.package(&record.resource_id).await? {
        return Ok(Some(current));
    }
    Ok(record.response.and_then(|v| serde_json::from_value(v).ok()))
}
