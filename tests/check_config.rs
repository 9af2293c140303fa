//! `promotion check-config`: the example configurations under deploy/config/ are valid,
//! broken ones are refused with a message naming the problem, and `PROMOTION_*`
//! environment variables and `--set` flags are applied before validation.
use std::path::{Path, PathBuf};
use std::process::Command;

struct Outcome {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs the real binary with a clean environment plus `envs`.
fn promotion(args: &[&str], envs: &[(&str, &str)]) -> Outcome {
    let output = Command::new(env!("CARGO_BIN_EXE_promotion"))
        .args(args)
        .env_clear()
        .envs(envs.iter().copied())
        .output()
        .expect("run promotion");
    Outcome {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn deploy_config(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/config").join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(deploy_config(name)).unwrap()
}

/// Every regular file below `dir`.
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

/// Writes `text` to a temporary file and runs check-config on it.
fn check_text(text: &str, extra_args: &[&str]) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    let mut args = vec!["check-config", path.to_str().unwrap()];
    args.extend_from_slice(extra_args);
    promotion(&args, &[])
}

/// `text` with `from` replaced once; panics if `from` is not there, so a changed example
/// cannot silently turn a broken-config case into a valid one.
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the example no longer contains {from:?}");
    text.replacen(from, to, 1)
}

#[track_caller]
fn assert_refused(outcome: &Outcome, problem: &str) {
    assert!(!outcome.success, "the configuration should be refused (expected {problem:?}); stdout: {}", outcome.stdout);
    assert!(outcome.stderr.contains(problem), "the error should name {problem:?}; stderr: {}", outcome.stderr);
}

#[test]
fn every_example_configuration_is_valid() {
    let files = files_under(&Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/config"));
    let names: Vec<String> = files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
    for expected in ["package-service.toml", "installation-dev-qa.toml", "installation-demo-prod.toml"] {
        assert!(names.iter().any(|n| n == expected), "deploy/config/{expected} is missing: {names:?}");
    }
    for file in &files {
        let outcome = promotion(&["check-config", file.to_str().unwrap()], &[]);
        assert!(outcome.success, "{} is not valid: {}", file.display(), outcome.stderr);
        assert!(outcome.stdout.contains("valid"), "{}: {}", file.display(), outcome.stdout);
    }
    let kind = |name: &str| promotion(&["check-config", deploy_config(name).to_str().unwrap()], &[]).stdout;
    assert!(kind("package-service.toml").contains("valid package service configuration"));
    assert!(kind("installation-dev-qa.toml").contains("valid installation service configuration"));
}

#[test]
fn the_examples_describe_one_deployment_with_two_installation_services() {
    let package: toml::Value = toml::from_str(&read("package-service.toml")).unwrap();
    let mut hosted_everywhere = Vec::new();
    for name in ["installation-dev-qa.toml", "installation-demo-prod.toml"] {
        let installation: toml::Value = toml::from_str(&read(name)).unwrap();
        for shared in ["auth", "organizations", "environments"] {
            assert_eq!(installation[shared], package[shared], "{name}: [{shared}] differs from package-service.toml");
        }
        let listen = installation["listen"].as_str().unwrap();
        let hosted: Vec<&str> =
            installation["hosted_environments"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        // The directory sends each hosted environment's callers to this very instance.
        for env in &hosted {
            let entry = package["environments"].as_array().unwrap().iter().find(|e| e["id"].as_str() == Some(env));
            let address = entry.unwrap()["installation_service"].as_str().unwrap();
            assert!(
                address.ends_with(&listen[listen.rfind(':').unwrap()..]),
                "{env} is hosted at {listen}, not {address}"
            );
        }
        hosted_everywhere.extend(hosted.iter().map(|s| s.to_string()));
    }
    hosted_everywhere.sort();
    assert_eq!(hosted_everywhere, vec!["demo", "dev", "prod", "qa"], "each environment hosted exactly once");
}

#[test]
fn broken_configurations_are_refused_naming_the_problem() {
    let package = read("package-service.toml");
    let installation = read("installation-dev-qa.toml");
    let cases = [
        (
            "unknown organization",
            replaced(&package, "id = \"dev\"\norganization = \"globex\"", "id = \"dev\"\norganization = \"initech\""),
            "environment dev: unknown organization initech",
        ),
        (
            "short signing key",
            replaced(&package, "signing_key = \"REPLACE-ME-", "signing_key = \"short\"\n# \""),
            "auth.signing_key must be at least 32 bytes",
        ),
        (
            "bad secret hash",
            replaced(&package, "secret_hash = \"$argon2id$", "secret_hash = \"plain-text-secret\"\n# \""),
            "client platform-admin: secret_hash is not a PHC hash",
        ),
        (
            "unknown catalog",
            replaced(&package, "catalog = \"apim\"", "catalog = \"salesforce\""),
            "organization globex: unknown catalog salesforce",
        ),
        (
            "binding on another environment",
            replaced(&package, "environment = \"*\" }]", "environment = \"staging\" }]"),
            "client platform-admin: binding on unknown environment staging",
        ),
        (
            "hosted environment not in the directory",
            replaced(
                &installation,
                "hosted_environments = [\"dev\", \"qa\"]",
                "hosted_environments = [\"dev\", \"staging\"]",
            ),
            "hosted environment staging is not in the environment directory",
        ),
        ("misspelt key", replaced(&package, "log_format =", "log_fromat ="), "unknown field `log_fromat`"),
        ("not TOML", "listen = [".to_string(), "TOML parse error"),
    ];
    for (what, text, problem) in cases {
        let outcome = check_text(&text, &[]);
        assert!(!outcome.success, "{what}: accepted");
        assert!(outcome.stderr.contains(problem), "{what}: the error should name {problem:?}; got {}", outcome.stderr);
    }
    // Every problem is reported at once, not only the first.
    let twice_broken = replaced(
        &replaced(&package, "catalog = \"apim\"", "catalog = \"salesforce\""),
        "signing_key = \"REPLACE-ME-",
        "signing_key = \"short\"\n# \"",
    );
    let outcome = check_text(&twice_broken, &[]);
    assert_refused(&outcome, "unknown catalog salesforce");
    assert_refused(&outcome, "auth.signing_key must be at least 32 bytes");

    let missing = promotion(&["check-config", "/nonexistent/promotion.toml"], &[]);
    assert_refused(&missing, "cannot read /nonexistent/promotion.toml");
    // A package service file is not an installation service's configuration.
    let wrong_kind = check_text(&package, &["--service", "installation"]);
    assert_refused(&wrong_kind, "an installation service needs package_service");
}

#[test]
fn environment_overrides_are_applied_before_validation() {
    let file = deploy_config("package-service.toml");
    let file = file.to_str().unwrap();
    let outcome = promotion(&["check-config", file], &[("PROMOTION_AUTH__SIGNING_KEY", "short")]);
    assert_refused(&outcome, "auth.signing_key must be at least 32 bytes");
    // Below the configured default page size (50): only wrong if the override took effect.
    let outcome = promotion(&["check-config", file], &[("PROMOTION_LIMITS__MAX_PAGE_SIZE", "10")]);
    assert_refused(&outcome, "default_page_size <= max_page_size");
    let outcome = promotion(&["check-config", file], &[("PROMOTION_LIMITS__MAX_PAGE_SIZE", "500")]);
    assert!(outcome.success, "{}", outcome.stderr);
    // A value of the wrong type is a schema error naming the key.
    let outcome = promotion(&["check-config", file], &[("PROMOTION_LIMITS__MAX_PAGE_SIZE", "lots")]);
    assert_refused(&outcome, "max_page_size");
    // Variables the command line itself reads are not configuration keys.
    let outcome = promotion(&["check-config", file], &[("PROMOTION_CONFIG", "/elsewhere.toml")]);
    assert!(outcome.success, "{}", outcome.stderr);
}

#[test]
fn set_flags_are_applied_before_the_service_starts() {
    // check-config takes no --set, so the services' own start-up validation shows it: a
    // broken override stops them before they serve anything.
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let package = deploy_config("package-service.toml");
    let args = [
        "package-service",
        "--config",
        package.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir,
        "--set",
        "auth.signing_key=short",
    ];
    assert_refused(&promotion(&args, &[]), "auth.signing_key must be at least 32 bytes");
    let installation = deploy_config("installation-dev-qa.toml");
    let args = [
        "installation-service",
        "--config",
        installation.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir,
        "--set",
        "hosted_environments=[\"qa\", \"staging\"]",
    ];
    assert_refused(&promotion(&args, &[]), "hosted environment staging is not in the environment directory");
    let args = ["package-service", "--config", package.to_str().unwrap(), "--set", "no-equals-sign"];
    assert_refused(&promotion(&args, &[]), "is not key.path=value");
}

#[test]
fn hash_secret_prints_a_hash_the_configuration_accepts() {
    let outcome = promotion(&["hash-secret", "correct horse battery staple"], &[]);
    assert!(outcome.success, "{}", outcome.stderr);
    let hash = outcome.stdout.trim();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(promotion_core::secrets::verify_secret("correct horse battery staple", hash));
    assert!(!hash.contains("correct horse"), "the secret itself is never printed");
    let package = read("package-service.toml");
    let start = package.find("secret_hash = \"").unwrap() + "secret_hash = \"".len();
    let end = start + package[start..].find('"').unwrap();
    let outcome = check_text(&format!("{}{hash}{}", &package[..start], &package[end..]), &[]);
    assert!(outcome.success, "{}", outcome.stderr);
    assert_refused(&promotion(&["hash-secret", ""], &[]), "the secret is empty");
}
