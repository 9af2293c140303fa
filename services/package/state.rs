//! What every package-service handler shares: configuration, the environment directory,
//! the store, the token signer, per-key write locks, watchers, the extraction slots, and
//! the audit of denied calls.
use crate::shared::locks::KeyedLocks;
use std::sync::Arc;
use tonic::Code;

use super::store::{Store, Write};
use super::watch::WatchHub;
use crate::shared::audit::AuditEvent;
use crate::shared::auth::{Identity, Permission, TokenSigner};
use crate::shared::config::Config;
use crate::shared::directory::Directory;

pub const SERVICE_NAME: &str = "package-service";
/// Extractions running at once; each holds one package's objects in memory.
pub const EXTRACTION_SLOTS: usize = 2;

pub struct State {
    pub config: Config,
    pub directory: Directory,
    pub store: Store,
    pub signer: Arc<TokenSigner>,
    pub watchers: WatchHub,
    pub extraction_slots: Arc<tokio::sync::Semaphore>,
    locks: KeyedLocks,
    stopping: tokio::sync::watch::Sender<bool>,
}

impl State {
    pub fn new(config: Config, directory: Directory, store: Store, signer: Arc<TokenSigner>) -> Self {
        State {
            config,
            directory,
            store,
            signer,
            watchers: WatchHub::default(),
            extraction_slots: Arc::new(tokio::sync::Semaphore::new(EXTRACTION_SLOTS)),
            locks: KeyedLocks::default(),
            stopping: tokio::sync::watch::channel(false).0,
        }
    }

    /// Read-modify-write of one record (a package, a request id) happens under its lock.
    pub async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        self.locks.lock(key).await
    }

    /// Tells long-lived calls (WatchPackage) that the service is shutting down.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
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

impl crate::shared::audit::AuditHost for State {
    fn directory(&self) -> &Directory {
        &self.directory
    }

    fn limits(&self) -> &crate::shared::config::Limits {
        &self.config.limits
    }

    fn audit_records(&self) -> crate::shared::audit::AuditRecords<'_> {
        Box::new(self.store.scan(crate::shared::audit::RECORD_PREFIX, false).map(|r| r.map_err(|e| e.0)))
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
