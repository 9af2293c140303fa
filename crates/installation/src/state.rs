//! What every installation-service operation shares: configuration, the environment
//! directory, the store, the package source, and authorisation and audit helpers.
use std::collections::HashSet;
use std::sync::Arc;

use crate::package_source::PackageSource;
use crate::refusal::Refusal;
use promotion_core::audit::AuditEvent;
use promotion_core::config::Config;
use promotion_core::cursor::PageTokens;
use promotion_core::directory::{Directory, EnvironmentInfo};
use promotion_core::identity::{Identity, Permission};
use promotion_core::tokens::TokenSigner;
use promotion_core::AccessError;
use promotion_store::installation::Record;
use promotion_store::shared::PageTokenKey;
use promotion_store::{InstallationStore, StoreError};

pub const SERVICE_NAME: &str = "installation-service";

pub struct State {
    pub config: Config,
    pub directory: Directory,
    pub store: Arc<dyn InstallationStore>,
    pub signer: Arc<TokenSigner>,
    /// Reads packages on callers' behalf; None only when no package service is configured.
    pub packages: Option<Arc<dyn PackageSource>>,
    /// Wakes the outbox delivery task after an installation.
    pub outbox_wake: tokio::sync::Notify,
    /// Wakes the webhook delivery task after an event was stored.
    pub deliveries_wake: tokio::sync::Notify,
    hosted: HashSet<String>,
    page_tokens: PageTokenKey,
}

impl State {
    pub fn new(
        config: Config,
        directory: Directory,
        store: Arc<dyn InstallationStore>,
        signer: Arc<TokenSigner>,
        packages: Option<Arc<dyn PackageSource>>,
    ) -> Self {
        let hosted = config.hosted_environments.iter().cloned().collect();
        State {
            config,
            directory,
            store,
            signer,
            packages,
            outbox_wake: tokio::sync::Notify::new(),
            deliveries_wake: tokio::sync::Notify::new(),
            hosted,
            page_tokens: PageTokenKey::default(),
        }
    }

    /// Issues and opens this service's page tokens (its key is kept in the store).
    pub async fn page_tokens(&self) -> Result<&PageTokens, StoreError> {
        self.page_tokens.get(self.store.as_ref()).await
    }

    pub fn is_hosted(&self, env: &str) -> bool {
        self.hosted.contains(env)
    }

    /// The environment, checked for the caller's organization and permission and for
    /// being hosted here. Denials are audited.
    pub async fn authorize(
        &self,
        caller: &Identity,
        env: &str,
        p: Permission,
    ) -> Result<Arc<EnvironmentInfo>, Refusal> {
        let info = self
            .directory
            .visible(caller, env)
            .ok_or_else(|| Refusal::Access(AccessError::EnvironmentNotFound(env.to_string())))?;
        if !caller.allows(p, env) {
            let denial = AccessError::PermissionDenied { permission: p, environment: env.to_string() };
            self.audit_denied(caller, &denial).await;
            return Err(Refusal::Access(denial));
        }
        if !self.is_hosted(env) {
            return Err(Refusal::NotHosted {
                environment: env.to_string(),
                installation_service: info.installation_service.clone(),
            });
        }
        Ok(info)
    }

    /// The caller holds `p` on `env`, or the denial is audited and returned.
    pub async fn require(&self, caller: &Identity, env: &str, p: Permission) -> Result<(), AccessError> {
        if caller.allows(p, env) {
            return Ok(());
        }
        let denial = AccessError::PermissionDenied { permission: p, environment: env.to_string() };
        self.audit_denied(caller, &denial).await;
        Err(denial)
    }

    /// Appends the event of a mutating call that failed after its input was accepted
    /// (stale plan, invalid translation map, package service down, ...): the attempt is
    /// on the record even though it changed nothing else.
    pub async fn audit_failure(&self, event: AuditEvent) {
        if let Err(e) = self.store.append(vec![Record::audit(event)]).await {
            tracing::error!(error = %e, "could not record a failed call's audit event");
        }
    }

    /// Appends an ACCESS_DENIED event; the denied call itself writes nothing else.
    pub async fn audit_denied(&self, caller: &Identity, denial: &AccessError) {
        let Some(event) = AuditEvent::access_denied(SERVICE_NAME, caller, denial) else { return };
        if let Err(e) = self.store.append(vec![Record::audit(event)]).await {
            tracing::error!(error = %e, "could not record an ACCESS_DENIED audit event");
        }
    }
}
