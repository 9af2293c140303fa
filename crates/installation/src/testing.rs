//! Test fixtures: every domain suite runs against the memory, sled and PostgreSQL stores
//! alike, through the same storage traits.
use std::sync::Arc;

use promotion_core::objects::{ConfigObject, ObjectKey};
use promotion_store::installation::{Committed, EnvState, EnvWrite};
use promotion_store::pg_scratch::ScratchSchema;
use promotion_store::{InstallationStore, Result};

/// One store under test, and what keeps it alive.
pub struct Fixture {
    pub store: Arc<dyn InstallationStore>,
    _dir: Option<tempfile::TempDir>,
    _schema: Option<ScratchSchema>,
}

impl Fixture {
    pub fn memory() -> Fixture {
        Fixture { store: promotion_store::memory_installation_store(), _dir: None, _schema: None }
    }

    pub fn sled() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = promotion_store::open_installation_store(dir.path()).unwrap();
        Fixture { store, _dir: Some(dir), _schema: None }
    }

    /// A store in a schema of its own on the test PostgreSQL server; None (said once) where
    /// no server answers outside CI.
    pub fn postgres() -> Option<Fixture> {
        let schema = ScratchSchema::create()?;
        let store = promotion_store::open_installation_store_pg(&schema.url()).unwrap();
        Some(Fixture { store, _dir: None, _schema: Some(schema) })
    }
}

/// Every implementation, for a suite to run against each.
pub fn stores() -> Vec<Fixture> {
    let mut all = vec![Fixture::memory(), Fixture::sled()];
    all.extend(Fixture::postgres());
    all
}

/// Shorthands tests use on any store.
#[async_trait::async_trait]
pub trait TestStore {
    /// One atomic write, under the environment's lock.
    async fn write(&self, env: &str, write: EnvWrite) -> Result<Committed>;
    async fn object(&self, env: &str, code: &str, id: &str) -> Option<ConfigObject>;
    async fn state(&self, env: &str) -> EnvState;
}

#[async_trait::async_trait]
impl TestStore for dyn InstallationStore + '_ {
    async fn write(&self, env: &str, write: EnvWrite) -> Result<Committed> {
        self.lock(env).await?.commit(write).await
    }

    async fn object(&self, env: &str, code: &str, id: &str) -> Option<ConfigObject> {
        self.get(env, &ObjectKey::new(code, id)).await.unwrap()
    }

    async fn state(&self, env: &str) -> EnvState {
        self.env_state(env).await.unwrap()
    }
}

/// What an installation service hosting acme's `dev`, `qa` (sandboxes) and `prod`
/// shares, without a package service, on one store.
pub fn state_on(fixture: &Fixture) -> crate::State {
    let environment = |id: &str, kind: &str| serde_json::json!({"id": id, "organization": "acme", "kind": kind, "installation_service": "http://127.0.0.1:1"});
    let config: promotion_core::config::Config = serde_json::from_value(serde_json::json!({
        "listen": "127.0.0.1:0",
        "data_dir": "unused",
        "hosted_environments": ["dev", "qa", "prod"],
        "auth": {"signing_key": "a-test-signing-key-of-at-least-thirty-two-bytes"},
        "organizations": [{"id": "acme", "catalog": "workfront", "display_name": "Acme"}],
        "environments": [environment("dev", "sandbox"), environment("qa", "sandbox"), environment("prod", "production")],
    }))
    .expect("the test configuration parses");
    let catalogs = promotion_core::catalog::Catalogs::builtin();
    let directory = promotion_core::directory::Directory::from_config(&config, &catalogs);
    let signer = Arc::new(promotion_core::tokens::TokenSigner::new(config.auth.signing_key.as_bytes(), "test"));
    crate::State::new(config, directory, fixture.store.clone(), signer, None)
}
