//! Request ids on the installation service: a retry with the same id and body returns the
//! first response; the same id with another body is refused (REQUEST_ID_REUSED).
use serde::Serialize;
use sha2::{Digest, Sha256};

use promotion_core::identity::Identity;
use promotion_store::installation::Record;
use promotion_store::shared::{IdempotencyRecord, RequestKey};
use promotion_store::InstallationStore;

use crate::error::InstallError;

/// One caller's use of one request id for one method and body.
#[derive(Debug, Clone)]
pub struct RequestUse {
    key: RequestKey,
    method: &'static str,
    fingerprint: String,
}

impl RequestUse {
    /// None when the call carries no request id.
    pub fn new(caller: &Identity, request_id: &str, method: &'static str, body: &impl Serialize) -> Option<RequestUse> {
        if request_id.is_empty() {
            return None;
        }
        let bytes = serde_json::to_vec(body).expect("request bodies serialise");
        Some(RequestUse {
            key: RequestKey {
                organization: caller.organization.clone(),
                subject: caller.subject.clone(),
                request_id: request_id.to_string(),
            },
            method,
            fingerprint: hex::encode(Sha256::digest(bytes)),
        })
    }

    /// The id of what the first call with this request id produced, if there was one.
    pub async fn first(&self, store: &dyn InstallationStore) -> Result<Option<String>, InstallError> {
        Ok(self.first_record(store).await?.map(|r| r.resource_id))
    }

    /// What the first call with this request id recorded, if there was one; the same id
    /// with another method or body is refused.
    pub async fn first_record(&self, store: &dyn InstallationStore) -> Result<Option<IdempotencyRecord>, InstallError> {
        let Some(record) = store.request(&self.key).await? else { return Ok(None) };
        if record.method != self.method || record.fingerprint != self.fingerprint {
            return Err(InstallError::Invalid {
                reason: "REQUEST_ID_REUSED",
                field: "request_id".into(),
                message: format!("request_id was already used for another {} request", record.method),
            });
        }
        Ok(Some(record))
    }

    /// The record remembering the first response itself, for calls whose resource alone
    /// cannot reproduce it (PutObjects, DeleteObject).
    pub fn record_response(&self, resource_id: &str, response: serde_json::Value) -> Record {
        Record::Idempotency(IdempotencyRecord {
            key: self.key.clone(),
            method: self.method.to_string(),
            fingerprint: self.fingerprint.clone(),
            resource_id: resource_id.to_string(),
            response: Some(response),
        })
    }

    /// The record remembering that this request produced `resource_id`, written with it.
    pub fn record(&self, resource_id: &str) -> Record {
        Record::Idempotency(IdempotencyRecord {
            key: self.key.clone(),
            method: self.method.to_string(),
            fingerprint: self.fingerprint.clone(),
            resource_id: resource_id.to_string(),
            response: None,
        })
    }
}

/// `first` for an optional use.
pub async fn first(use_: Option<&RequestUse>, store: &dyn InstallationStore) -> Result<Option<String>, InstallError> {
    match use_ {
        Some(u) => u.first(store).await,
        None => Ok(None),
    }
}
