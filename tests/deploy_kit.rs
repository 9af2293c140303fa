//! The operator's kit under deploy/, checked statically because no container engine or
//! cluster runs here: every YAML file parses (serde_yaml); the compose file, the
//! Kubernetes manifests and the systemd units point at configuration files that exist
//! and pass `promotion check-config` with the environment they set; their addresses,
//! ports, volumes and data directories agree with each other; the units' commands exist;
//! the container image runs as a non-root user and checks its health with the binary; no
//! file of the kit carries a secret, and as shipped nothing runs until the secrets are
//! given. Where `kubectl` and `systemd-analyze` are installed, they check the manifests
//! and units too.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use promotion_core::config::Config;
use serde::Deserialize;
use serde_yaml::Value;

/// What a secret the kit requires (a compose variable, a Secret key, a REPLACE-ME value of
/// an environment file) is set to here: long enough, and no placeholder.
fn test_secret(name: &str) -> String {
    format!("deploy-kit-test-value-for-{}-0123456789", name.to_ascii_lowercase())
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deploy(path: &str) -> PathBuf {
    root().join("deploy").join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Runs the real binary with only `envs` in its environment.
fn promotion(args: &[&str], envs: &[(String, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_promotion"))
        .args(args)
        .env_clear()
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run promotion")
}

#[track_caller]
fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `promotion check-config --service <kind> <file>` with `envs`, which must pass.
fn check_config(file: &Path, kind: &str, envs: &[(String, String)]) {
    let output = promotion(&["check-config", "--service", kind, file.to_str().unwrap()], envs);
    assert_success(&output, &format!("check-config {} with {envs:?}", file.display()));
}

/// The configuration a service would run with: the file plus exactly `envs` as its
/// environment.
fn effective_config(file: &Path, envs: &[(String, String)]) -> Config {
    Config::load_with_env(file, &[], envs.iter().cloned()).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// `promotion check-config` of a file as shipped, which must fail naming each of
/// `problems`: the kit's files carry no secret, so nothing runs until they are given.
fn check_config_refuses(file: &Path, kind: &str, envs: &[(String, String)], problems: &[&str]) {
    let output = promotion(&["check-config", "--service", kind, file.to_str().unwrap()], envs);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "check-config {} should refuse {envs:?}", file.display());
    for problem in problems {
        assert!(stderr.contains(problem), "check-config {} should name {problem:?}:\n{stderr}", file.display());
    }
}

/// No example configuration holds a secret: they are published.
fn assert_no_secret_in(path: &Path) {
    let table: toml::Table = toml::from_str(&read(path)).unwrap();
    let auth = table.get("auth").and_then(|a| a.get("signing_key"));
    assert!(auth.is_none(), "{}: auth.signing_key belongs in the environment", path.display());
    let credentials = table.get("service_credentials").and_then(|c| c.get("client_secret"));
    assert!(credentials.is_none(), "{}: client_secret belongs in the environment", path.display());
    assert!(!table.contains_key("secrets"), "{}: secrets belong in the environment", path.display());
    for client in table.get("clients").and_then(|c| c.as_array()).into_iter().flatten() {
        assert!(client.get("secret_hash").is_none(), "{}: {client} ships a hash of a secret", path.display());
    }
}

fn service_kind(subcommand: &str) -> &'static str {
    match subcommand {
        "package-service" => "package",
        "installation-service" => "installation",
        other => panic!("{other} is not a service subcommand"),
    }
}

/// `http://host:port` -> (host, port).
fn host_port(url: &str) -> (String, u16) {
    let rest = url.strip_prefix("http://").unwrap_or_else(|| panic!("{url} is not http://"));
    let (host, port) = rest.rsplit_once(':').unwrap_or_else(|| panic!("{url} has no port"));
    (host.to_string(), port.parse().unwrap())
}

/// Every environment of the directory is hosted by exactly one installation service,
/// reached at the address the directory gives; the package service's address is right.
/// `services` maps a host name to the configuration of the service behind it.
fn assert_addresses_agree(services: &BTreeMap<String, Config>) {
    let package: Vec<&String> =
        services.iter().filter(|(_, c)| c.hosted_environments.is_empty()).map(|(n, _)| n).collect();
    assert_eq!(package.len(), 1, "exactly one package service: {package:?}");
    let installation_count = services.len() - 1;
    assert!(installation_count >= 2, "at least two installation services");
    let mut hosted = BTreeMap::new();
    for (name, config) in services {
        for env in &config.hosted_environments {
            assert!(hosted.insert(env.clone(), name.clone()).is_none(), "environment {env} is hosted twice");
        }
    }
    for (name, config) in services {
        for env in &config.environments {
            let (host, port) = host_port(&env.installation_service);
            assert_eq!(hosted.get(&env.id), Some(&host), "{name}: environment {} is not hosted by {host}", env.id);
            assert_eq!(services[&host].listen.port(), port, "{name}: {} points at the wrong port of {host}", env.id);
        }
        if let Some(url) = &config.package_service {
            let (host, port) = host_port(url);
            assert_eq!(&host, package[0], "{name}: package_service");
            assert_eq!(services[&host].listen.port(), port, "{name}: package_service port");
        }
        assert!(config.admin_listen.is_some(), "{name}: no admin port for metrics and /healthz");
    }
    let directory: BTreeSet<&String> = services[package[0]].environments.iter().map(|e| &e.id).collect();
    assert_eq!(directory, hosted.keys().collect(), "every environment is hosted somewhere");
}

/// A configuration as TOML with the deployment-specific values taken out: what must be
/// the same wherever the example runs.
fn portable(path: &Path) -> toml::Table {
    let mut table: toml::Table = toml::from_str(&read(path)).unwrap();
    for key in ["listen", "package_service"] {
        table.remove(key);
    }
    if let Some(toml::Value::Array(envs)) = table.get_mut("environments") {
        for env in envs {
            env.as_table_mut().unwrap().remove("installation_service");
        }
    }
    table
}

// ----------------------------------------------------------------------------------
// YAML
// ----------------------------------------------------------------------------------

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Every document of a YAML file.
fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

fn str_of<'a>(v: &'a Value, path: &str) -> &'a str {
    let mut node = v;
    for key in path.split('.') {
        node = &node[key];
    }
    node.as_str().unwrap_or_else(|| panic!("{path} is not a string in {v:?}"))
}

fn seq<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v[key].as_sequence().map(Vec::as_slice).unwrap_or(&[])
}

#[test]
fn every_yaml_file_of_the_kit_parses() {
    let yaml: Vec<PathBuf> = files_under(&deploy(""))
        .into_iter()
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    assert!(yaml.len() >= 6, "compose and Kubernetes files: {yaml:?}");
    for path in &yaml {
        let docs = yaml_documents(path);
        assert!(!docs.is_empty(), "{} is empty", path.display());
        if path.starts_with(deploy("k8s")) {
            for doc in docs {
                assert!(doc["apiVersion"].is_string() && doc["kind"].is_string(), "{}: {doc:?}", path.display());
                if doc["kind"] != "Kustomization" {
                    assert!(doc["metadata"]["name"].is_string(), "{}: a resource without a name", path.display());
                }
            }
        }
    }
}

// ----------------------------------------------------------------------------------
// Compose
// ----------------------------------------------------------------------------------

/// Compose variable interpolation: `${NAME}`, `${NAME:-default}`, `${NAME-default}`,
/// `${NAME:?message}`, `${NAME?message}` and `$$`. Required variables get test values; an
/// optional one takes its default; one with neither is an error in the file.
fn interpolate(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
            continue;
        }
        let inner = rest.strip_prefix("${").unwrap_or_else(|| panic!("unbraced variable in {text:?}"));
        let end = inner.find('}').unwrap_or_else(|| panic!("unclosed variable in {text:?}"));
        let expr = &inner[..end];
        let name_end = expr.find([':', '-', '?']).unwrap_or(expr.len());
        let (name, op) = expr.split_at(name_end);
        let value = match op.trim_start_matches(':').chars().next() {
            Some('-') => op.trim_start_matches(':')[1..].to_string(),
            Some('?') => test_secret(name),
            _ => panic!("${{{expr}}} has no default and no test value"),
        };
        out.push_str(&value);
        rest = &inner[end + 1..];
    }
    out.push_str(rest);
    out
}

struct ComposeService {
    name: String,
    subcommand: String,
    config_file: PathBuf,
    env: Vec<(String, String)>,
    config: Config,
    def: Value,
}

fn compose() -> (Value, Vec<ComposeService>) {
    let path = deploy("compose/compose.yaml");
    let doc = yaml_documents(&path).remove(0);
    let dir = path.parent().unwrap();
    let mut services = Vec::new();
    for (name, def) in doc["services"].as_mapping().expect("services") {
        let name = name.as_str().unwrap().to_string();
        let command: Vec<&str> = seq(def, "command").iter().map(|v| v.as_str().unwrap()).collect();
        let config_at = command.iter().position(|a| *a == "--config").map(|i| command[i + 1]);
        let config_at = config_at.unwrap_or_else(|| panic!("{name}: command has no --config"));
        let mount = seq(def, "volumes")
            .iter()
            .map(|v| interpolate(v.as_str().unwrap()))
            .find_map(|v| {
                let parts: Vec<&str> = v.split(':').collect();
                (parts.get(1) == Some(&config_at)).then(|| dir.join(parts[0]))
            })
            .unwrap_or_else(|| panic!("{name}: {config_at} is not mounted"));
        assert!(mount.is_file(), "{name}: {} does not exist", mount.display());
        let mount = mount.canonicalize().unwrap();
        let env = def["environment"]
            .as_mapping()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str().unwrap().to_string(), interpolate(v.as_str().expect("string values"))))
            .collect::<Vec<_>>();
        let config = effective_config(&mount, &env);
        services.push(ComposeService {
            name,
            subcommand: command[0].to_string(),
            config_file: mount,
            env,
            config,
            def: def.clone(),
        });
    }
    (doc, services)
}

#[test]
fn compose_runs_the_example_configurations_and_each_passes_check_config() {
    let (_, services) = compose();
    assert_eq!(services.len(), 3, "a package service and two installation services");
    for s in &services {
        let examples = deploy("config").canonicalize().unwrap();
        assert!(s.config_file.starts_with(examples), "{}: mounts {}", s.name, s.config_file.display());
        assert_no_secret_in(&s.config_file);
        check_config(&s.config_file, service_kind(&s.subcommand), &s.env);
        // The secrets come from the required variables only: without them, nothing runs.
        let without: Vec<(String, String)> =
            s.env.iter().filter(|(_, v)| !v.starts_with("deploy-kit-test-value")).cloned().collect();
        check_config_refuses(&s.config_file, service_kind(&s.subcommand), &without, &["PROMOTION_AUTH__SIGNING_KEY"]);
        let mut directory = toml::Value::try_from(&s.config.environments).unwrap();
        for env in directory.as_array_mut().unwrap() {
            env.as_table_mut().unwrap().remove("installation_service");
        }
        assert_eq!(
            portable(&s.config_file)["environments"],
            directory,
            "{}: the compose directory must list the environments of {}",
            s.name,
            s.config_file.display()
        );
    }
}

#[test]
fn compose_addresses_ports_and_volumes_agree() {
    let (doc, services) = compose();
    let compose_dir = deploy("compose");
    let by_host: BTreeMap<String, Config> = services.iter().map(|s| (s.name.clone(), s.config.clone())).collect();
    assert_addresses_agree(&by_host);
    let declared: BTreeSet<&str> =
        doc["volumes"].as_mapping().expect("named volumes").keys().map(|k| k.as_str().unwrap()).collect();
    for s in &services {
        assert_eq!(s.config.listen.ip().to_string(), "0.0.0.0", "{}: must listen beyond the container", s.name);
        let published: Vec<u16> = seq(&s.def, "ports")
            .iter()
            .map(|p| p.as_str().unwrap().rsplit(':').next().unwrap().parse().unwrap())
            .collect();
        assert!(published.contains(&s.config.listen.port()), "{}: gRPC port not published", s.name);
        assert!(published.contains(&s.config.admin_listen.unwrap().port()), "{}: admin port not published", s.name);
        let data = seq(&s.def, "volumes")
            .iter()
            .map(|v| interpolate(v.as_str().unwrap()))
            .find(|v| s.config.data_dir.starts_with(v.split(':').nth(1).unwrap()))
            .unwrap_or_else(|| panic!("{}: data_dir {} is on no volume", s.name, s.config.data_dir.display()));
        let volume = data.split(':').next().unwrap();
        assert!(declared.contains(volume), "{}: {volume} must be a named volume", s.name);
        let build = &s.def["build"];
        let dockerfile = compose_dir.join(str_of(build, "context")).join(str_of(build, "dockerfile"));
        assert!(dockerfile.is_file(), "{}: {} does not exist", s.name, dockerfile.display());
        // The health check probes this service's own gRPC port with the binary itself.
        let test: Vec<&str> = seq(&s.def["healthcheck"], "test").iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(&test[..3], ["CMD", "promotion", "health-check"], "{}: healthcheck {test:?}", s.name);
        let addr = test[test.iter().position(|a| *a == "--addr").expect("--addr") + 1];
        assert_eq!(addr, format!("127.0.0.1:{}", s.config.listen.port()), "{}: healthcheck address", s.name);
        let mut help: Vec<&str> = test[2..].to_vec();
        help.push("--help");
        assert_success(&promotion(&help, &[]), &format!("{}: promotion {}", s.name, help.join(" ")));
    }
    // Every installation service waits for a healthy package service, which only a
    // healthcheck can report.
    for s in services.iter().filter(|s| s.subcommand == "installation-service") {
        assert_eq!(s.def["depends_on"]["package-service"]["condition"], "service_healthy", "{}", s.name);
    }
}

/// The first administrator can log in on a compose deployment as shipped: its secret is a
/// required variable and the package service's client list has it with admin everywhere.
#[test]
fn compose_bootstraps_an_administrator_from_the_environment() {
    let (_, services) = compose();
    let package = services.iter().find(|s| s.subcommand == "package-service").unwrap();
    let secret = package.env.iter().find(|(k, _)| k == "PROMOTION_SECRETS__PLATFORM_ADMIN").map(|(_, v)| v);
    let secret = secret.expect("the package service gets the first administrator's secret");
    assert_eq!(secret, &test_secret("PROMOTION_SECRETS__PLATFORM_ADMIN"), "a required compose variable");
    let admin = package.config.clients.iter().find(|c| c.id == "platform-admin").expect("client platform-admin");
    assert!(promotion_core::secrets::verify_secret(secret, &admin.secret_hash), "its secret is the variable's");
    assert!(admin.bindings.iter().any(|b| b.environment == "*" && format!("{:?}", b.role) == "Admin"));
    // Each installation service's own client: the same secret on both sides.
    for s in services.iter().filter(|s| s.subcommand == "installation-service") {
        let credentials = s.config.service_credentials.as_ref().expect("service_credentials");
        let client = package.config.clients.iter().find(|c| c.id == credentials.client_id).expect("its client");
        assert!(
            promotion_core::secrets::verify_secret(&credentials.client_secret, &client.secret_hash),
            "{}: its secret must be the one the package service knows",
            s.name
        );
    }
}

// ----------------------------------------------------------------------------------
// Kubernetes
// ----------------------------------------------------------------------------------

struct Kustomization {
    /// The kustomization file itself.
    file: Value,
    docs: Vec<Value>,
    /// ConfigMap name -> the files it is generated from.
    config_maps: BTreeMap<String, Vec<PathBuf>>,
}

/// The keys of the Secret `promotion-secrets` deploy/README.md tells operators to create
/// (`kubectl create secret generic promotion-secrets --from-literal=KEY=...`).
fn documented_secret_keys() -> BTreeSet<String> {
    let readme = read(&deploy("README.md"));
    let start = readme.find("kubectl -n promotion create secret generic promotion-secrets").expect("the command");
    let command = &readme[start..start + readme[start..].find("\n\n").unwrap_or(readme.len() - start)];
    command.split("--from-literal=").skip(1).map(|rest| rest.split('=').next().unwrap().to_string()).collect()
}

fn kustomization() -> Kustomization {
    let dir = deploy("k8s");
    let k = yaml_documents(&dir.join("kustomization.yaml")).remove(0);
    let mut docs = Vec::new();
    for resource in seq(&k, "resources") {
        let path = dir.join(resource.as_str().unwrap());
        assert!(path.is_file(), "resource {} does not exist", path.display());
        docs.extend(yaml_documents(&path));
    }
    let mut config_maps = BTreeMap::new();
    for generator in seq(&k, "configMapGenerator") {
        let files: Vec<PathBuf> = seq(generator, "files").iter().map(|f| dir.join(f.as_str().unwrap())).collect();
        for f in &files {
            assert!(f.is_file(), "ConfigMap file {} does not exist", f.display());
        }
        config_maps.insert(str_of(generator, "name").to_string(), files);
    }
    Kustomization { file: k, docs, config_maps }
}

fn of_kind<'a>(k: &'a Kustomization, kind: &'a str) -> impl Iterator<Item = &'a Value> {
    k.docs.iter().filter(move |d| d["kind"] == kind)
}

/// A container's environment, with a test value for each key of the Secret it reads
/// (which operators create; the kit ships none). Every such key must be one the README's
/// command creates.
fn container_env(container: &Value) -> Vec<(String, String)> {
    let documented = documented_secret_keys();
    seq(container, "env")
        .iter()
        .map(|e| {
            let name = str_of(e, "name").to_string();
            let value = match &e["valueFrom"]["secretKeyRef"] {
                Value::Null => str_of(e, "value").to_string(),
                r => {
                    assert_eq!(str_of(r, "name"), "promotion-secrets", "{name}");
                    let key = str_of(r, "key");
                    assert!(documented.contains(key), "{name}: deploy/README.md does not create secret key {key}");
                    test_secret(key)
                }
            };
            (name, value)
        })
        .collect()
}

struct Workload {
    name: String,
    config_file: PathBuf,
    config: Config,
}

/// Checks one StatefulSet and returns what it runs.
fn check_statefulset(k: &Kustomization, sts: &Value) -> Workload {
    let name = str_of(sts, "metadata.name").to_string();
    let spec = &sts["spec"];
    assert_eq!(spec["replicas"].as_u64(), Some(1), "{name}: one writer per sled store");
    let pod = &spec["template"]["spec"];
    let security = &pod["securityContext"];
    assert_eq!(security["runAsNonRoot"].as_bool(), Some(true), "{name}: runAsNonRoot");
    assert!(security["runAsUser"].as_u64().unwrap_or(0) > 0, "{name}: runAsUser must not be root");
    let containers = seq(pod, "containers");
    assert_eq!(containers.len(), 1, "{name}: one container");
    let c = &containers[0];
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"].as_bool(), Some(false), "{name}");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"].as_bool(), Some(true), "{name}");
    let args: Vec<&str> = seq(c, "args").iter().map(|a| a.as_str().unwrap()).collect();
    let config_at = Path::new(args[args.iter().position(|a| *a == "--config").expect("--config") + 1]);
    let mounts = seq(c, "volumeMounts");
    let mount_of = |path: &Path| {
        mounts
            .iter()
            .filter(|m| path.starts_with(str_of(m, "mountPath")))
            .max_by_key(|m| str_of(m, "mountPath").len())
            .map(|m| str_of(m, "name").to_string())
            .unwrap_or_else(|| panic!("{name}: {} is on no volume", path.display()))
    };
    let config_volume = mount_of(config_at);
    let volume = seq(pod, "volumes").iter().find(|v| str_of(v, "name") == config_volume).expect("config volume");
    let files = &k.config_maps[str_of(volume, "configMap.name")];
    let file_name = config_at.file_name().unwrap();
    let config_file = files.iter().find(|f| f.file_name() == Some(file_name)).expect("config file in the ConfigMap");
    let env = container_env(c);
    assert_no_secret_in(config_file);
    check_config(config_file, service_kind(args[0]), &env);
    let config = effective_config(config_file, &env);

    let data_volume = mount_of(&config.data_dir);
    let claims: Vec<&str> = seq(spec, "volumeClaimTemplates").iter().map(|t| str_of(t, "metadata.name")).collect();
    assert!(claims.contains(&data_volume.as_str()), "{name}: data_dir must be on a persistent volume");

    let grpc_port = seq(c, "ports").iter().find(|p| p["name"] == "grpc").and_then(|p| p["containerPort"].as_u64());
    assert_eq!(grpc_port, Some(u64::from(config.listen.port())), "{name}: grpc containerPort");
    let admin_port = seq(c, "ports").iter().find(|p| p["name"] == "admin").and_then(|p| p["containerPort"].as_u64());
    assert_eq!(admin_port, config.admin_listen.map(|a| u64::from(a.port())), "{name}: admin containerPort");
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let port = c[probe]["grpc"]["port"].as_u64();
        assert_eq!(port, Some(u64::from(config.listen.port())), "{name}: {probe} must be a gRPC health probe");
    }

    // The governing Service of a StatefulSet must be headless; clients use the other one.
    let labels = &spec["template"]["metadata"]["labels"];
    let service_named = |service_name: &str| {
        let service = of_kind(k, "Service")
            .find(|s| str_of(s, "metadata.name") == service_name)
            .unwrap_or_else(|| panic!("{name}: no Service {service_name}"));
        for (key, value) in service["spec"]["selector"].as_mapping().unwrap() {
            assert_eq!(&labels[key.as_str().unwrap()], value, "{name}: Service {service_name} selects its pods");
        }
        let port = seq(&service["spec"], "ports").iter().find(|p| p["targetPort"] == "grpc").expect("grpc port");
        assert_eq!(port["port"].as_u64(), Some(u64::from(config.listen.port())), "{name}: {service_name} port");
        service
    };
    let governing = service_named(str_of(spec, "serviceName"));
    assert_eq!(governing["spec"]["clusterIP"], "None", "{name}: serviceName must point at a headless Service");
    let client_service = service_named(&name);
    assert_ne!(client_service["spec"]["clusterIP"], "None", "{name}: clients reach it through a stable address");
    Workload { name, config_file: config_file.clone(), config }
}

#[test]
fn kubernetes_statefulsets_run_checked_configurations_from_configmaps_and_the_secret() {
    let k = kustomization();
    let workloads: Vec<Workload> = of_kind(&k, "StatefulSet").map(|s| check_statefulset(&k, s)).collect();
    assert_eq!(workloads.len(), 3, "a package service and two installation services");
    let by_host: BTreeMap<String, Config> = workloads.iter().map(|w| (w.name.clone(), w.config.clone())).collect();
    assert_addresses_agree(&by_host);
    for w in &workloads {
        let example = deploy("config").join(w.config_file.file_name().unwrap());
        assert_eq!(
            portable(&w.config_file),
            portable(&example),
            "{} must be {} with only addresses and secrets changed",
            w.config_file.display(),
            example.display()
        );
        let text = read(&w.config_file);
        assert!(
            !text.contains("signing_key =") && !text.contains("client_secret ="),
            "{}: secrets belong in the Secret",
            w.config_file.display()
        );
    }
}

#[test]
fn kubernetes_applies_no_secret_and_its_network_policies_let_the_pair_talk() {
    let k = kustomization();
    assert_eq!(of_kind(&k, "Secret").count(), 0, "the kustomization must not apply a Secret with shipped values");
    for doc in &k.docs {
        let text = serde_yaml::to_string(doc).unwrap();
        assert!(!text.contains("REPLACE-ME"), "a placeholder in {}", str_of(doc, "metadata.name"));
    }
    // The policies select pods by the part-of label, which the kustomization puts on them.
    let labels = seq(&k.file, "labels");
    assert!(
        labels.iter().any(|l| l["pairs"]["app.kubernetes.io/part-of"] == "promotion" && l["includeTemplates"] == true),
        "the pods must carry app.kubernetes.io/part-of=promotion"
    );
    let policies: Vec<&Value> = of_kind(&k, "NetworkPolicy").collect();
    let deny = policies.iter().find(|p| {
        p["spec"]["podSelector"].as_mapping().is_some_and(|m| m.is_empty())
            && seq(&p["spec"], "ingress").is_empty()
            && seq(&p["spec"], "egress").is_empty()
    });
    let deny = deny.expect("a default-deny NetworkPolicy for every pod");
    let types: Vec<&str> = seq(&deny["spec"], "policyTypes").iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(types, ["Ingress", "Egress"]);
    let selects_pair =
        |p: &&&Value| p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/part-of"] == "promotion";
    let ingress_ports: BTreeSet<&str> = policies
        .iter()
        .filter(selects_pair)
        .flat_map(|p| seq(&p["spec"], "ingress"))
        .flat_map(|rule| seq(rule, "ports"))
        .map(|port| port["port"].as_str().expect("named ports"))
        .collect();
    assert!(ingress_ports.contains("grpc") && ingress_ports.contains("admin"), "{ingress_ports:?}");
    let egress_ports: BTreeSet<u64> = policies
        .iter()
        .filter(selects_pair)
        .flat_map(|p| seq(&p["spec"], "egress"))
        .flat_map(|rule| seq(rule, "ports"))
        .filter_map(|port| port["port"].as_u64())
        .collect();
    assert!(egress_ports.contains(&53), "DNS must stay reachable: {egress_ports:?}");
    for sts in of_kind(&k, "StatefulSet") {
        let w = check_statefulset(&k, sts);
        let targets = w.config.environments.iter().map(|e| e.installation_service.clone());
        for url in targets.chain(w.config.package_service.clone()) {
            let (_, port) = host_port(&url);
            assert!(egress_ports.contains(&u64::from(port)), "{}: egress to {url} is not allowed", w.name);
        }
    }
}

#[test]
fn kustomize_renders_the_manifests_where_kubectl_is_installed() {
    let output = match Command::new("kubectl").arg("kustomize").arg(deploy("k8s")).output() {
        Ok(output) => output,
        Err(e) => {
            eprintln!("kubectl not available ({e}); the other Kubernetes checks still ran");
            return;
        }
    };
    assert_success(&output, "kubectl kustomize deploy/k8s");
    let rendered = String::from_utf8(output.stdout).unwrap();
    let docs: Vec<Value> =
        serde_yaml::Deserializer::from_str(&rendered).map(|d| Value::deserialize(d).unwrap()).collect();
    let kinds: Vec<(&str, &str)> = docs.iter().map(|d| (str_of(d, "kind"), str_of(d, "metadata.name"))).collect();
    assert_eq!(kinds.iter().filter(|(k, _)| *k == "StatefulSet").count(), 3, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|(k, _)| *k == "ConfigMap").count(), 3, "{kinds:?}");
    for d in docs.iter().filter(|d| d["kind"] != "Namespace") {
        assert_eq!(d["metadata"]["namespace"], "promotion", "{:?}", d["metadata"]);
    }
    // The generated ConfigMap names carry a content hash; the StatefulSets must use them.
    for sts in docs.iter().filter(|d| d["kind"] == "StatefulSet") {
        let labels = &sts["spec"]["template"]["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/part-of"], "promotion", "the NetworkPolicies select the pods by it");
        let volumes = seq(&sts["spec"]["template"]["spec"], "volumes");
        let config_map = volumes.iter().find_map(|v| v["configMap"]["name"].as_str()).unwrap();
        assert!(kinds.contains(&("ConfigMap", config_map)), "{config_map} is not rendered");
    }
}

// ----------------------------------------------------------------------------------
// systemd
// ----------------------------------------------------------------------------------

/// `[Section]` -> key -> values, in order.
type Unit = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn parse_unit(text: &str) -> Unit {
    let mut unit = Unit::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("not key=value: {line}"));
        unit.entry(section.clone()).or_default().entry(key.to_string()).or_default().push(value.to_string());
    }
    unit
}

fn one<'a>(unit: &'a Unit, key: &str) -> &'a str {
    let values = &unit["Service"][key];
    assert_eq!(values.len(), 1, "{key} given {} times", values.len());
    &values[0]
}

/// A path under /etc/promotion as the file of the kit that gets installed there.
fn kit_file(installed: &str, kit_dir: &str) -> PathBuf {
    let name = installed.strip_prefix("/etc/promotion/").unwrap_or_else(|| panic!("{installed} not in /etc/promotion"));
    deploy(kit_dir).join(name)
}

/// KEY=VALUE lines of an environment file.
fn env_file(path: &Path) -> Vec<(String, String)> {
    read(path)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// The units to check, with template units expanded for every installation service of
/// deploy/config: (unit file, instance name, unit text).
fn units() -> Vec<(PathBuf, Option<String>, String)> {
    let instances: Vec<String> = files_under(&deploy("config"))
        .iter()
        .filter_map(|p| p.file_stem()?.to_str()?.strip_prefix("installation-").map(str::to_string))
        .collect();
    assert!(instances.len() >= 2, "two installation services in deploy/config: {instances:?}");
    let mut out = Vec::new();
    for path in files_under(&deploy("systemd")).into_iter().filter(|p| p.extension().is_some_and(|e| e == "service")) {
        let text = read(&path);
        if path.file_stem().unwrap().to_str().unwrap().ends_with('@') {
            for instance in &instances {
                out.push((path.clone(), Some(instance.clone()), text.replace("%i", instance)));
            }
        } else {
            out.push((path.clone(), None, text));
        }
    }
    out
}

#[test]
fn systemd_units_run_existing_subcommands_on_checked_configurations() {
    let units = units();
    assert!(units.iter().any(|(p, ..)| p.ends_with("package-service.service")));
    assert!(units.iter().filter(|(_, instance, _)| instance.is_some()).count() >= 2);
    let mut admin_ports = BTreeSet::new();
    for (path, instance, text) in &units {
        let what = format!("{} {}", path.display(), instance.as_deref().unwrap_or(""));
        let unit = parse_unit(text);
        assert_ne!(one(&unit, "User"), "root", "{what}");
        let env_path = one(&unit, "EnvironmentFile");
        assert!(!env_path.starts_with('-'), "{what}: a missing EnvironmentFile must stop the unit");
        let shipped = env_file(&kit_file(env_path, "systemd"));
        // As shipped, every secret is a placeholder the service refuses; filled in, it runs.
        let placeholders: Vec<&str> =
            shipped.iter().filter(|(_, v)| v.starts_with("REPLACE-ME")).map(|(k, _)| k.as_str()).collect();
        assert!(placeholders.contains(&"PROMOTION_AUTH__SIGNING_KEY"), "{what}: {placeholders:?}");
        let env: Vec<(String, String)> = shipped
            .iter()
            .map(|(k, v)| (k.clone(), if v.starts_with("REPLACE-ME") { test_secret(k) } else { v.clone() }))
            .collect();
        let exec: Vec<&str> = one(&unit, "ExecStart").split_whitespace().collect();
        assert_eq!(exec[0], "/usr/local/bin/promotion", "{what}");
        // clap rejects unknown flags before it honours --help: this checks the flags too.
        let mut help: Vec<&str> = exec[1..].to_vec();
        help.push("--help");
        assert_success(&promotion(&help, &[]), &format!("{what}: promotion {}", help.join(" ")));
        let config_at = exec[exec.iter().position(|a| *a == "--config").expect("--config") + 1];
        let config_file = kit_file(config_at, "config");
        assert_no_secret_in(&config_file);
        check_config_refuses(&config_file, service_kind(exec[1]), &shipped, &placeholders);
        check_config_refuses(&config_file, service_kind(exec[1]), &[], &["PROMOTION_AUTH__SIGNING_KEY"]);
        check_config(&config_file, service_kind(exec[1]), &env);
        for pre in unit["Service"].get("ExecStartPre").into_iter().flatten() {
            let args: Vec<String> = pre
                .split_whitespace()
                .skip(1)
                .map(|a| {
                    if a.starts_with("/etc/promotion/") {
                        kit_file(a, "config").display().to_string()
                    } else {
                        a.into()
                    }
                })
                .collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            assert_success(&promotion(&args, &env), &format!("{what}: ExecStartPre {pre}"));
        }
        let config = effective_config(&config_file, &env);
        let state = format!("/var/lib/{}", one(&unit, "StateDirectory"));
        assert_eq!(config.data_dir, PathBuf::from(&state), "{what}: StateDirectory must be the data_dir");
        let admin = config.admin_listen.unwrap_or_else(|| panic!("{what}: no admin port"));
        assert!(admin.ip().is_loopback(), "{what}: the admin port stays on loopback by default");
        assert!(admin_ports.insert(admin.port()), "{what}: admin port {admin} used twice on one host");
    }
}

#[test]
fn systemd_analyze_accepts_the_units_where_it_is_installed() {
    let dir = tempfile::tempdir().unwrap();
    let mut names = Vec::new();
    for (path, instance, _) in units() {
        let text = read(&path).replace("/usr/local/bin/promotion", env!("CARGO_BIN_EXE_promotion"));
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let name = match instance {
            Some(i) => name.replace("@.", &format!("@{i}.")),
            None => name,
        };
        std::fs::write(dir.path().join(&name), text).unwrap();
        names.push(format!("./{name}"));
    }
    let output = match Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&names)
        .current_dir(dir.path())
        .output()
    {
        Ok(output) => output,
        Err(e) => {
            eprintln!("systemd-analyze not available ({e}); the other unit checks still ran");
            return;
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    // systemd-analyze reports unknown keys and bad values as warnings with exit code 0.
    assert!(output.status.success() && stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");
}

// ----------------------------------------------------------------------------------
// Container image
// ----------------------------------------------------------------------------------

/// Dockerfile instructions (continuations joined, comments dropped): (INSTRUCTION, rest).
fn dockerfile() -> Vec<(String, String)> {
    let text = read(&deploy("docker/Dockerfile"));
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(trimmed);
                let (instruction, rest) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((instruction.to_ascii_uppercase(), rest.trim().to_string()));
                current.clear();
            }
        }
    }
    out
}

/// The `rust-version` Cargo.toml declares, read from the file itself: asking cargo would
/// make this test depend on what the cargo cache holds (`cargo metadata --offline` fails on
/// a machine that never downloaded the crates of other platforms). That no locked
/// dependency needs a newer Rust than this is checked by `.ci/run`, which has the network.
fn declared_rust_version() -> (u32, u32) {
    let manifest: toml::Table = toml::from_str(&read(&root().join("Cargo.toml"))).unwrap();
    // The workspace declares it once; the binary's package inherits it.
    let declared = manifest["workspace"]["package"]["rust-version"].as_str().expect("Cargo.toml declares rust-version");
    version(declared)
}

fn version(text: &str) -> (u32, u32) {
    let mut parts = text.split('.').map(|p| p.parse::<u32>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap_or(0))
}

#[test]
fn the_image_builds_with_a_new_enough_rust_and_runs_as_a_non_root_user() {
    let instructions = dockerfile();
    let stages: Vec<(usize, &str)> = instructions
        .iter()
        .enumerate()
        .filter(|(_, (i, _))| i == "FROM")
        .map(|(n, (_, rest))| (n, rest.as_str()))
        .collect();
    assert!(stages.len() >= 2, "a multi-stage build");
    let names: Vec<&str> = stages.iter().filter_map(|(_, from)| from.split_whitespace().nth(2)).collect();
    let (last_from, _) = *stages.last().unwrap();
    let final_stage = &instructions[last_from..];

    let user = final_stage.iter().rfind(|(i, _)| i == "USER").map(|(_, u)| u.as_str());
    let user = user.expect("the final stage sets USER");
    let uid = user.split(':').next().unwrap();
    assert!(uid != "root" && uid.parse::<u32>().map_or(true, |n| n > 0), "USER {user} is root");

    for (_, rest) in instructions.iter().filter(|(i, _)| i == "COPY") {
        if let Some(stage) = rest.split_whitespace().find_map(|w| w.strip_prefix("--from=")) {
            assert!(names.contains(&stage), "COPY --from={stage}: no such stage in {names:?}");
        }
    }

    let builder = stages[0].1.split_whitespace().next().unwrap();
    let tag = builder.strip_prefix("rust:").expect("the build stage uses the rust image");
    let rust = version(tag.split('-').next().unwrap());
    let needed = declared_rust_version();
    assert!(rust >= needed, "rust:{tag} is older than the rust-version {needed:?} Cargo.toml declares");

    assert!(
        final_stage.iter().filter(|(i, _)| i == "ENV").any(|(_, rest)| rest.starts_with("PROMOTION_ADMIN_LISTEN=")),
        "the image turns the admin port on"
    );
    let health = final_stage.iter().find(|(i, _)| i == "HEALTHCHECK").map(|(_, r)| r.as_str()).expect("HEALTHCHECK");
    assert!(health.ends_with(r#"CMD ["promotion", "health-check"]"#), "HEALTHCHECK must run the binary: {health}");
    for (_, run) in final_stage.iter().filter(|(i, _)| i == "RUN") {
        assert!(!run.contains("curl") && !run.contains("wget"), "the runtime image needs no HTTP client: {run}");
    }
    let entrypoint = final_stage.iter().find(|(i, _)| i == "ENTRYPOINT").map(|(_, r)| r.as_str()).unwrap();
    assert_eq!(entrypoint, r#"["promotion"]"#);
    assert!(
        final_stage.iter().any(|(i, r)| i == "COPY" && r.ends_with("/usr/local/bin/promotion")),
        "the binary lands on PATH"
    );

    let ignored = read(&deploy("docker/Dockerfile.dockerignore"));
    assert!(ignored.lines().any(|l| l.trim() == "target"), "the build context must not upload target/");
}
