//! Runs both services in one process on loopback with the demo organizations,
//! environments, clients and seeded configuration of the brief's section 8.
use std::net::SocketAddr;
use std::path::PathBuf;

use promotion_core::config::{
    AuthConfig, BindingEntry, ClientEntry, Config, EnvironmentEntry, EnvironmentKind, Limits, LogFormat, Organization,
    ServiceCredentials, StorageConfig,
};
use promotion_core::identity::{Identity, Role};
use promotion_core::objects::ConfigObject;
use promotion_core::policy::EnvironmentPolicy;
use promotion_core::secrets::hash_secret;
use promotion_installation::{environments, policies, server as installation_server};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Only for development mode: a real deployment configures its own key.
const DEV_SIGNING_KEY: &str = "development-mode-signing-key-do-not-use-in-production";
/// The demo configuration, one list of objects per environment (see the file's `_about`).
const DEMO: &str = include_str!("../demo.json");

pub struct DevOptions {
    pub data_dir: PathBuf,
    /// Both services' store in this PostgreSQL database instead of sled in `data_dir`.
    pub database_url: Option<String>,
    pub package_addr: SocketAddr,
    pub installation_addr: SocketAddr,
    /// The one HTTP address serving both services' JSON API.
    pub http_addr: SocketAddr,
    pub log_format: LogFormat,
}

/// The demo clients: id, secret, organization, bindings.
/// id, secret, organization, role bindings.
type DemoClient = (&'static str, &'static str, &'static str, &'static [(Role, &'static str)]);

pub const DEMO_CLIENTS: &[DemoClient] = &[
    ("admin", "admin-secret", "acme", &[(Role::Admin, "*")]),
    ("alice", "alice-secret", "acme", &[(Role::Publisher, "dev"), (Role::Publisher, "qa")]),
    ("bob", "bob-secret", "acme", &[(Role::Deployer, "qa"), (Role::Deployer, "prod")]),
    ("gina", "gina-secret", "globex", &[(Role::Admin, "*")]),
    ("victor", "victor-secret", "acme", &[(Role::Viewer, "*")]),
    ("erin", "erin-secret", "acme", &[(Role::Editor, "dev"), (Role::Editor, "qa")]),
    // The installation service's own identity may report installations into exactly the
    // environments it hosts, whichever organization owns them.
    (
        "installation-service",
        "installation-service-secret",
        "acme",
        &[
            (Role::Internal, "dev"),
            (Role::Internal, "qa"),
            (Role::Internal, "prod"),
            (Role::Internal, "globex-dev"),
            (Role::Internal, "globex-prod"),
        ],
    ),
];

const ENVIRONMENTS: &[(&str, &str, EnvironmentKind, &str)] = &[
    ("dev", "acme", EnvironmentKind::Sandbox, "Development"),
    ("qa", "acme", EnvironmentKind::Sandbox, "Quality assurance"),
    ("prod", "acme", EnvironmentKind::Production, "Production"),
    ("globex-dev", "globex", EnvironmentKind::Sandbox, "Globex development"),
    ("globex-prod", "globex", EnvironmentKind::Production, "Globex production"),
];

/// The two configurations development mode runs with.
pub fn configs(opts: &DevOptions) -> (Config, Config) {
    let installation_url = format!("http://{}", opts.installation_addr);
    let base = Config {
        listen: opts.package_addr,
        admin_listen: None,
        http_listen: None,
        data_dir: opts.data_dir.join("package"),
        log_format: opts.log_format,
        package_service: None,
        hosted_environments: vec![],
        service_credentials: None,
        auth: AuthConfig {
            signing_key: DEV_SIGNING_KEY.into(),
            default_ttl_seconds: 8 * 3600,
            max_ttl_seconds: 24 * 3600,
            issuer: "promotion-dev".into(),
        },
        limits: Limits::default(),
        organizations: vec![
            Organization { id: "acme".into(), catalog: "workfront".into(), display_name: "Acme Corporation".into() },
            Organization { id: "globex".into(), catalog: "apim".into(), display_name: "Globex".into() },
        ],
        environments: ENVIRONMENTS
            .iter()
            .map(|(id, org, kind, name)| EnvironmentEntry {
                id: (*id).into(),
                organization: (*org).into(),
                kind: *kind,
                display_name: (*name).into(),
                installation_service: installation_url.clone(),
                catalog: None,
            })
            .collect(),
        clients: vec![],
        catalog_files: vec![],
        secrets: Default::default(),
        storage: opts.database_url.clone().map(|url| StorageConfig { database_url: Some(url) }),
    };
    let package = Config {
        clients: DEMO_CLIENTS
            .iter()
            .map(|(id, secret, org, bindings)| ClientEntry {
                id: (*id).into(),
                secret_hash: hash_secret(secret),
                organization: (*org).into(),
                bindings: bindings
                    .iter()
                    .map(|(role, env)| BindingEntry { role: *role, environment: (*env).into() })
                    .collect(),
            })
            .collect(),
        ..base.clone()
    };
    let installation = Config {
        listen: opts.installation_addr,
        data_dir: opts.data_dir.join("installation"),
        package_service: Some(format!("http://{}", opts.package_addr)),
        hosted_environments: ENVIRONMENTS.iter().map(|e| e.0.to_string()).collect(),
        service_credentials: Some(ServiceCredentials {
            client_id: "installation-service".into(),
            client_secret: "installation-service-secret".into(),
        }),
        ..base
    };
    (package, installation)
}

/// The demo objects of one environment (none for environments without demo data).
pub fn demo_objects(environment: &str) -> Vec<ConfigObject> {
    let demo: serde_json::Map<String, serde_json::Value> = serde_json::from_str(DEMO).expect("demo.json is valid JSON");
    demo.get(environment)
        .map(|v| serde_json::from_value(v.clone()).expect("demo.json holds configuration objects"))
        .unwrap_or_default()
}

/// Seeds the demo configuration the first time a data directory is used, through the
/// same PutObjects path (validation, audit) as any editor's write.
async fn seed_once(state: &promotion_installation::State) -> Result<(), BoxError> {
    let mut seeded_any = false;
    for (env, org, ..) in ENVIRONMENTS {
        let objects = demo_objects(env);
        if objects.is_empty() || state.store.env_state(env).await?.revision > 0 {
            continue;
        }
        let info = state.directory.get(env).ok_or("demo environment missing from the directory")?;
        let seeder =
            Identity { subject: "promotion-dev".into(), organization: (*org).into(), bindings: vec![], expires_at: 0 };
        environments::put_objects(state, &seeder, &info, objects, &Default::default(), "")
            .await
            .map_err(|e| e.to_string())?;
        seeded_any = true;
    }
    if seeded_any {
        tracing::info!("seeded the demo environments");
    }
    seed_policies(state).await
}

/// The demo's governance: production needs two distinct approvers; everywhere else the
/// defaults (one approval), and nobody approves their own request. Stored once, so an
/// admin's later change survives restarts.
async fn seed_policies(state: &promotion_installation::State) -> Result<(), BoxError> {
    let seeder =
        Identity { subject: "promotion-dev".into(), organization: "acme".into(), bindings: vec![], expires_at: 0 };
    let prod = EnvironmentPolicy { required_approvals: 2, ..EnvironmentPolicy::defaults("prod") };
    policies::seed(state, &seeder, prod).await.map_err(|e| format!("{e:?}"))?;
    Ok(())
}

/// Writes the two configuration files development mode would run with into `dir`.
pub fn write_configs(opts: &DevOptions, dir: &std::path::Path) -> Result<(), BoxError> {
    let (package, installation) = configs(opts);
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("package-service.toml"), toml::to_string(&package)?)?;
    std::fs::write(dir.join("installation-service.toml"), toml::to_string(&installation)?)?;
    Ok(())
}

/// Runs development mode until SIGINT/SIGTERM.
pub async fn run(opts: DevOptions) -> Result<(), BoxError> {
    for addr in [opts.package_addr, opts.installation_addr, opts.http_addr] {
        if !addr.ip().is_loopback() {
            return Err(format!("development mode listens on loopback only, not {addr}").into());
        }
    }
    let (package_config, installation_config) = configs(&opts);
    let package_listener = tokio::net::TcpListener::bind(opts.package_addr).await?;
    let installation_listener = tokio::net::TcpListener::bind(opts.installation_addr).await?;
    let package_state = promotion_package::server::open(package_config)?;
    let installation_state = installation_server::open(installation_config)?;
    seed_once(&installation_state).await?;
    // One address for both services' JSON API, each called in process.
    let upstreams = promotion_web::Upstreams {
        package: Some(promotion_serving::in_process(promotion_package::server::grpc_routes(&package_state))),
        installation: Some(promotion_serving::in_process(installation_server::grpc_routes(&installation_state))),
    };
    let max_message_bytes = package_state.config.limits.max_message_bytes;
    let http = promotion_web::start(opts.http_addr, "--http-addr", &upstreams, max_message_bytes).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let package =
        tokio::spawn(promotion_package::server::run(package_state, package_listener, stopped(stop_rx.clone())));
    let installation =
        tokio::spawn(installation_server::run(installation_state, installation_listener, stopped(stop_rx)));
    print_banner(&opts);
    promotion_serving::shutdown_signal().await;
    http.stop();
    let _ = stop_tx.send(true);
    package.await??;
    installation.await??;
    Ok(())
}

fn print_banner(opts: &DevOptions) {
    let p = opts.package_addr;
    let i = opts.installation_addr;
    let h = opts.http_addr;
    println!(
        r#"
promotion development mode
  package service       {p}  (PackageService, AuthService, AuditService)
  installation service  {i}  (EnvironmentService, InstallationService, PromotionService, AuditService)
  HTTP                  {h}  (the console at http://{h}/, the JSON API under /environment-promotion/v1/)
  data                  {data}
  organizations         acme (dev, qa, prod; catalog workfront), globex (globex-dev, globex-prod; catalog apim)
  clients               admin, alice, bob, victor, erin (acme); gina (globex); secret = <id>-secret

Get a token and make a first call:
  TOKEN=$(grpcurl -plaintext -d '{{"client_id":"alice","client_secret":"alice-secret"}}' \
      {p} promotion.v1.AuthService/IssueToken | python3 -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])')
  grpcurl -plaintext -H "authorization: Bearer $TOKEN" {i} promotion.v1.EnvironmentService/ListEnvironments

Or over HTTP:
  TOKEN=$(curl -s -d '{{"clientId":"alice","clientSecret":"alice-secret"}}' http://{h}/environment-promotion/v1/token \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["accessToken"])')
  curl -s -H "Authorization: Bearer $TOKEN" http://{h}/environment-promotion/v1/packages
"#,
        data = match &opts.database_url {
            Some(url) => format!("PostgreSQL {}", without_password(url)),
            None => opts.data_dir.display().to_string(),
        }
    );
}

/// A database URL fit for a banner: any password replaced by `***`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    match authority.rsplit_once('@') {
        Some((credentials, host)) if credentials.contains(':') => {
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}/{path}")
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_never_shows_a_database_password() {
        assert_eq!(without_password("postgres://app:s3cret@db:5432/promotion"), "postgres://app:***@db:5432/promotion");
        assert_eq!(without_password("postgres://postgres@127.0.0.1/dev"), "postgres://postgres@127.0.0.1/dev");
    }

    #[test]
    fn check_config_knows_every_demo_secret() {
        // A service configured with one of them is running on published credentials.
        for (id, secret, ..) in DEMO_CLIENTS {
            assert!(promotion_core::config::DEMO_SECRETS.contains(secret), "demo client {id}'s secret");
        }
    }
}
