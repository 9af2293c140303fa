//! Test fixtures: package-service state over the memory, sled and PostgreSQL stores alike,
//! with an object source that is never reached (tests hand extraction results in) and
//! installation services holding exactly the installations a test says.
use async_trait::async_trait;
use std::sync::Arc;

use promotion_core::config::{Config, ServiceKind};
use promotion_core::directory::{Directory, EnvironmentInfo};
use promotion_core::identity::Credentials;
use promotion_core::objects::ObjectCollection;
use promotion_core::tokens::TokenSigner;
use promotion_core::upstream::UpstreamError;

use promotion_store::pg_scratch::ScratchSchema;

use crate::installation_check::{InstallationCheck, Installed};
use crate::source::{Exported, ObjectSource};
use crate::State;

const CONFIG: &str = r#"
listen = "127.0.0.1:1"
data_dir = "/nonexistent"
[auth]
signing_key = "package-tests-signing-key-0123456789abcdef"
[[organizations]]
id = "acme"
catalog = "workfront"
[[environments]]
id = "dev"
organization = "acme"
kind = "sandbox"
installation_service = "http://127.0.0.1:9"
[[clients]]
id = "alice"
secret_hash = "$argon2id$v=19$m=19456,t=2,p=1$fdlt1y8f3/DpLAoxw+4N6w$OQ2QnZhpvAUkUe4UB3M4zdsnvqG+OJU6dIn9PYSgA/w"
organization = "acme"
bindings = [{ role = "publisher", environment = "dev" }]
"#;

struct Unreachable;

#[async_trait]
impl ObjectSource for Unreachable {
    async fn export(
        &self,
        _: &EnvironmentInfo,
        _: &[ObjectCollection],
        _: Option<&Credentials>,
        _: usize,
    ) -> Result<Exported, String> {
        Err("no object source in these tests".into())
    }
}

/// The installations the installation services hold: (destination, installation).
#[derive(Default)]
pub struct Holding(std::sync::Mutex<Vec<(String, Installed)>>);

impl Holding {
    pub fn hold(&self, destination: &str, installed: Installed) {
        self.0.lock().unwrap().push((destination.to_string(), installed));
    }
}

#[async_trait]
impl InstallationCheck for Holding {
    async fn check(
        &self,
        destination: &EnvironmentInfo,
        installed: &Installed,
        _: &Credentials,
    ) -> Result<(), UpstreamError> {
        if self.0.lock().unwrap().iter().any(|(d, i)| *d == destination.id && i == installed) {
            Ok(())
        } else {
            let message = format!("installation {} not found", installed.installation_id);
            Err(UpstreamError::new(promotion_core::Code::NotFound, "INSTALLATION_NOT_FOUND", message))
        }
    }
}

/// One state under test, and what keeps its store alive.
pub struct Fixture {
    pub state: State,
    /// What the installation services confirm to RecordInstallation.
    pub installations: Arc<Holding>,
    _dir: Option<tempfile::TempDir>,
    _schema: Option<ScratchSchema>,
}

fn state(store: Arc<dyn promotion_store::PackageStore>, installations: Arc<Holding>) -> State {
    let config: Config = toml::from_str(CONFIG).expect("the test configuration parses");
    let catalogs = config.validate(ServiceKind::Package).expect("the test configuration is valid");
    let directory = Directory::from_config(&config, &catalogs);
    let signer = Arc::new(
        TokenSigner::new(config.auth.signing_key.as_bytes(), &config.auth.issuer)
            .with_max_lifetime(config.auth.max_ttl_seconds),
    );
    State::new(config, directory, store, signer, Arc::new(Unreachable), installations)
}

/// The same state on every store implementation (PostgreSQL where a server answers;
/// `ScratchSchema` says when it does not, and fails under CI).
pub fn states() -> Vec<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let sled = promotion_store::open_package_store(dir.path()).unwrap();
    let fixture = |store, dir, schema| {
        let installations = Arc::new(Holding::default());
        Fixture { state: state(store, installations.clone()), installations, _dir: dir, _schema: schema }
    };
    let mut all = vec![fixture(promotion_store::memory_package_store(), None, None), fixture(sled, Some(dir), None)];
    if let Some(schema) = ScratchSchema::create() {
        let store = promotion_store::open_package_store_pg(&schema.url()).unwrap();
        all.push(fixture(store, None, Some(schema)));
    }
    all
}
