//! What every package-service operation shares: configuration, the environment directory,
//! the store, the token signer, watchers, the extraction slots, the object source, the
//! installation check, and the audit of denied calls.
use std::sync::Arc;

use promotion_core::audit::AuditEvent;
use promotion_core::config::Config;
use promotion_core::cursor::PageTokens;
use promotion_core::directory::Directory;
use promotion_core::identity::Identity;
use promotion_core::tokens::TokenSigner;
use promotion_core::AccessError;
use promotion_store::package::PackageRecord;
use promotion_store::shared::PageTokenKey;
use promotion_store::{PackageStore, StoreError};

use crate::installation_check::InstallationCheck;
use crate::source::ObjectSource;
use crate::watch::WatchHub;

pub const SERVICE_NAME: &str = "package-service";
/// Extractions running at once; each holds one package's objects in memory.
pub const EXTRACTION_SLOTS: usize = 2;

pub struct State {
    pub config: Config,
    pub directory: Directory,
    pub store: Arc<dyn PackageStore>,
    pub signer: Arc<TokenSigner>,
    pub watchers: WatchHub,
    pub extraction_slots: Arc<tokio::sync::Semaphore>,
    /// Where extractions read objects from (the installation services).
    pub source: Arc<dyn ObjectSource>,
    /// Where RecordInstallation reports are checked (the installation services).
    pub installations: Arc<dyn InstallationCheck>,
    stopping: tokio::sync::watch::Sender<bool>,
    page_tokens: PageTokenKey,
}

impl State {
    pub fn new(
        config: Config,
        directory: Directory,
        store: Arc<dyn PackageStore>,
        signer: Arc<TokenSigner>,
        source: Arc<dyn ObjectSource>,
        installations: Arc<dyn InstallationCheck>,
    ) -> Self {
        State {
            config,
            directory,
            store,
            signer,
            watchers: WatchHub::default(),
            extraction_slots: Arc::new(tokio::sync::Semaphore::new(EXTRACTION_SLOTS)),
            source,
            installations,
            stopping: tokio::sync::watch::channel(false).0,
            page_tokens: PageTokenKey::default(),
        }
    }

    /// Issues and opens this service's page tokens (its key is kept in the store).
    pub async fn page_tokens(&self) -> Result<&PageTokens, StoreError> {
        self.page_tokens.get(self.store.as_ref()).await
    }

    /// Tells long-lived calls (WatchPackage) that the service is shutting down.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// Appends an ACCESS_DENIED event; the denied call itself writes nothing else.
    pub async fn audit_denied(&self, caller: &Identity, denial: &AccessError) {
        let Some(event) = AuditEvent::access_denied(SERVICE_NAME, caller, denial) else { return };
        if let Err(e) = self.store.commit(None, vec![PackageRecord::audit(event)]).await {
            tracing::error!(error = %e, "could not record an ACCESS_DENIED audit event");
        }
    }
}
