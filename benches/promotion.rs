//! Section 9 benchmarks: extraction, pre-run, install and rollback of 10,000- and
//! 100,000-object packages, and unary throughput under 16 connections x 16 streams —
//! each printed as median and spread next to a baseline measured in the same run (a raw
//! sled batch write + flush of the same objects; a minimal tonic server). The services
//! run as separate release processes on loopback, so peak RSS is per service.
//!
//! Run: `cargo bench --bench promotion` (sizes: BENCH_SIZES=10000,100000;
//! runs per case: BENCH_RUNS=5; throughput seconds: BENCH_SECONDS=3).
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use promotion_api::convert::map_to_struct;
use promotion_api::v1 as pb;
use prost::Message;
use serde_json::json;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::Request;

const BASELINE_ENV: &str = "BENCH_BASELINE_ADDR";

fn main() {
    if let Ok(addr) = std::env::var(BASELINE_ENV) {
        return baseline_server(addr.parse().expect("baseline address"));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(run());
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

struct Services {
    package: Child,
    installation: Child,
    package_addr: SocketAddr,
    installation_addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Services {
    fn drop(&mut self) {
        for c in [&mut self.package, &mut self.installation] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Where a pair of services listens.
struct DevAddrs {
    package_addr: SocketAddr,
    installation_addr: SocketAddr,
}

/// Development mode's configurations for these addresses, as the binary writes them.
fn dev_configs(
    data_dir: std::path::PathBuf,
    package_addr: SocketAddr,
    installation_addr: SocketAddr,
) -> (promotion_core::config::Config, promotion_core::config::Config) {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(binary())
        .args(["dev", "--data-dir"])
        .arg(&data_dir)
        .args(["--package-addr", &package_addr.to_string(), "--installation-addr", &installation_addr.to_string()])
        .arg("--write-config")
        .arg(out.path())
        .status()
        .expect("run promotion dev --write-config");
    assert!(status.success(), "promotion dev --write-config failed");
    let read = |name: &str| -> promotion_core::config::Config {
        toml::from_str(&std::fs::read_to_string(out.path().join(name)).unwrap()).unwrap()
    };
    (read("package-service.toml"), read("installation-service.toml"))
}

fn binary() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_promotion"))
}

async fn start_services() -> Services {
    let dir = tempfile::tempdir().unwrap();
    let opts = DevAddrs { package_addr: free_addr(), installation_addr: free_addr() };
    let (mut package_config, mut installation_config) =
        dev_configs(dir.path().to_path_buf(), opts.package_addr, opts.installation_addr);
    for c in [&mut package_config, &mut installation_config] {
        c.limits.max_objects_per_put = 10_000;
        c.limits.max_package_objects = 250_000;
    }
    let spawn = |sub: &str, config: &promotion_core::config::Config, name: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, toml::to_string(config).unwrap()).unwrap();
        Command::new(binary())
            .args([sub, "--config"])
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap()
    };
    let package = spawn("package-service", &package_config, "package.toml");
    let installation = spawn("installation-service", &installation_config, "installation.toml");
    for addr in [opts.package_addr, opts.installation_addr] {
        wait_connectable(addr).await;
    }
    Services {
        package,
        installation,
        package_addr: opts.package_addr,
        installation_addr: opts.installation_addr,
        _dir: dir,
    }
}

async fn wait_connectable(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "{addr} never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
}

fn authed<T>(msg: T, token: &MetadataValue<tonic::metadata::Ascii>) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert("authorization", token.clone());
    r
}

/// Peak resident set size of a process, from /proc.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// A synthetic template: `groups` groups and roles, one template, and tasks with one
/// assignment each; tasks reference a group and a role, assignments a role (fan-out 2).
fn synthetic_template(total: usize, seed: u32) -> Vec<pb::ConfigObject> {
    let shared = 50;
    let tasks = (total.saturating_sub(2 * shared + 1)) / 2;
    let id = |kind: u32, n: usize| format!("{seed:08x}{kind:08x}{n:016x}");
    let description = "Coordinate the agency onboarding step with the account team; confirm scope, owners, \
                       budget approvals and the hand-off checklist before the milestone review."
        .to_string();
    let obj = |code: &str, id: String, name: String, fields: serde_json::Value| pb::ConfigObject {
        obj_code: code.into(),
        id,
        name,
        fields: Some(map_to_struct(fields.as_object().unwrap())),
        ..Default::default()
    };
    let reference = |field: &str, code: &str, id: String| pb::Reference {
        field: field.into(),
        obj_code: code.into(),
        id,
        optional: false,
    };
    let mut out = Vec::with_capacity(total);
    for g in 0..shared {
        out.push(obj(
            "GROUP",
            id(1, g),
            format!("Group {seed}-{g}"),
            json!({"description": description, "active": true}),
        ));
        out.push(obj(
            "ROLE",
            id(2, g),
            format!("Role {seed}-{g}"),
            json!({"billing_per_hour": 120 + g, "cost_per_hour": 80}),
        ));
    }
    let tmpl_id = id(3, 0);
    out.push(obj(
        "TMPL",
        tmpl_id.clone(),
        format!("Synthetic template {seed}"),
        json!({"description": description, "duration_days": 30}),
    ));
    for t in 0..tasks {
        let mut task = obj(
            "TTSK",
            id(4, t),
            format!("Task {t}"),
            json!({"description": description, "duration_minutes": 60 * (1 + t % 8), "priority": t % 4, "milestone": false}),
        );
        task.parent = Some(pb::ObjectKey { obj_code: "TMPL".into(), id: tmpl_id.clone() });
        task.references =
            vec![reference("group", "GROUP", id(1, t % shared)), reference("role", "ROLE", id(2, (t * 7) % shared))];
        let mut assignment = obj(
            "TASSGN",
            id(5, t),
            format!("Assignment {t}"),
            json!({"allocation_percent": 50 + t % 50, "is_primary": true}),
        );
        assignment.parent = Some(pb::ObjectKey { obj_code: "TTSK".into(), id: id(4, t) });
        assignment.references = vec![reference("role", "ROLE", id(2, t % shared))];
        out.push(task);
        out.push(assignment);
    }
    out
}

struct Stats {
    median: f64,
    min: f64,
    max: f64,
}

fn stats(mut xs: Vec<f64>) -> Stats {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Stats { median: xs[xs.len() / 2], min: xs[0], max: xs[xs.len() - 1] }
}

fn report(case: &str, s: &Stats, baseline: Option<&Stats>, target: &str) {
    let ratio = baseline.map_or(String::from("-"), |b| format!("{:.2}x", s.median / b.median));
    println!(
        "| {case} | {:.1} ms | {:.1}-{:.1} ms | {} | {ratio} | {target} |",
        s.median,
        s.min,
        s.max,
        baseline.map_or("-".into(), |b| format!("{:.1} ms", b.median))
    );
}

/// Raw sled baseline: the same objects (JSON, as the store encodes them) in one batch + flush.
fn sled_baseline(objects: &[pb::ConfigObject], runs: usize) -> Stats {
    let domain: Vec<(Vec<u8>, Vec<u8>)> = objects
        .iter()
        .map(|o| {
            let o = promotion_core::objects::ConfigObject::try_from(o.clone()).expect("generated objects are finite");
            (format!("O{}\0{}", o.obj_code, o.id).into_bytes(), serde_json::to_vec(&o).unwrap())
        })
        .collect();
    let times = (0..runs)
        .map(|_| {
            let dir = tempfile::tempdir().unwrap();
            let db = sled::open(dir.path()).unwrap();
            let start = Instant::now();
            let mut batch = sled::Batch::default();
            for (k, v) in &domain {
                batch.insert(k.as_slice(), v.as_slice());
            }
            db.apply_batch(batch).unwrap();
            db.flush().unwrap();
            start.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    stats(times)
}

async fn put_all(
    env: &mut pb::environment_service_client::EnvironmentServiceClient<Channel>,
    token: &MetadataValue<tonic::metadata::Ascii>,
    environment: &str,
    objects: Vec<pb::ConfigObject>,
) {
    // Batches of about 1 MiB keep every message under the brief's bound.
    for chunk in objects.chunks(2000) {
        env.put_objects(authed(
            pb::PutObjectsRequest {
                environment: environment.into(),
                objects: chunk.to_vec(),
                request_id: String::new(),
                ..Default::default()
            },
            token,
        ))
        .await
        .unwrap();
    }
}

async fn run() {
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let runs: usize = env_or("BENCH_RUNS", 5);
    let seconds: u64 = env_or("BENCH_SECONDS", 3);
    let services = start_services().await;
    let pc = channel(services.package_addr).await;
    let ic = channel(services.installation_addr).await;
    let mut auth = pb::auth_service_client::AuthServiceClient::new(pc.clone());
    let token = auth
        .issue_token(pb::IssueTokenRequest {
            client_id: "admin".into(),
            client_secret: "admin-secret".into(),
            ttl_seconds: 3600,
        })
        .await
        .unwrap()
        .into_inner()
        .access_token;
    let token: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    let limit = 64 * 1024 * 1024;
    let mut packages =
        pb::package_service_client::PackageServiceClient::new(pc.clone()).max_decoding_message_size(limit);
    let mut envs = pb::environment_service_client::EnvironmentServiceClient::new(ic.clone())
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let mut installs =
        pb::installation_service_client::InstallationServiceClient::new(ic.clone()).max_decoding_message_size(limit);

    println!("\n| case | median | spread (min-max) | baseline median | ratio | target |");
    println!("|---|---|---|---|---|---|");
    let mut largest_message = 0usize;
    let mut first_package = String::new();
    let mut first_object = (String::new(), String::new());
    for (round, &n) in sizes.iter().enumerate() {
        let source = synthetic_template(n, 1 + round as u32 * 2);
        let resident = synthetic_template(n, 2 + round as u32 * 2);
        let n_actual = source.len();
        let baseline = sled_baseline(&source, runs);
        report(&format!("raw sled batch + flush, {n_actual} objects (baseline)"), &baseline, None, "-");
        let tmpl_id = source.iter().find(|o| o.obj_code == "TMPL").unwrap().id.clone();
        if first_object.0.is_empty() {
            first_object = ("TMPL".into(), tmpl_id.clone());
        }
        put_all(&mut envs, &token, "dev", source).await;
        put_all(&mut envs, &token, "qa", resident).await;

        // Extraction: CreatePackage -> BUILDING.
        let mut times = Vec::new();
        let mut package_id = String::new();
        for r in 0..runs {
            let start = Instant::now();
            let p = packages
                .create_package(authed(
                    pb::CreatePackageRequest {
                        name: format!("Bench {n} run {r}"),
                        description: String::new(),
                        source_environment: "dev".into(),
                        object_collections: vec![pb::ObjectCollection {
                            obj_code: "TMPL".into(),
                            entities: vec![pb::EntityRef { id: tmpl_id.clone(), name: String::new() }],
                        }],
                        is_private: false,
                        request_id: String::new(),
                    },
                    &token,
                ))
                .await
                .unwrap()
                .into_inner();
            loop {
                let now = packages
                    .get_package(authed(pb::GetPackageRequest { id: p.id.clone() }, &token))
                    .await
                    .unwrap()
                    .into_inner();
                match pb::PackageStatus::try_from(now.status) {
                    Ok(pb::PackageStatus::Building) => break,
                    Ok(pb::PackageStatus::ExtractionFailed) => panic!("extraction failed: {}", now.failure_reason),
                    _ => tokio::time::sleep(Duration::from_millis(2)).await,
                }
            }
            times.push(start.elapsed().as_secs_f64() * 1000.0);
            package_id = p.id;
        }
        report(
            &format!("extract {n_actual} objects, CreatePackage -> BUILDING"),
            &stats(times),
            Some(&baseline),
            if n <= 10_000 { "<= 1000 ms and <= 5x" } else { "completes" },
        );
        if first_package.is_empty() {
            first_package = package_id.clone();
        }
        let mut stream = packages
            .get_package_definition(authed(
                pb::GetPackageDefinitionRequest { id: package_id.clone(), version: 0 },
                &token,
            ))
            .await
            .unwrap()
            .into_inner();
        while let Some(m) = stream.message().await.unwrap() {
            largest_message = largest_message.max(m.encoded_len());
        }
        let p = packages
            .get_package(authed(pb::GetPackageRequest { id: package_id.clone() }, &token))
            .await
            .unwrap()
            .into_inner();
        let mut publish = p.clone();
        publish.status = pb::PackageStatus::Preview as i32;
        packages
            .update_package(authed(
                pb::UpdatePackageRequest {
                    package: Some(publish),
                    update_mask: Some(prost_types::FieldMask { paths: vec!["status".into()] }),
                    request_id: String::new(),
                },
                &token,
            ))
            .await
            .unwrap();

        // Pre-run into an environment already holding n objects.
        let mut times = Vec::new();
        for _ in 0..runs {
            let start = Instant::now();
            let pr = installs
                .create_pre_run(authed(
                    pb::CreatePreRunRequest {
                        package_id: package_id.clone(),
                        package_version: 0,
                        destination_environment: "qa".into(),
                        request_id: String::new(),
                    },
                    &token,
                ))
                .await
                .unwrap()
                .into_inner();
            times.push(start.elapsed().as_secs_f64() * 1000.0);
            largest_message = largest_message.max(pr.encoded_len());
        }
        report(
            &format!("pre-run {n_actual} objects into {n_actual}"),
            &stats(times),
            Some(&baseline),
            if n <= 10_000 { "<= 500 ms" } else { "completes" },
        );

        // Install (all CREATE) then roll back, repeatedly.
        let (mut install_times, mut rollback_times) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let start = Instant::now();
            let inst = installs
                .create_installation(authed(
                    pb::CreateInstallationRequest {
                        package_id: package_id.clone(),
                        destination_environment: "qa".into(),
                        ..Default::default()
                    },
                    &token,
                ))
                .await
                .unwrap()
                .into_inner();
            install_times.push(start.elapsed().as_secs_f64() * 1000.0);
            largest_message = largest_message.max(inst.encoded_len());
            assert_eq!(inst.summary.get("CREATE").copied().unwrap_or(0) as usize, n_actual, "all CREATE");
            let start = Instant::now();
            installs
                .rollback_installation(authed(
                    pb::RollbackInstallationRequest { id: inst.id, ..Default::default() },
                    &token,
                ))
                .await
                .unwrap();
            rollback_times.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        report(
            &format!("install {n_actual} objects (all CREATE), durable"),
            &stats(install_times),
            Some(&baseline),
            if n <= 10_000 { "<= 1500 ms and <= 5x" } else { "completes" },
        );
        report(&format!("rollback {n_actual} objects"), &stats(rollback_times), Some(&baseline), "completes");
    }
    println!("\nlargest message seen: {:.1} KiB (bound: 1024 KiB)", largest_message as f64 / 1024.0);
    println!(
        "peak RSS: package service {:.0} MiB, installation service {:.0} MiB (bound: 1024 MiB)",
        peak_rss_mib(services.package.id()),
        peak_rss_mib(services.installation.id())
    );

    // Unary throughput against a minimal tonic server serving the same message.
    let baseline_addr = free_addr();
    let mut baseline = Command::new(std::env::current_exe().unwrap())
        .env(BASELINE_ENV, baseline_addr.to_string())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_connectable(baseline_addr).await;
    let d = Duration::from_secs(seconds);
    let base = throughput(baseline_addr, d, Call::Package(first_package.clone()), token.clone()).await;
    let get_package = throughput(services.package_addr, d, Call::Package(first_package.clone()), token.clone()).await;
    let get_object = throughput(
        services.installation_addr,
        d,
        Call::Object(first_object.0.clone(), first_object.1.clone()),
        token.clone(),
    )
    .await;
    let _ = baseline.kill();
    let _ = baseline.wait();
    println!(
        "\n| unary throughput, 16 connections x 16 streams, {seconds} s | calls/s | vs minimal tonic server | target |"
    );
    println!("|---|---|---|---|");
    println!("| minimal tonic server (baseline) | {base:.0} | 1.00 | - |");
    println!("| GetPackage | {get_package:.0} | {:.2} | >= 0.50 |", get_package / base);
    println!("| GetObject | {get_object:.0} | {:.2} | >= 0.50 |", get_object / base);
}

#[derive(Clone)]
enum Call {
    Package(String),
    Object(String, String),
}

async fn throughput(addr: SocketAddr, d: Duration, call: Call, token: MetadataValue<tonic::metadata::Ascii>) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + d;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let ch = channel(addr).await;
        for _ in 0..16 {
            let (ch, call, token, done) = (ch.clone(), call.clone(), token.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let mut p = pb::package_service_client::PackageServiceClient::new(ch.clone());
                let mut e = pb::environment_service_client::EnvironmentServiceClient::new(ch);
                while Instant::now() < deadline {
                    let ok = match &call {
                        Call::Package(id) => {
                            p.get_package(authed(pb::GetPackageRequest { id: id.clone() }, &token)).await.is_ok()
                        }
                        Call::Object(code, id) => e
                            .get_object(authed(
                                pb::GetObjectRequest {
                                    environment: "dev".into(),
                                    obj_code: code.clone(),
                                    id: id.clone(),
                                },
                                &token,
                            ))
                            .await
                            .is_ok(),
                    };
                    assert!(ok, "throughput call failed");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / d.as_secs_f64()
}

/// The baseline: a tonic server that answers GetPackage with a fixed package and does
/// nothing else (no token check, no store).
struct Minimal(pb::Package);

#[tonic::async_trait]
impl pb::package_service_server::PackageService for Minimal {
    async fn get_package(
        &self,
        _req: Request<pb::GetPackageRequest>,
    ) -> Result<tonic::Response<pb::Package>, tonic::Status> {
        Ok(tonic::Response::new(self.0.clone()))
    }
}

fn baseline_server(addr: SocketAddr) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let package = pb::Package {
            id: uuid::Uuid::new_v4().to_string(),
            name: "Baseline package".into(),
            version: 1,
            ..Default::default()
        };
        tonic::transport::Server::builder()
            .add_service(pb::package_service_server::PackageServiceServer::new(Minimal(package)))
            .serve(addr)
            .await
            .unwrap();
    });
}
