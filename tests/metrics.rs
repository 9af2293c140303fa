//! The admin HTTP port of each real service: Prometheus metrics counting calls by RPC and
//! status code, latency histograms, extraction and installation durations and sizes, the
//! store size gauge; `/healthz`; and request ids in the logs.
//!
//! Both services run as separate `package-service` / `installation-service` processes
//! with `admin_listen` set, on a data directory that development mode seeded first.
mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use promotion_api::v1 as pb;
use tonic::Code;

const POLL_LIMIT: Duration = Duration::from_secs(90);
const POLL_EVERY: Duration = Duration::from_millis(50);

/// One service process with its admin port; killed on drop.
struct Service {
    child: Child,
    admin: SocketAddr,
    log: PathBuf,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Pair {
    package: Service,
    installation: Service,
    package_addr: SocketAddr,
    installation_addr: SocketAddr,
    _dir: tempfile::TempDir,
}

/// Seeds a data directory with development mode, stops it, and starts the two real
/// services on it with development mode's configuration plus admin ports.
async fn start_pair() -> Pair {
    let (status, dir) = DevServices::start().await.terminate();
    assert!(status.success(), "development mode did not stop cleanly: {status}");
    let opts = DevAddrs { package_addr: free_addr(), installation_addr: free_addr() };
    let (mut package, mut installation) =
        dev_configs(dir.path().to_path_buf(), opts.package_addr, opts.installation_addr);
    package.log_format = promotion_core::config::LogFormat::Json;
    installation.log_format = promotion_core::config::LogFormat::Json;
    package.admin_listen = Some(free_addr());
    installation.admin_listen = Some(free_addr());
    let package = spawn(dir.path(), "package-service", &package).await;
    let installation = spawn(dir.path(), "installation-service", &installation).await;
    Pair {
        package,
        installation,
        package_addr: opts.package_addr,
        installation_addr: opts.installation_addr,
        _dir: dir,
    }
}

async fn spawn(dir: &Path, sub: &str, config: &promotion_core::config::Config) -> Service {
    let config_path = dir.join(format!("{sub}.toml"));
    std::fs::write(&config_path, toml::to_string(config).unwrap()).unwrap();
    let log = dir.join(format!("{sub}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_promotion"))
        .args([sub, "--config"])
        .arg(&config_path)
        .env("RUST_LOG", "info,promotion_serving::metrics=debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start the service");
    let service = Service { child, admin: config.admin_listen.unwrap(), log };
    let deadline = Instant::now() + POLL_LIMIT;
    while health_status(config.listen).await != Some(1) {
        assert!(Instant::now() < deadline, "{sub} did not become SERVING; log: {}", read(&service.log));
        tokio::time::sleep(POLL_EVERY).await;
    }
    service
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A plain HTTP/1.1 GET: (status code, body).
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect to the admin port");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    (status, body.to_string())
}

/// The samples of a scrape by series (`name{labels}`), after checking every line is a
/// comment or a sample of a family whose TYPE came first.
/// A series with its labels in name order: label order carries no meaning.
fn canonical(series: &str) -> String {
    let Some((name, labels)) = series.split_once('{') else { return series.to_string() };
    let mut labels: Vec<&str> = labels.trim_end_matches('}').split(',').filter(|l| !l.is_empty()).collect();
    labels.sort();
    format!("{name}{{{}}}", labels.join(","))
}

fn parse_exposition(text: &str) -> BTreeMap<String, f64> {
    let mut typed = Vec::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            typed.push(name.to_string());
            continue;
        }
        // OpenMetrics: help and unit lines, and the end-of-exposition marker.
        if line.starts_with("# HELP ") || line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'), "bad metric name in {line:?}");
        let family = ["_bucket", "_sum", "_count", "_total"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        assert!(typed.iter().any(|t| t == name || t == family), "sample before its # TYPE line: {line:?}");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
        assert!(samples.insert(canonical(series), value).is_none(), "duplicate series {series}");
    }
    samples
}

async fn scrape(service: &Service) -> BTreeMap<String, f64> {
    let (status, body) = http_get(service.admin, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    parse_exposition(&body)
}

fn handled(samples: &BTreeMap<String, f64>, service: &str, method: &str, code: &str) -> f64 {
    let series = format!(
        "grpc_server_handled_total{{grpc_service=\"promotion.v1.{service}\",grpc_method=\"{method}\",grpc_code=\"{code}\"}}"
    );
    samples.get(&canonical(&series)).copied().unwrap_or(0.0)
}

fn latency(samples: &BTreeMap<String, f64>, service: &str, method: &str, suffix: &str) -> f64 {
    let labels = format!("grpc_service=\"promotion.v1.{service}\",grpc_method=\"{method}\"");
    let series = match suffix {
        "+Inf" => format!("grpc_server_handling_seconds_bucket{{{labels},le=\"+Inf\"}}"),
        _ => format!("grpc_server_handling_seconds_{suffix}{{{labels}}}"),
    };
    samples.get(&canonical(&series)).copied().unwrap_or_else(|| panic!("no {series}"))
}

fn collection(obj_code: &str, id: &str) -> pb::ObjectCollection {
    pb::ObjectCollection {
        obj_code: obj_code.into(),
        entities: vec![pb::EntityRef { id: id.into(), name: String::new() }],
    }
}

/// alice packages the onboarding template from dev; waits for BUILDING; moves it to PREVIEW.
async fn preview_package(admin: &mut Clients) -> pb::Package {
    let req = pb::CreatePackageRequest {
        name: "Metrics onboarding".into(),
        description: "metrics test".into(),
        source_environment: "dev".into(),
        object_collections: vec![collection("TMPL", ONBOARDING_TMPL)],
        is_private: false,
        request_id: String::new(),
    };
    let created = admin.packages.create_package(req).await.unwrap().into_inner();
    let deadline = Instant::now() + POLL_LIMIT;
    let built = loop {
        let p =
            admin.packages.get_package(pb::GetPackageRequest { id: created.id.clone() }).await.unwrap().into_inner();
        if p.status != pb::PackageStatus::Extracting as i32 {
            assert_eq!(p.status, pb::PackageStatus::Building as i32, "extraction failed: {p:?}");
            break p;
        }
        assert!(Instant::now() < deadline, "still extracting: {p:?}");
        tokio::time::sleep(POLL_EVERY).await;
    };
    let package = pb::Package {
        id: built.id.clone(),
        etag: built.etag,
        status: pb::PackageStatus::Preview as i32,
        ..Default::default()
    };
    let mask = prost_types::FieldMask { paths: vec!["status".into()] };
    let req = pb::UpdatePackageRequest { package: Some(package), update_mask: Some(mask), request_id: String::new() };
    admin.packages.update_package(req).await.unwrap().into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_counts_calls_by_rpc_and_code_and_times_jobs_on_its_admin_port() {
    let pair = start_pair().await;
    for service in [&pair.package, &pair.installation] {
        assert_eq!(http_get(service.admin, "/healthz").await, (200, "SERVING\n".into()));
    }
    let token = issue_token(pair.package_addr, "admin", "admin-secret").await;
    let mut admin = Clients::connect(pair.package_addr, pair.installation_addr, Some(token)).await;
    let mut anonymous = Clients::connect(pair.package_addr, pair.installation_addr, None).await;

    for _ in 0..3 {
        admin.environments.list_environments(pb::ListEnvironmentsRequest::default()).await.unwrap();
    }
    let missing = admin.packages.get_package(pb::GetPackageRequest { id: "0".repeat(32) }).await;
    assert_eq!(missing.unwrap_err().code(), Code::NotFound);
    let refused = anonymous.environments.list_environments(pb::ListEnvironmentsRequest::default()).await;
    assert_eq!(refused.unwrap_err().code(), Code::Unauthenticated);
    let package = preview_package(&mut admin).await;
    // Read before installing: the installation's outbox then logs in with the installation
    // service's own credentials, a second IssueToken whose timing the test does not control.
    let before_install = scrape(&pair.package).await;
    assert_eq!(handled(&before_install, "AuthService", "IssueToken", "OK"), 1.0);
    let req = pb::CreateInstallationRequest {
        package_id: package.id.clone(),
        destination_environment: "qa".into(),
        ..Default::default()
    };
    let installed = admin.installations.create_installation(req).await.unwrap().into_inner();
    assert_eq!(installed.status, pb::InstallationStatus::Installed as i32, "{installed:?}");

    let p = scrape(&pair.package).await;
    assert_eq!(handled(&p, "PackageService", "GetPackage", "NOT_FOUND"), 1.0);
    assert_eq!(handled(&p, "PackageService", "CreatePackage", "OK"), 1.0);
    let get_ok = handled(&p, "PackageService", "GetPackage", "OK");
    assert!(get_ok >= 1.0, "the polls of the package count as OK GetPackage calls");
    // One histogram per RPC, counting every call whatever its code.
    assert_eq!(latency(&p, "PackageService", "GetPackage", "count"), get_ok + 1.0);
    assert_eq!(latency(&p, "PackageService", "GetPackage", "+Inf"), get_ok + 1.0);
    assert!(latency(&p, "PackageService", "GetPackage", "sum") > 0.0);
    assert_eq!(p["promotion_extraction_duration_seconds_count"], 1.0);
    assert_eq!(p["promotion_extraction_objects_count"], 1.0);
    assert!(p["promotion_extraction_objects_sum"] >= 1.0, "the template and what it reaches");
    assert!(p["promotion_store_size_bytes{service=\"package\"}"] > 0.0);

    let i = scrape(&pair.installation).await;
    assert_eq!(handled(&i, "EnvironmentService", "ListEnvironments", "OK"), 3.0);
    assert_eq!(handled(&i, "EnvironmentService", "ListEnvironments", "UNAUTHENTICATED"), 1.0);
    // A server stream, counted from its trailers when the extraction read it to the end.
    assert_eq!(handled(&i, "EnvironmentService", "ExportObjects", "OK"), 1.0);
    assert_eq!(handled(&i, "InstallationService", "CreateInstallation", "OK"), 1.0);
    assert_eq!(latency(&i, "EnvironmentService", "ListEnvironments", "count"), 4.0);
    assert_eq!(i["promotion_installation_duration_seconds_count"], 1.0);
    assert_eq!(i["promotion_installation_objects_sum"], p["promotion_extraction_objects_sum"]);
    assert!(i["promotion_store_size_bytes{service=\"installation\"}"] > 0.0);
    assert_eq!(i["promotion_extraction_duration_seconds_count"], 0.0, "each process has its own registry");
}

/// The first JSON log line of `service` that `matches`, waiting for the writer.
async fn log_line(service: &Service, matches: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + POLL_LIMIT;
    loop {
        let log = read(&service.log);
        let found = log.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).find(|j| matches(j));
        if let Some(line) = found {
            return line;
        }
        assert!(Instant::now() < deadline, "no such log line; log:\n{log}");
        tokio::time::sleep(POLL_EVERY).await;
    }
}

fn with_request_id<T>(message: T, id: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.metadata_mut().insert("x-request-id", id.parse().unwrap());
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_ports_refuse_unknown_paths_and_logs_carry_request_ids() {
    let pair = start_pair().await;
    assert_eq!(http_get(pair.package.admin, "/nope").await.0, 404);
    let mut anonymous = Clients::connect(pair.package_addr, pair.installation_addr, None).await;

    // A handler's own log line carries the call's span.
    let bad = pb::IssueTokenRequest { client_id: "alice".into(), client_secret: "wrong".into(), ttl_seconds: 0 };
    let refused = anonymous.auth.issue_token(with_request_id(bad, "metrics-test-token-7")).await;
    assert_eq!(refused.unwrap_err().code(), Code::Unauthenticated);
    let line = log_line(&pair.package, |j| j["span"]["request_id"] == "metrics-test-token-7").await;
    assert_eq!(line["message"], "token refused: bad client credentials", "{line}");
    assert_eq!(line["span"]["method"], "/promotion.v1.AuthService/IssueToken", "{line}");

    // With debug logging of the metrics module, every call ends with an access line.
    let token = issue_token(pair.package_addr, "alice", "alice-secret").await;
    let mut alice = Clients::connect(pair.package_addr, pair.installation_addr, Some(token)).await;
    let get = pb::GetPackageRequest { id: "0".repeat(32) };
    assert_eq!(
        alice.packages.get_package(with_request_id(get, "metrics-test-get-42")).await.unwrap_err().code(),
        Code::NotFound
    );
    let line = log_line(&pair.package, |j| {
        j["span"]["request_id"] == "metrics-test-get-42" && j["message"] == "call finished"
    })
    .await;
    assert_eq!(line["code"], "NOT_FOUND", "{line}");
    assert_eq!(line["span"]["method"], "/promotion.v1.PackageService/GetPackage", "{line}");
    assert!(line["seconds"].as_f64().is_some(), "{line}");
}
