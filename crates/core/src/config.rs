//! Service configuration: the TOML schema, `PROMOTION_*` / `--set` overrides, client
//! secrets given at start (the bootstrap of a fresh deployment), and the validation
//! `promotion check-config` runs.
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
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
    /// HTTP address of the seed-001 JSON API (`/environment-promotion/v1/`) and the
    /// console; none when unset.
    #[serde(default)]
    pub http_listen: Option<SocketAddr>,
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
    /// Package services: client secrets given at start rather than as a `secret_hash` in
    /// the file, so that a fresh deployment has a client someone can log in with and no
    /// published secret: client id -> the secret, or its argon2id hash. Normally set as
    /// `PROMOTION_SECRETS__<CLIENT_ID>` (capitals, `-` written `_`). Hashed when loaded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    /// `storage.database_url` (`PROMOTION_DATABASE_URL`): a `postgres://` URL puts the
    /// service's store in that database, shared by every replica; without it the store is
    /// sled in `data_dir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageConfig>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    #[serde(default)]
    pub database_url: Option<String>,
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
    /// Normally given as PROMOTION_SERVICE_CREDENTIALS__CLIENT_SECRET; validation names
    /// that variable when it is missing.
    #[serde(default)]
    pub client_secret: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Shared HMAC-SHA256 key both services use to sign and verify tokens (≥ 32 bytes).
    /// Normally given as PROMOTION_AUTH__SIGNING_KEY; may be left out of the file, and
    /// validation then says which variable to set.
    #[serde(default)]
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
    /// Bound on one package definition (the encoded size of all its items), checked
    /// before it is stored.
    pub max_definition_bytes: usize,
    /// The embedded store's page cache per service (sled's `cache_capacity`).
    pub store_cache_bytes: u64,
}

fn default_max_definition_bytes() -> usize {
    1024 * 1024 * 1024
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
            max_definition_bytes: default_max_definition_bytes(),
            store_cache_bytes: 64 * 1024 * 1024,
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
    /// PHC string from `promotion hash-secret` (argon2id). Never the secret itself. May be
    /// left out when `secrets` (PROMOTION_SECRETS__<ID>) gives the client's secret.
    #[serde(default, skip_serializing_if = "String::is_empty")]
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
    /// The database the store lives in, when one is configured (an empty value is none).
    pub fn database_url(&self) -> Option<&str> {
        self.storage.as_ref().and_then(|s| s.database_url.as_deref()).filter(|url| !url.is_empty())
    }

    /// Reads a TOML file, applies `PROMOTION_*` environment variables and then `--set`
    /// overrides (`key.path=value`), deserialises the result and hashes the client secrets
    /// given in `secrets`.
    pub fn load(path: &Path, sets: &[String]) -> Result<Config, String> {
        Config::load_with_env(path, sets, std::env::vars())
    }

    /// [`Config::load`] with the environment given explicitly (what a service in a
    /// container or unit would see).
    pub fn load_with_env(
        path: &Path,
        sets: &[String],
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut value: toml::Value = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        apply_overrides(&mut value, env_overrides(env.into_iter()), sets)?;
        let mut config: Config = value.try_into().map_err(|e: toml::de::Error| format!("{}: {e}", path.display()))?;
        config.hash_given_secrets();
        Ok(config)
    }

    /// Gives each client named in `secrets` its secret hash (the value itself when it is
    /// already an argon2id hash). A secret from the environment wins over the file's hash,
    /// as every override does.
    fn hash_given_secrets(&mut self) {
        for (key, value) in &self.secrets {
            let hash = if argon2::PasswordHash::new(value).is_ok() {
                value.clone()
            } else if value.is_empty() {
                continue;
            } else {
                crate::secrets::hash_secret(value)
            };
            for client in self.clients.iter_mut().filter(|c| secret_key(&c.id) == secret_key(key)) {
                client.secret_hash = hash.clone();
            }
        }
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
        if self.auth.signing_key.is_empty() {
            problems.push(missing("auth.signing_key", "a random key of at least 32 bytes (openssl rand -base64 48)"));
        } else if is_placeholder(&self.auth.signing_key) {
            problems.push(placeholder("auth.signing_key"));
        } else if self.auth.signing_key.len() < 32 {
            problems.push("auth.signing_key must be at least 32 bytes".into());
        }
        if let Some(credentials) = &self.service_credentials {
            check_secret(&mut problems, "service_credentials.client_secret", &credentials.client_secret);
        }
        if let Some(url) = self.database_url() {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                problems.push(format!(
                    "storage.database_url ({}) must be a postgres:// or postgresql:// URL",
                    env_var("storage.database_url")
                ));
            }
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
            if let Err(e) = check_url(&env.installation_service) {
                problems.push(format!("environment {}: installation_service {e}", env.id));
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
            if client.secret_hash.is_empty() {
                problems.push(format!(
                    "client {}: no secret: set {} (the secret, or `promotion hash-secret` of it) or its secret_hash",
                    client.id,
                    env_var(&format!("secrets.{}", secret_key(&client.id)))
                ));
            } else if PUBLISHED_SECRET_HASHES.contains(&client.secret_hash.as_str()) {
                problems.push(format!(
                    "client {}: secret_hash is the hash of a placeholder secret this repository published; \
                     replace it",
                    client.id
                ));
            } else if argon2::PasswordHash::new(&client.secret_hash).is_err() {
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
        // Only a package service has clients; an installation service ignores `secrets`.
        for (key, value) in self.secrets.iter().filter(|_| kind == ServiceKind::Package) {
            let path = format!("secrets.{key}");
            let clients = self.clients.iter().filter(|c| secret_key(&c.id) == secret_key(key)).count();
            if clients == 0 {
                problems.push(format!("{path} ({}) names no client of [[clients]]", env_var(&path)));
            } else if clients > 1 {
                problems.push(format!(
                    "{path} ({}) matches {clients} clients; their ids differ only in - and _",
                    env_var(&path)
                ));
            }
            if argon2::PasswordHash::new(value).is_err() {
                check_secret(&mut problems, &path, value);
            }
        }
        match kind {
            ServiceKind::Package => {
                if self.clients.is_empty() {
                    problems.push("a package service needs at least one client".into());
                }
            }
            ServiceKind::Installation => {
                match &self.package_service {
                    None => problems.push("an installation service needs package_service".into()),
                    Some(url) => {
                        if let Err(e) = check_url(url) {
                            problems.push(format!("package_service {e}"));
                        }
                    }
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

    /// The secrets of this configuration that development mode publishes (its signing
    /// key, its demo clients' secrets): fine for trying things, never for a deployment.
    /// `check-config` refuses them; a service started with them warns.
    pub fn demo_secrets(&self) -> Vec<String> {
        let mut found = Vec::new();
        let mut check = |path: &str, value: &str| {
            if DEMO_SECRETS.contains(&value) {
                found.push(format!(
                    "{path} is a secret development mode publishes: set {} to a secret of your own",
                    env_var(path)
                ));
            }
        };
        check("auth.signing_key", &self.auth.signing_key);
        if let Some(credentials) = &self.service_credentials {
            check("service_credentials.client_secret", &credentials.client_secret);
        }
        for (key, value) in &self.secrets {
            check(&format!("secrets.{key}"), value);
        }
        found
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

/// The top-level keys a `PROMOTION_<KEY>` variable overrides (`PROMOTION_LISTEN`).
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "listen",
    "admin_listen",
    "http_listen",
    "data_dir",
    "log_format",
    "package_service",
    "hosted_environments",
    "organizations",
    "environments",
    "clients",
    "catalog_files",
];

/// The sections whose keys `PROMOTION_<SECTION>__<KEY>` variables override
/// (`PROMOTION_AUTH__SIGNING_KEY`).
pub const SECTIONS: &[&str] = &["auth", "limits", "service_credentials", "secrets", "storage"];

/// Short names kept for keys people expect a conventional variable for.
const ALIASES: &[(&str, &str)] = &[("PROMOTION_DATABASE_URL", "storage.database_url")];

/// The configuration key a variable overrides, if it is in the configuration's namespace:
/// `PROMOTION_<TOP_LEVEL_KEY>`, `PROMOTION_<SECTION>__<KEY>` (deeper levels also joined by
/// `__`) or an alias. Everything else — the command line's and development mode's own
/// variables (`PROMOTION_CONFIG`, `PROMOTION_DEV_DATA_DIR`, `PROMOTION_TOKEN`...) — is never
/// read as configuration, so a variable meant for them cannot break a service.
pub fn env_override_key(name: &str) -> Option<String> {
    if let Some((_, key)) = ALIASES.iter().find(|(alias, _)| *alias == name) {
        return Some(key.to_string());
    }
    let rest = name.strip_prefix("PROMOTION_")?.to_ascii_lowercase();
    match rest.split_once("__") {
        Some((section, key)) if SECTIONS.contains(&section) && !key.is_empty() => {
            Some(format!("{section}.{}", key.replace("__", ".")))
        }
        None if TOP_LEVEL_KEYS.contains(&rest.as_str()) => Some(rest),
        _ => None,
    }
}

/// The variable that overrides `key` (`auth.signing_key` -> `PROMOTION_AUTH__SIGNING_KEY`),
/// for messages that tell an operator what to set.
pub fn env_var(key: &str) -> String {
    if let Some((alias, _)) = ALIASES.iter().find(|(_, k)| *k == key) {
        return alias.to_string();
    }
    format!("PROMOTION_{}", key.to_ascii_uppercase().replace('-', "_").replace('.', "__"))
}

/// How a client id is spelt as a `secrets` key: environment variable names have no `-`
/// and come lowercased.
fn secret_key(id: &str) -> String {
    id.to_ascii_lowercase().replace('-', "_")
}

/// Secrets development mode uses; published in this repository, so never for a deployment.
pub const DEMO_SECRETS: &[&str] = &[
    "development-mode-signing-key-do-not-use-in-production",
    "admin-secret",
    "alice-secret",
    "bob-secret",
    "erin-secret",
    "gina-secret",
    "victor-secret",
    "installation-service-secret",
];

/// Hashes this repository's example files once shipped, of secrets written next to them.
const PUBLISHED_SECRET_HASHES: &[&str] = &[
    "$argon2id$v=19$m=19456,t=2,p=1$Q0/EKzoOuXkcMKHMABDtyw$1w+ZTnQTgkhQFK2bhIC6qF94Yu95aT59JOhLv/cW1ds",
    "$argon2id$v=19$m=19456,t=2,p=1$NZb0G7RisS6lRpQdcZz7Rw$T3wdWV1Y6tvNLyWYEolPTXcayM/LegJvyEXr2vNoBkA",
];

/// The shortest secret a client may be given in a configuration.
const MIN_SECRET_CHARS: usize = 16;

/// A value the example files tell people to replace.
fn is_placeholder(value: &str) -> bool {
    let upper = value.to_ascii_uppercase();
    ["REPLACE-ME", "REPLACE_ME", "CHANGE-ME", "CHANGEME", "<SECRET>"].iter().any(|p| upper.contains(p))
}

fn missing(key: &str, what: &str) -> String {
    format!("{key} is not set: set {} to {what}, or write it in the file", env_var(key))
}

fn placeholder(key: &str) -> String {
    format!("{key} is a published placeholder: set {} to a secret of your own", env_var(key))
}

fn check_secret(problems: &mut Vec<String>, key: &str, value: &str) {
    if value.is_empty() {
        problems.push(missing(key, "the secret"));
    } else if is_placeholder(value) {
        problems.push(placeholder(key));
    } else if value.chars().count() < MIN_SECRET_CHARS {
        problems.push(format!("{key} must be at least {MIN_SECRET_CHARS} characters"));
    }
}

/// Service addresses are URLs: `http://host:port` or `https://host:port`.
fn check_url(url: &str) -> Result<(), String> {
    let bad = || format!("{url:?} is not a URL: write http://HOST:PORT or https://HOST:PORT");
    let uri: http::Uri = url.parse().map_err(|_| bad())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let host_ok = uri.host().is_some_and(|h| !h.is_empty());
    let path_ok = matches!(uri.path(), "" | "/") && uri.query().is_none();
    if scheme_ok && host_ok && path_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// `PROMOTION_LIMITS__MAX_PAGE_SIZE=500` becomes `limits.max_page_size=500`; variables
/// outside the configuration's namespace ([`env_override_key`]) are left alone.
fn env_overrides(vars: impl Iterator<Item = (String, String)>) -> Vec<String> {
    let mut overrides: Vec<String> = vars.filter_map(|(k, v)| Some(format!("{}={v}", env_override_key(&k)?))).collect();
    // The environment's order is arbitrary; a fixed one makes a run reproducible.
    overrides.sort();
    overrides
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
    fn the_override_namespace_covers_every_key_of_the_schema() {
        let package: Config = toml::from_str(TWO_ORGANIZATIONS).unwrap();
        let mut installation = package.clone();
        installation.admin_listen = Some("127.0.0.1:3".parse().unwrap());
        installation.package_service = Some("http://127.0.0.1:1".into());
        installation.hosted_environments = vec!["dev".into()];
        installation.service_credentials =
            Some(ServiceCredentials { client_id: "installation".into(), client_secret: "s".repeat(20) });
        for config in [package, installation] {
            let table = toml::Table::try_from(&config).unwrap();
            for (key, value) in table {
                let known = if value.is_table() { SECTIONS } else { TOP_LEVEL_KEYS };
                assert!(known.contains(&key.as_str()), "{key} has no PROMOTION_* override");
            }
        }
        assert_eq!(env_override_key("PROMOTION_LIMITS__MAX_PAGE_SIZE").as_deref(), Some("limits.max_page_size"));
        assert_eq!(env_override_key("PROMOTION_SECRETS__PLATFORM_ADMIN").as_deref(), Some("secrets.platform_admin"));
        assert_eq!(env_override_key("PROMOTION_DEV_DATA_DIR"), None);
        assert_eq!(env_override_key("PROMOTION_LIMITS"), None);
        assert_eq!(env_override_key("PROMOTION_NOT_A_SECTION__KEY"), None);
        assert_eq!(env_var("secrets.platform_admin"), "PROMOTION_SECRETS__PLATFORM_ADMIN");
        assert_eq!(env_var("storage.database_url"), "PROMOTION_DATABASE_URL");
    }

    #[test]
    fn urls_need_a_scheme_and_a_host() {
        for good in ["http://127.0.0.1:50051", "https://promo.example.com", "http://installation-dev-qa:50052/"] {
            assert!(check_url(good).is_ok(), "{good}");
        }
        for bad in ["127.0.0.1:50051", "ftp://x:1", "http://", "http://host:1/path", "installation-dev-qa"] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
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
