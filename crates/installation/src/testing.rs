//! Test fixtures: every domain suite runs against the memory store and the sled store
//! alike, through the same storage traits.
use std::sync::Arc;

use promotion_core::objects::{ConfigObject, ObjectKey};
use promotion_store::installation::{Committed, EnvState, EnvWrite};
use promotion_store::{InstallationStore, Result};

/// One store under test, and what keeps it alive.
pub struct Fixture {
    pub store: Arc<dyn InstallationStore>,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    pub fn memory() -> Fixture {
        Fixture { store: promotion_store::memory_installation_store(), _dir: None }
    }

    pub fn sled() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = promotion_store::open_installation_store(dir.path()).unwrap();
        Fixture { store, _dir: Some(dir) }
    }
}

/// Both implementations, for a suite to run against each.
pub fn stores() -> [Fixture; 2] {
    [Fixture::memory(), Fixture::sled()]
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
