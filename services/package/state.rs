//! What every package-service handler shares: configuration, the environment directory,
//! the store, the token signer, and audit/authorisation helpers.
use std::sync::Arc;
use tonic::{Code, Status};

use super::store::{Store, Write};
use crate::shared::audit::AuditEvent;
use crate::shared::auth::{Identity, Permission, TokenSigner};
use crate::shared::config::Config;
use crate::shared::directory::{Directory, EnvironmentInfo};
use crate::shared::serving::{environment_not_found, permission_denied};

pub const SERVICE_NAME: &str = "package-service";

pub struct State {
    pub config: Config,
    pub directory: Directory,
    pub store: Store,
    pub signer: Arc<TokenSigner>,
}

impl State {
    /// The environment if the caller's organization owns it and the caller holds `p` on
    /// it; denials are audited.
    pub async fn authorize(&self, caller: &Identity, env: &str, p: Permission) -> Result<Arc<EnvironmentInfo>, Status> {
        let info = self.directory.visible(caller, env).ok_or_else(|| environment_not_found(env))?;
        if !caller.allows(p, env) {
            self.audit_denied(caller, env, p).await;
            return Err(permission_denied(p, env));
        }
        Ok(info)
    }

    /// Appends an ACCESS_DENIED event; the denied call itself writes nothing else.
    pub async fn audit_denied(&self, caller: &Identity, env: &str, p: Permission) {
        let event = AuditEvent::new(SERVICE_NAME, caller, env, "ACCESS_DENIED", ("environment", env))
            .outcome(Code::PermissionDenied)
            .detail("permission", p.as_str());
        let mut write = Write::default();
        write.put(event.record_key(), &event);
        if let Err(e) = self.store.apply(write).await {
            tracing::error!(error = %e, "could not record an ACCESS_DENIED audit event");
        }
    }
}
