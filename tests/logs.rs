//! What the services log, read from their standard error as an operator's log collector
//! would (not a terminal): no colour codes, one info line per mutating call with its RPC,
//! actor, environment, code and duration, and JSON lines that keep lists as arrays.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use promotion_api::v1 as pb;
use serde_json::Value;

/// `promotion dev` with its standard error in a file.
struct Logged {
    child: Child,
    log: PathBuf,
    package_addr: std::net::SocketAddr,
    installation_addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(json: bool) -> Logged {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let [package_addr, installation_addr, http_addr] = free_addrs();
    let mut command = promotion_command();
    command
        .args(["dev", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--package-addr", &package_addr.to_string(), "--installation-addr", &installation_addr.to_string()])
        .args(["--http-addr", &http_addr.to_string()])
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    if json {
        command.arg("--json-logs");
    }
    let logged = Logged { child: command.spawn().unwrap(), log, package_addr, installation_addr, _dir: dir };
    let deadline = Instant::now() + Duration::from_secs(60);
    for addr in [package_addr, installation_addr] {
        while health_status(addr).await != Some(1) {
            assert!(Instant::now() < deadline, "dev mode did not start: {}", read(&logged.log));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    logged
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn json_lines(path: &Path) -> Vec<Value> {
    read(path).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

/// The access lines logged so far, waiting until there are `count` (a line is written when
/// its call's response has gone out, which the client may see first).
async fn mutating_calls(path: &Path, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines: Vec<Value> = json_lines(path).into_iter().filter(|l| l["message"] == "mutating call").collect();
        if lines.len() >= count || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn group(name: &str) -> pb::ConfigObject {
    pb::ConfigObject { obj_code: "GROUP".into(), name: name.into(), ..Default::default() }
}

#[tokio::test]
async fn each_mutating_call_is_one_info_line_with_actor_environment_code_and_duration() {
    let dev = start(true).await;
    let erin = Clients::connect(
        dev.package_addr,
        dev.installation_addr,
        Some(issue_token(dev.package_addr, "erin", "erin-secret").await),
    )
    .await;
    let victor = Clients::connect(
        dev.package_addr,
        dev.installation_addr,
        Some(issue_token(dev.package_addr, "victor", "victor-secret").await),
    )
    .await;
    let alice = Clients::connect(
        dev.package_addr,
        dev.installation_addr,
        Some(issue_token(dev.package_addr, "alice", "alice-secret").await),
    )
    .await;

    // Reads log no access line.
    erin.environments.clone().list_environments(pb::ListEnvironmentsRequest::default()).await.unwrap();
    let put = pb::PutObjectsRequest { environment: "dev".into(), objects: vec![group("Logged")], ..Default::default() };
    erin.environments.clone().put_objects(put).await.unwrap();
    let refused = pb::PutObjectsRequest { environment: "qa".into(), objects: vec![group("No")], ..Default::default() };
    victor.environments.clone().put_objects(refused).await.unwrap_err();
    // The request names no environment; the package it returns does.
    let created = alice
        .packages
        .clone()
        .create_package(pb::CreatePackageRequest {
            name: "Logged package".into(),
            source_environment: "dev".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let update = pb::UpdatePackageRequest {
        package: Some(pb::Package { id: created.id.clone(), name: "Logged package v2".into(), ..Default::default() }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["name".into()] }),
        request_id: String::new(),
    };
    alice.packages.clone().update_package(update).await.unwrap();

    let lines = mutating_calls(&dev.log, 4).await;
    let summary: Vec<(String, String, String, String)> = lines
        .iter()
        .map(|l| {
            let field = |k: &str| l[k].as_str().unwrap_or_else(|| panic!("{k} missing: {l}")).to_string();
            assert!(l["seconds"].as_f64().is_some(), "{l}");
            assert_eq!(l["level"], "INFO", "{l}");
            (field("rpc"), field("actor"), field("environment"), field("code"))
        })
        .collect();
    let expected = [
        ("/promotion.v1.EnvironmentService/PutObjects", "erin", "dev", "OK"),
        ("/promotion.v1.EnvironmentService/PutObjects", "victor", "qa", "PERMISSION_DENIED"),
        ("/promotion.v1.PackageService/CreatePackage", "alice", "dev", "OK"),
        ("/promotion.v1.PackageService/UpdatePackage", "alice", "dev", "OK"),
    ];
    let expected: Vec<(String, String, String, String)> =
        expected.iter().map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string())).collect();
    assert_eq!(summary, expected, "{lines:#?}");
    // Each line is in its call's span, with its request id.
    assert!(lines.iter().all(|l| l["span"]["request_id"].is_string()), "{lines:#?}");

    // Lists stay lists: the installation service's start-up line names its environments.
    let serving = json_lines(&dev.log).into_iter().find(|l| l["message"] == "installation service serving");
    let serving = serving.expect("the installation service says it serves");
    assert!(serving["environments"].is_array(), "{serving}");
}

#[tokio::test]
async fn text_logs_have_no_colour_codes_when_standard_error_is_a_file() {
    let dev = start(false).await;
    let token = issue_token(dev.package_addr, "erin", "erin-secret").await;
    let mut erin = Clients::connect(dev.package_addr, dev.installation_addr, Some(token)).await;
    let put = pb::PutObjectsRequest { environment: "dev".into(), objects: vec![group("Plain")], ..Default::default() };
    erin.environments.put_objects(put).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !read(&dev.log).contains("mutating call") {
        assert!(Instant::now() < deadline, "no access line: {}", read(&dev.log));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = read(&dev.log);
    assert!(!text.contains('\x1b'), "escape codes in a log file:\n{text}");
    assert!(text.contains("actor=\"erin\"") || text.contains("actor=erin"), "{text}");
}
