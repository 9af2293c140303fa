//! The command-line client against a deployment with two installation services, each its
//! own process: A hosts globex-dev and globex-qa, B hosts globex-demo and globex-prod. The
//! client is pointed at A only; every call about an environment of B goes to B because the
//! environment directory says so, with no extra flag.
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use promotion_core::config::{
    BindingEntry, ClientEntry, Config, EnvironmentEntry, EnvironmentKind, ServiceCredentials,
};
use promotion_core::identity::Role;
use promotion_core::secrets::hash_secret;
use serde_json::Value;

struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start(subcommand: &str, config: &Config, file: &Path) -> Service {
    std::fs::write(file, toml::to_string(config).unwrap()).unwrap();
    let child = promotion_command()
        .args([subcommand, "--config"])
        .arg(file)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while health_status(config.listen).await != Some(1) {
        assert!(Instant::now() < deadline, "{subcommand} did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Service(child)
}

const ENVIRONMENTS: &[(&str, EnvironmentKind, bool)] = &[
    ("globex-dev", EnvironmentKind::Sandbox, true),
    ("globex-qa", EnvironmentKind::Sandbox, true),
    ("globex-demo", EnvironmentKind::Sandbox, false),
    ("globex-prod", EnvironmentKind::Production, false),
];

const CLIENTS: &[(&str, &[(Role, &str)])] = &[
    ("pam", &[(Role::Publisher, "globex-dev"), (Role::Editor, "globex-dev")]),
    ("dan", &[(Role::Deployer, "globex-demo"), (Role::Deployer, "globex-qa")]),
    ("installation-a", &[(Role::Internal, "*")]),
    ("installation-b", &[(Role::Internal, "*")]),
];

struct Deployment {
    _services: Vec<Service>,
    package: SocketAddr,
    a: SocketAddr,
    _dir: tempfile::TempDir,
}

async fn deploy() -> Deployment {
    let dir = tempfile::tempdir().unwrap();
    let (package_addr, a, b) = (free_addr(), free_addr(), free_addr());
    let (package, installation) = dev_configs(dir.path().to_path_buf(), package_addr, a);
    let environments: Vec<EnvironmentEntry> = ENVIRONMENTS
        .iter()
        .map(|(id, kind, on_a)| EnvironmentEntry {
            id: (*id).into(),
            organization: "globex".into(),
            kind: *kind,
            display_name: String::new(),
            installation_service: format!("http://{}", if *on_a { a } else { b }),
            catalog: None,
        })
        .collect();
    let clients = CLIENTS
        .iter()
        .map(|(id, bindings)| ClientEntry {
            id: (*id).into(),
            secret_hash: hash_secret(&format!("{id}-secret")),
            organization: "globex".into(),
            bindings: bindings
                .iter()
                .map(|(role, env)| BindingEntry { role: *role, environment: (*env).into() })
                .collect(),
        })
        .collect();
    let package = Config { clients, environments: environments.clone(), ..package };
    let installation = |name: &str, listen: SocketAddr, on_a: bool| Config {
        listen,
        data_dir: dir.path().join(name),
        hosted_environments: ENVIRONMENTS.iter().filter(|e| e.2 == on_a).map(|e| e.0.to_string()).collect(),
        service_credentials: Some(ServiceCredentials {
            client_id: name.into(),
            client_secret: format!("{name}-secret"),
        }),
        environments: environments.clone(),
        ..installation.clone()
    };
    let services = vec![
        start("package-service", &package, &dir.path().join("package.toml")).await,
        start("installation-service", &installation("installation-a", a, true), &dir.path().join("a.toml")).await,
        start("installation-service", &installation("installation-b", b, false), &dir.path().join("b.toml")).await,
    ];
    Deployment { _services: services, package: package_addr, a, _dir: dir }
}

/// A user whose profile points at the package service and installation service A only.
struct User {
    config: tempfile::TempDir,
}

impl User {
    fn login(d: &Deployment, client: &str) -> User {
        let user = User { config: tempfile::tempdir().unwrap() };
        let secret = format!("{client}-secret");
        let (package, a) = (d.package.to_string(), d.a.to_string());
        let login = [
            "login",
            "--client-id",
            client,
            "--client-secret",
            &secret,
            "--package-server",
            &package,
            "--installation-server",
            &a,
        ];
        user.ok(&login);
        user
    }

    fn run(&self, args: &[&str]) -> Output {
        promotion_command()
            .args(args)
            .env("PROMOTION_CONFIG_DIR", self.config.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "`promotion {}`: {out:?}", args.join(" "));
        String::from_utf8(out.stdout).unwrap()
    }

    #[track_caller]
    fn json(&self, args: &[&str]) -> Value {
        let args: Vec<&str> = args.iter().copied().chain(["-o", "json"]).collect();
        serde_json::from_str(&self.ok(&args)).unwrap()
    }
}

#[tokio::test]
async fn calls_about_an_environment_go_to_the_installation_service_hosting_it() {
    let d = deploy().await;
    // An API in globex-dev (on A), put through the CLI.
    let pam = User::login(&d, "pam");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("api.yaml");
    std::fs::write(&file, "objCode: API\nname: Orders API\nfields: {version: 1}\n").unwrap();
    let api = pam.json(&["objects", "put", "--env", "globex-dev", file.to_str().unwrap()])["objects"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Into globex-demo, hosted by B: no flag names B.
    let request = pam.json(&[
        "promote",
        "--to",
        "globex-demo",
        "--name",
        "Orders API",
        "--source",
        "globex-dev",
        "--root",
        &format!("api:{api}"),
    ]);
    assert_eq!(request["targetEnvironment"], "globex-demo");
    let request_id = request["id"].as_str().unwrap().to_string();
    let profile = pam.json(&["config", "show"]);
    let b = profile["environments"]["globex-demo"].as_str().unwrap().to_string();
    assert_ne!(b, format!("http://{}", d.a), "the profile caches B's address from the directory");

    let dan = User::login(&d, "dan");
    let tasks = dan.json(&["tasks"]);
    assert_eq!(tasks["promotionRequests"][0]["id"], request_id.as_str(), "tasks gathered from every service");
    let plan = dan.ok(&["prerun", "--request", &request_id]);
    assert!(plan.contains("globex-dev → globex-demo") && plan.contains("CREATE"), "{plan}");
    let installation = dan.ok(&["accept", &request_id, "-o", "id"]).trim().to_string();
    let listed = dan.json(&["objects", "list", "--env", "globex-demo", "--type", "API"]);
    assert_eq!(listed["objects"][0]["name"], "Orders API");
    assert_eq!(dan.json(&["installations", "show", &installation])["destinationEnvironment"], "globex-demo");
    let all = dan.json(&["installations", "list"]);
    assert_eq!(all["installations"][0]["id"], installation.as_str(), "installations gathered from every service");
    // env list takes each environment's figures from its host.
    let envs = dan.json(&["env", "list"]);
    let demo = envs["environments"].as_array().unwrap().iter().find(|e| e["id"] == "globex-demo").unwrap().clone();
    assert!(demo["objectCounts"]["API"].as_i64() == Some(1) && demo["revision"].as_i64() > Some(0), "{demo}");
    assert_eq!(dan.json(&["requests", "show", &request_id])["status"], "PROMOTION_STATUS_ACCEPTED");
    dan.ok(&["rollback", &installation]);
    let after = dan.json(&["objects", "list", "--env", "globex-demo", "--type", "API"]);
    assert!(after["objects"].as_array().unwrap().is_empty(), "{after}");
    // What lives nowhere is NOT_FOUND, from every service.
    let missing = dan.run(&["installations", "show", "01a20000-0000-7000-8000-000000000000"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("NOT_FOUND"), "{missing:?}");
}
