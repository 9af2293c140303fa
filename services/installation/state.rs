//! What every installation-service handler shares: configuration, the environment
//! directory, the store, per-environment write locks, and audit/authorisation helpers.
use crate::shared::locks::KeyedLocks;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tonic::{Code, Status};

use super::package_client::PackageClient;
use super::store::{Changes, Store};
use crate::shared::audit::AuditEvent;
use crate::shared::auth::{Identity, Permission, TokenSigner};
use crate::shared::config::Config;
use crate::shared::directory::{Directory, EnvironmentInfo};
use crate::shared::errors::status;
use crate::shared::serving::{environment_not_found, permission_denied};

pub const SERVICE_NAME: &str = "installation-service";

pub struct State {
    pub config: Config,
    pub directory: Directory,
    pub store: Store,
    pub signer: Arc<TokenSigner>,
    /// Reads packages on callers' behalf; None only when no package service is configured.
    pub package_client: Option<PackageClient>,
    /// Wakes the outbox delivery task after an installation.
    pub outbox_wake: tokio::sync::Notify,
    hosted: HashSet<String>,
    /// Readers of a hosted environment share its view; an installation applied in
    /// several batches holds it exclusively, so nobody sees part of one.
    views: HashMap<String, Arc<tokio::sync::RwLock<()>>>,
    locks: KeyedLocks,
}

impl State {
    pub fn new(config: Config, directory: Directory, store: Store, signer: Arc<TokenSigner>) -> Self {
        let hosted = config.hosted_environments.iter().cloned().collect();
        let views = config.hosted_environments.iter().map(|e| (e.clone(), Arc::default())).collect();
        let package_client = config.package_service.as_deref().and_then(|a| PackageClient::new(a).ok());
        State {
            config,
            directory,
            store,
            signer,
            package_client,
            outbox_wake: tokio::sync::Notify::new(),
            hosted,
            views,
            locks: KeyedLocks::default(),
        }
    }

    /// A shared view of a hosted environment's objects (see `views`).
    pub async fn read_view(&self, env: &str) -> Option<tokio::sync::OwnedRwLockReadGuard<()>> {
        Some(self.views.get(env)?.clone().read_owned().await)
    }

    /// Exclusive view of a hosted environment, for writes applied in several batches.
    pub async fn write_view(&self, env: &str) -> Option<tokio::sync::OwnedRwLockWriteGuard<()>> {
        Some(self.views.get(env)?.clone().write_owned().await)
    }

    pub fn is_hosted(&self, env: &str) -> bool {
        self.hosted.contains(env)
    }

    /// Writes into one environment are serialised: validation reads and the write that
    /// follows happen under this lock.
    pub async fn lock(&self, env: &str) -> tokio::sync::OwnedMutexGuard<()> {
        self.locks.lock(env).await
    }

    /// The environment, checked for the caller's organization and permission and for
    /// being hosted here. Denials are audited.
    pub async fn authorize(&self, caller: &Identity, env: &str, p: Permission) -> Result<Arc<EnvironmentInfo>, Status> {
        let info = self.directory.visible(caller, env).ok_or_else(|| environment_not_found(env))?;
        if !caller.allows(p, env) {
            self.audit_denied(caller, env, p).await;
            return Err(permission_denied(p, env));
        }
        if !self.is_hosted(env) {
            return Err(status(
                Code::FailedPrecondition,
                "ENVIRONMENT_NOT_HOSTED",
                format!("environment {env} is hosted by the installation service at {}", info.installation_service),
                [("environment", env.to_string()), ("installation_service", info.installation_service.clone())],
            ));
        }
        Ok(info)
    }

    /// Appends the event of a mutating call that failed after its input was accepted
    /// (stale plan, invalid translation map, package service down, ...): the attempt is
    /// on the record even though it changed nothing else.
    pub async fn audit_failure(
        &self,
        caller: &Identity,
        env: &str,
        action: &str,
        resource: (&str, &str),
        failure: &Status,
    ) {
        let mut event = AuditEvent::new(SERVICE_NAME, caller, env, action, resource)
            .outcome(failure.code())
            .detail("message", failure.message());
        if let Some(reason) = crate::shared::errors::reason_of(failure) {
            event = event.detail("reason", reason);
        }
        let mut changes = Changes::default();
        changes.record(event.record_key(), &event);
        if let Err(e) = self.store.write(env, changes, chrono::Utc::now()).await {
            tracing::error!(error = %e, action, "could not record a failed call's audit event");
        }
    }

    /// Appends an ACCESS_DENIED event; the denied call itself writes nothing else.
    pub async fn audit_denied(&self, caller: &Identity, env: &str, p: Permission) {
        let event = AuditEvent::new(SERVICE_NAME, caller, env, "ACCESS_DENIED", ("environment", env))
            .outcome(Code::PermissionDenied)
            .detail("permission", p.as_str());
        let mut changes = Changes::default();
        changes.record(event.record_key(), &event);
        if let Err(e) = self.store.write(env, changes, chrono::Utc::now()).await {
            tracing::error!(error = %e, "could not record an ACCESS_DENIED audit event");
        }
    }
}

impl crate::shared::audit::AuditHost for State {
    fn directory(&self) -> &Directory {
        &self.directory
    }

    fn limits(&self) -> &crate::shared::config::Limits {
        &self.config.limits
    }

    fn audit_records(&self) -> crate::shared::audit::AuditRecords<'_> {
        Box::new(self.store.scan_records(crate::shared::audit::RECORD_PREFIX, false).map(|r| r.map_err(|e| e.0)))
    }

    fn audit_denied<'a>(
        &'a self,
        caller: &'a Identity,
        env: &'a str,
        p: Permission,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(State::audit_denied(self, caller, env, p))
    }
}
