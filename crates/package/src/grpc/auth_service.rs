//! `promotion.v1.AuthService`: client credentials in, signed bearer tokens out.
use std::sync::Arc;
use tonic::{Code, Request, Response, Status};

use crate::state::State;
use crate::state::SERVICE_NAME;
use crate::throttle::LoginThrottle;
use promotion_api::convert::timestamp;
use promotion_api::status::{retry_later, status};
use promotion_api::v1 as pb;
use promotion_core::audit::AuditEvent;
use promotion_core::identity::{Binding, Identity};
use promotion_core::secrets::verify_secret;
use promotion_core::validate::clip;
use promotion_serving::authenticate;
use promotion_store::package::PackageRecord;
use std::net::IpAddr;
use std::time::Instant;

pub struct AuthApi {
    state: Arc<State>,
    throttle: LoginThrottle,
    /// Each argon2 verification takes about 19 MiB and real CPU; bounding how many run at
    /// once keeps a flood of IssueToken calls from exhausting memory.
    verifications: tokio::sync::Semaphore,
}

const CONCURRENT_VERIFICATIONS: usize = 2;

impl AuthApi {
    pub fn new(state: Arc<State>) -> Self {
        AuthApi {
            state,
            throttle: LoginThrottle::default(),
            verifications: tokio::sync::Semaphore::new(CONCURRENT_VERIFICATIONS),
        }
    }
}

pub fn identity_to_proto(id: &Identity) -> pb::Identity {
    pb::Identity {
        subject: id.subject.clone(),
        organization: id.organization.clone(),
        bindings: id
            .bindings
            .iter()
            .map(|b| pb::RoleBinding { role: b.role.as_str().into(), environment: b.environment.clone() })
            .collect(),
        expire_time: Some(timestamp(id.expire_time())),
    }
}

#[tonic::async_trait]
impl pb::auth_service_server::AuthService for AuthApi {
    async fn issue_token(
        &self,
        req: Request<pb::IssueTokenRequest>,
    ) -> Result<Response<pb::IssueTokenResponse>, Status> {
        let address = req.remote_addr().map(|a| a.ip());
        let req = req.into_inner();
        let auth = &self.state.config.auth;
        if req.ttl_seconds < 0 {
            return Err(status(
                Code::InvalidArgument,
                "INVALID_TTL",
                "ttl_seconds must not be negative",
                [("field", "ttl_seconds".into())],
            ));
        }
        let client = self.state.config.clients.iter().find(|c| c.id == req.client_id);
        let organization = client.map(|c| c.organization.as_str()).unwrap_or_default();
        if let Err(t) = self.throttle.check(&req.client_id, address, Instant::now()) {
            if t.first {
                let event = login_event("LOGIN_THROTTLED", &req.client_id, organization, address)
                    .outcome(promotion_core::Code::ResourceExhausted)
                    .detail("throttled_by", t.by);
                self.audit(event).await;
            }
            return Err(retry_later(
                "TOO_MANY_FAILED_LOGINS",
                format!("too many failed logins for this {}; retry in {} s", t.by, t.retry_after.as_secs().max(1)),
                t.retry_after,
            ));
        }
        // Verify against a real hash even for unknown clients so timing does not reveal
        // which client ids exist.
        let hash = client.map_or(DUMMY_HASH, |c| c.secret_hash.as_str()).to_string();
        let secret = req.client_secret.clone();
        let ok = {
            let _permit = self.verifications.acquire().await.map_err(|_| Status::unavailable("shutting down"))?;
            tokio::task::spawn_blocking(move || verify_secret(&secret, &hash)).await.unwrap_or(false)
        };
        let Some(client) = client.filter(|_| ok) else {
            tracing::info!(client_id = %req.client_id, "token refused: bad client credentials");
            self.throttle.failed(&req.client_id, address, Instant::now());
            let event = login_event("LOGIN_FAILED", &req.client_id, organization, address)
                .outcome(promotion_core::Code::Unauthenticated);
            self.audit(event).await;
            return Err(status(Code::Unauthenticated, "INVALID_CLIENT", "unknown client or wrong secret", []));
        };
        self.throttle.succeeded(&client.id);
        let ttl =
            if req.ttl_seconds == 0 { auth.default_ttl_seconds } else { req.ttl_seconds.min(auth.max_ttl_seconds) };
        let now = chrono::Utc::now();
        let identity = Identity {
            subject: client.id.clone(),
            organization: client.organization.clone(),
            bindings: client
                .bindings
                .iter()
                .map(|b| Binding { role: b.role, environment: b.environment.clone() })
                .collect(),
            expires_at: now.timestamp() + ttl,
        };
        let access_token = self.state.signer.issue(&identity, now);
        Ok(Response::new(pb::IssueTokenResponse {
            access_token,
            token_type: "Bearer".into(),
            expire_time: Some(timestamp(identity.expire_time())),
            identity: Some(identity_to_proto(&identity)),
        }))
    }

    async fn who_am_i(&self, req: Request<pb::WhoAmIRequest>) -> Result<Response<pb::Identity>, Status> {
        let identity = authenticate(&self.state.signer, req.metadata())?;
        Ok(Response::new(identity_to_proto(&identity)))
    }
}

impl AuthApi {
    async fn audit(&self, event: AuditEvent) {
        if let Err(e) = self.state.store.commit(None, vec![PackageRecord::audit(event)]).await {
            tracing::error!(error = %e, "could not record a failed login");
        }
    }
}

/// A failed or throttled login as the audit trail keeps it: who was claimed, from where;
/// never the secret.
fn login_event(action: &str, client_id: &str, organization: &str, address: Option<IpAddr>) -> AuditEvent {
    let claimed = clip(client_id);
    let anonymous =
        Identity { subject: claimed.clone(), organization: organization.into(), bindings: vec![], expires_at: 0 };
    AuditEvent::new(SERVICE_NAME, &anonymous, "", action, ("client", &claimed))
        .detail("address", address.map(|a| a.to_string()).unwrap_or_default())
}

/// argon2id hash of a random string nobody knows; compared against for unknown clients.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$4s9Lq4b0hC3k2nZbq5ZP1m7yC0m3G7d1m9lQeXy6l7E";
