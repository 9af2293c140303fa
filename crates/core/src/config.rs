//! Service configuration: the TOML schema, `PROMOTION_*` / `--set` overrides, and the
//! validation `promotion check-config` runs.
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::catalog::Catalogs;
use crate::identity::Role;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Admin HTTP address serving `GET /metrics` (Prometheus) and `GET /healthz`; none
    /// when unset.
    #[serde(default)]
    pub admin_listen: Option<SocketAddr>,
    /// Where this service keeps its sled database.
    pub data_dir: PathBuf,
    #[serde(default)]
    pub log_format: LogFormat,
    /// Installation services: the package service's address (e.g. http://127.0.0.1:50051).
    #[serde(default)]
    pub package_service: Option<String>,
    /// Installation services: the environments this instance hosts.
    #[serde(default)]
    pub hosted_environments: Vec<String>,
    /// Installation services: own credentials, used for work that outlives a caller's call.
    #[serde(default)]
    pub service_credentials: Option<ServiceCredentials>,
    pub auth: AuthConfig,
    #[serde(default)]
    pub limits: Limits,
    pub organizations: Vec<Organization>,
    pub environments: Vec<EnvironmentEntry>,
    /// Package services: the clients that may ask for tokens.
    #[serde(default)]
    pub clients: Vec<ClientEntry>,
    /// Extra catalog files (TOML or JSON) next to the built-in `workfront` and `apim`.
    #[serde(default)]
    pub catalog_files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceCredentials {
    pub client_id: String,
    pub client_secret: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Shared HMAC-SHA256 key both services use to sign and verify tokens (≥ 32 bytes).
    pub signing_key: String,
    #[serde(default = "default_token_ttl")]
    pub default_ttl_seconds: i64,
    #[serde(default = "default_max_token_ttl")]
    pub max_ttl_seconds: i64,
    #[serde(default = "default_issuer")]
    pub issuer: String,
}

fn default_token_ttl() -> i64 {
    3600
}
fn default_max_token_ttl() -> i64 {
    86_400
}
fn default_issuer() -> String {
    "promotion".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest gRPC message either way.
    pub max_message_bytes: usize,
    pub default_page_size: i32,
    pub max_page_size: i32,
    pub max_objects_per_put: usize,
    pub max_package_objects: usize,
    pub pre_run_ttl_seconds: i64,
    /// Bound on each streamed chunk (definition, export).
    pub stream_chunk_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 16 * 1024 * 1024,
            default_page_size: 50,
            max_page_size: 1000,
            max_objects_per_put: 10_000,
            max_package_objects: 200_000,
            pre_run_ttl_seconds: 24 * 3600,
            stream_chunk_bytes: 512 * 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Organization {
    pub id: String,
    pub catalog: String,
    #[serde(default)]
    pub display_name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvironmentKind {
    Sandbox,
    Production,
}

/// One row of the environment directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentEntry {
    pub id: String,
    pub organization: String,
    pub kind: EnvironmentKind,
    #[serde(default)]
    pub display_name: String,
    /// Address of the installation service hosting it.
    pub installation_service: String,
    /// Defaults to the organization's catalog.
    #[serde(default)]
    pub catalog: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientEntry {
    pub id: String,
    /// PHC string from `promotion hash-secret` (argon2id). Never the secret itself.
    pub secret_hash: String,
    pub organization: String,
    #[serde(default)]
    pub bindings: Vec<BindingEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BindingEntry {
    pub role: Role,
    /// An environment id, or "*" for every environment of the organization.
    pub environment: String,
}

/// Which service a configuration is for; they need different sections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    Package,
    Installation,
}

impl Config {
    /// Reads a TOML file, applies `PROMOTION_*` environment variables and then `--set`
    /// overrides (`key.path=value`), and deserialises the result.
    pub fn load(path: &Path, sets: &[String]) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut value: toml::Value = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        apply_overrides(&mut value, env_overrides(std::env::vars()), sets)?;
        value.try_into().map_err(|e: toml::de::Error| format!("{}: {e}", path.display()))
    }

    /// Semantic checks beyond the schema. Returns every problem found, not just the first.
    pub fn validate(&self, kind: ServiceKind) -> Result<Catalogs, Vec<String>> {
        let mut problems = Vec::new();
        let mut catalogs = Catalogs::builtin();
        for file in &self.catalog_files {
            match crate::catalog::Catalog::load_file(file).and_then(|c| catalogs.add(c)) {
                Ok(()) => {}
                Err(e) => problems.push(e),
            }
        }
        if self.auth.signing_key.len() < 32 {
            problems.push("auth.signing_key must be at least 32 bytes".into());
        }
        if self.auth.default_ttl_seconds <= 0 || self.auth.max_ttl_seconds < self.auth.default_ttl_seconds {
            problems.push("auth: need 0 < default_ttl_seconds <= max_ttl_seconds".into());
        }
        let l = &self.limits;
        if l.max_message_bytes < 1024 * 1024 + 64 * 1024 {
            problems.push("limits.max_message_bytes must be at least 1.0625 MiB".into());
        }
        if l.default_page_size <= 0 || l.max_page_size < l.default_page_size {
            problems.push("limits: need 0 < default_page_size <= max_page_size".into());
        }
        if l.stream_chunk_bytes == 0 || l.stream_chunk_bytes > 1024 * 1024 - 64 * 1024 {
            problems.push("limits.stream_chunk_bytes must be between 1 and 960 KiB".into());
        }
        if l.pre_run_ttl_seconds <= 0 {
            problems.push("limits.pre_run_ttl_seconds must be positive".into());
        }
        let mut orgs = BTreeSet::new();
        for org in &self.organizations {
            if !is_valid_name(&org.id) {
                problems.push(format!("organization id {:?} must be 1-63 of [a-z0-9-]", org.id));
            }
            if !orgs.insert(org.id.as_str()) {
                problems.push(format!("organization {} is defined twice", org.id));
            }
            if catalogs.get(&org.catalog).is_none() {
                problems.push(format!("organization {}: unknown catalog {}", org.id, org.catalog));
            }
        }
        let mut envs = BTreeSet::new();
        for env in &self.environments {
            if !is_valid_name(&env.id) {
                problems.push(format!("environment id {:?} must be 1-63 of [a-z0-9-]", env.id));
            }
            if !envs.insert(env.id.as_str()) {
                problems.push(format!("environment {} is defined twice", env.id));
            }
            if !orgs.contains(env.organization.as_str()) {
                problems.push(format!("environment {}: unknown organization {}", env.id, env.organization));
            }
            if let Some(c) = &env.catalog {
                if catalogs.get(c).is_none() {
                    problems.push(format!("environment {}: unknown catalog {c}", env.id));
                }
            }
            if !env.installation_service.starts_with("http://") && !env.installation_service.starts_with("https://") {
                problems.push(format!("environment {}: installation_service must be an http(s):// address", env.id));
            }
        }
        let mut clients = BTreeSet::new();
        for client in &self.clients {
            if !clients.insert(client.id.as_str()) {
                problems.push(format!("client {} is defined twice", client.id));
            }
            if !orgs.contains(client.organization.as_str()) {
                problems.push(format!("client {}: unknown organization {}", client.id, client.organization));
            }
            if argon2::PasswordHash::new(&client.secret_hash).is_err() {
                problems
                    .push(format!("client {}: secret_hash is not a PHC hash (use `promotion hash-secret`)", client.id));
            }
            for b in &client.bindings {
                // An installation service's internal identity reports installations into
                // the environments it hosts, which may belong to several organizations.
                let same_org = |e: &EnvironmentEntry| e.organization == client.organization || b.role == Role::Internal;
                let env_ok =
                    b.environment == "*" || self.environments.iter().any(|e| e.id == b.environment && same_org(e));
                if !env_ok {
                    problems.push(format!(
                        "client {}: binding on unknown environment {} of {}",
                        client.id, b.environment, client.organization
                    ));
                }
            }
        }
        match kind {
            ServiceKind::Package => {
                if self.clients.is_empty() {
                    problems.push("a package service needs at least one client".into());
                }
            }
            ServiceKind::Installation => {
                if self.package_service.is_none() {
                    problems.push("an installation service needs package_service".into());
                }
                if self.hosted_environments.is_empty() {
                    problems.push("an installation service needs hosted_environments".into());
                }
                for id in &self.hosted_environments {
                    if !envs.contains(id.as_str()) {
                        problems.push(format!("hosted environment {id} is not in the environment directory"));
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(catalogs)
        } else {
            Err(problems)
        }
    }

    pub fn environment(&self, id: &str) -> Option<&EnvironmentEntry> {
        self.environments.iter().find(|e| e.id == id)
    }

    /// The catalog name an environment uses.
    pub fn catalog_of<'a>(&'a self, env: &'a EnvironmentEntry) -> Option<&'a str> {
        env.catalog
            .as_deref()
            .or_else(|| self.organizations.iter().find(|o| o.id == env.organization).map(|o| o.catalog.as_str()))
    }
}

fn is_valid_name(id: &str) -> bool {
    (1..=63).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `PROMOTION_LIMITS__MAX_PAGE_SIZE=500` becomes `limits.max_page_size=500`. The
/// variables the CLI itself reads (config path, server addresses) are not config keys.
fn env_overrides(vars: impl Iterator<Item = (String, String)>) -> Vec<String> {
    const NOT_KEYS: &[&str] = &[
        "CONFIG",
        "PACKAGE_ADDR",
        "INSTALLATION_ADDR",
        "TOKEN",
        "SERVER",
        "OUTPUT",
        "CONFIG_DIR",
        "CLIENT_ID",
        "CLIENT_SECRET",
    ];
    vars.filter_map(|(k, v)| {
        let key = k.strip_prefix("PROMOTION_")?;
        if NOT_KEYS.contains(&key) {
            return None;
        }
        Some(format!("{}={v}", key.to_ascii_lowercase().replace("__", ".")))
    })
    .collect()
}

fn apply_overrides(root: &mut toml::Value, env: Vec<String>, sets: &[String]) -> Result<(), String> {
    for item in env.iter().chain(sets) {
        let (path, raw) = item.split_once('=').ok_or_else(|| format!("override {item:?} is not key.path=value"))?;
        // A value that parses as TOML (number, bool, array) keeps its type; else a string.
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.to_string()));
        set_path(root, path, value)?;
    }
    Ok(())
}

fn set_path(root: &mut toml::Value, path: &str, value: toml::Value) -> Result<(), String> {
    let mut node = root;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let table =
            node.as_table_mut().ok_or_else(|| format!("override {path}: {part} is inside a non-table value"))?;
        if i + 1 == parts.len() {
            table.insert(part.to_string(), value);
            return Ok(());
        }
        node = table.entry(part.to_string()).or_insert_with(|| toml::Value::Table(Default::default()));
    }
    Err(format!("override {path:?} has an empty key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_ORGANIZATIONS: &str = r#"
listen = "127.0.0.1:1"
data_dir = "/tmp/unused"
[auth]
signing_key = "0123456789abcdef0123456789abcdef-test"
[[organizations]]
id = "acme"
catalog = "workfront"
[[organizations]]
id = "globex"
catalog = "apim"
[[environments]]
id = "dev"
organization = "acme"
kind = "sandbox"
installation_service = "http://127.0.0.1:2"
[[environments]]
id = "globex-dev"
organization = "globex"
kind = "sandbox"
installation_service = "http://127.0.0.1:2"
[[clients]]
id = "alice"
secret_hash = "$argon2id$v=19$m=19456,t=2,p=1$fdlt1y8f3/DpLAoxw+4N6w$OQ2QnZhpvAUkUe4UB3M4zdsnvqG+OJU6dIn9PYSgA/w"
organization = "acme"
bindings = [{ role = "publisher", environment = "dev" }]
"#;

    #[test]
    fn only_internal_identities_bind_other_organizations_environments() {
        let mut package: Config = toml::from_str(TWO_ORGANIZATIONS).unwrap();
        package.validate(ServiceKind::Package).expect("dev mode's configuration is valid");
        let alice = package.clients.iter_mut().find(|c| c.id == "alice").unwrap();
        alice.bindings.push(BindingEntry { role: Role::Publisher, environment: "globex-dev".into() });
        let problems = package.validate(ServiceKind::Package).unwrap_err();
        assert!(problems.iter().any(|p| p.contains("alice") && p.contains("globex-dev")), "{problems:?}");
    }

    #[test]
    fn overrides_keep_types_and_create_tables() {
        let mut v: toml::Value = toml::from_str("listen = \"127.0.0.1:1\"\n[limits]\nmax_page_size = 10").unwrap();
        let env = env_overrides(
            [("PROMOTION_LIMITS__MAX_PAGE_SIZE".to_string(), "500".to_string()), ("HOME".into(), "/".into())]
                .into_iter(),
        );
        apply_overrides(&mut v, env, &["listen=127.0.0.1:2".into(), "auth.issuer=me".into()]).unwrap();
        assert_eq!(v["limits"]["max_page_size"].as_integer(), Some(500));
        assert_eq!(v["listen"].as_str(), Some("127.0.0.1:2"));
        assert_eq!(v["auth"]["issuer"].as_str(), Some("me"));
        assert!(apply_overrides(&mut v, vec![], &["novalue".into()]).is_err());
    }
}
