//! `promotion check-config`: the example configurations under deploy/config/ are refused
//! as shipped (they carry no secret), naming every variable to set, and valid once real
//! secrets are given; broken ones are refused with a message naming every problem; the
//! configuration's own `PROMOTION_*` variables and `--set` flags are applied before
//! validation, and no other variable is read as configuration.
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

/// Secrets an operator would choose: what the package service example needs to be valid.
const REAL_SECRETS: &[(&str, &str)] = &[
    ("PROMOTION_AUTH__SIGNING_KEY", "k3J9vQ2mX8pL5tR7wY1zB4nC6dF0gH2jK5mN8qS"),
    ("PROMOTION_SECRETS__PLATFORM_ADMIN", "Zq8wE3rT6yU9iO2pA5sD"),
    ("PROMOTION_SECRETS__INSTALLATION_DEV_QA", "Xc4vB7nM0lK3jH6gF9dS"),
    ("PROMOTION_SECRETS__INSTALLATION_DEMO_PROD", "Pl1oK4iJ7uH0yG3tF6rD"),
];

/// What an installation service example needs.
const INSTALLATION_SECRETS: &[(&str, &str)] = &[
    ("PROMOTION_AUTH__SIGNING_KEY", "k3J9vQ2mX8pL5tR7wY1zB4nC6dF0gH2jK5mN8qS"),
    ("PROMOTION_SERVICE_CREDENTIALS__CLIENT_SECRET", "Xc4vB7nM0lK3jH6gF9dS"),
];

/// The secrets the example `file` needs.
fn secrets_for(file: &Path) -> &'static [(&'static str, &'static str)] {
    if file.file_name().unwrap().to_string_lossy().starts_with("installation-") {
        INSTALLATION_SECRETS
    } else {
        REAL_SECRETS
    }
}

/// [`REAL_SECRETS`] with `changes` applied: a value replaced, or a variable left out ("").
fn secrets_with<'a>(changes: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut envs: Vec<(&str, &str)> =
        REAL_SECRETS.iter().copied().filter(|(k, _)| !changes.iter().any(|(c, _)| c == k)).collect();
    envs.extend(changes.iter().copied().filter(|(_, v)| !v.is_empty()));
    envs
}

/// Writes `text` to a temporary file and runs check-config on it with `envs`.
fn check_text_with(text: &str, extra_args: &[&str], envs: &[(&str, &str)]) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    let mut args = vec!["check-config", path.to_str().unwrap()];
    args.extend_from_slice(extra_args);
    promotion(&args, envs)
}

/// check-config of `text` with real secrets.
fn check_text(text: &str, extra_args: &[&str]) -> Outcome {
    check_text_with(text, extra_args, REAL_SECRETS)
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
fn the_examples_are_refused_as_shipped_naming_every_secret_to_set() {
    let package = deploy_config("package-service.toml");
    let outcome = promotion(&["check-config", package.to_str().unwrap()], &[]);
    for problem in [
        "auth.signing_key is not set: set PROMOTION_AUTH__SIGNING_KEY",
        "client platform-admin: no secret: set PROMOTION_SECRETS__PLATFORM_ADMIN",
        "client installation-dev-qa: no secret: set PROMOTION_SECRETS__INSTALLATION_DEV_QA",
        "client installation-demo-prod: no secret: set PROMOTION_SECRETS__INSTALLATION_DEMO_PROD",
    ] {
        assert_refused(&outcome, problem);
    }
    let installation = deploy_config("installation-dev-qa.toml");
    let outcome = promotion(&["check-config", installation.to_str().unwrap()], &[]);
    assert_refused(&outcome, "auth.signing_key is not set: set PROMOTION_AUTH__SIGNING_KEY");
    assert_refused(
        &outcome,
        "service_credentials.client_secret is not set: set PROMOTION_SERVICE_CREDENTIALS__CLIENT_SECRET",
    );
    // The placeholders of the systemd environment files are refused too, each by name.
    let placeholders = [
        ("PROMOTION_AUTH__SIGNING_KEY", "REPLACE-ME-with-the-output-of-openssl-rand-base64-48"),
        ("PROMOTION_SECRETS__PLATFORM_ADMIN", "REPLACE-ME-platform-admin-secret"),
        ("PROMOTION_SECRETS__INSTALLATION_DEV_QA", "REPLACE-ME-installation-dev-qa-secret"),
        ("PROMOTION_SECRETS__INSTALLATION_DEMO_PROD", "REPLACE-ME-installation-demo-prod-secret"),
    ];
    let outcome = promotion(&["check-config", package.to_str().unwrap()], &placeholders);
    assert_refused(&outcome, "auth.signing_key is a published placeholder: set PROMOTION_AUTH__SIGNING_KEY");
    assert_refused(&outcome, "secrets.platform_admin is a published placeholder");
    assert_refused(&outcome, "secrets.installation_demo_prod is a published placeholder");
}

#[test]
fn with_real_secrets_every_example_configuration_is_valid() {
    let files = files_under(&Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/config"));
    let names: Vec<String> = files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
    for expected in ["package-service.toml", "installation-dev-qa.toml", "installation-demo-prod.toml"] {
        assert!(names.iter().any(|n| n == expected), "deploy/config/{expected} is missing: {names:?}");
    }
    for file in &files {
        let outcome = promotion(&["check-config", file.to_str().unwrap()], secrets_for(file));
        assert!(outcome.success, "{} is not valid: {}", file.display(), outcome.stderr);
        assert!(outcome.stdout.contains("valid"), "{}: {}", file.display(), outcome.stdout);
    }
    let kind = |name: &str| {
        let file = deploy_config(name);
        promotion(&["check-config", file.to_str().unwrap()], secrets_for(&file)).stdout
    };
    assert!(kind("package-service.toml").contains("valid package service configuration"));
    assert!(kind("installation-dev-qa.toml").contains("valid installation service configuration"));
}

#[test]
fn published_and_demo_secrets_are_refused() {
    let package = read("package-service.toml");
    type Case = (&'static str, &'static [(&'static str, &'static str)], &'static str);
    let cases: [Case; 5] = [
        (
            "development mode's signing key",
            &[("PROMOTION_AUTH__SIGNING_KEY", "development-mode-signing-key-do-not-use-in-production")],
            "auth.signing_key is a secret development mode publishes",
        ),
        (
            "a demo client's secret",
            &[("PROMOTION_SECRETS__PLATFORM_ADMIN", "admin-secret")],
            "secrets.platform_admin is a secret development mode publishes",
        ),
        (
            "a short secret",
            &[("PROMOTION_SECRETS__PLATFORM_ADMIN", "hunter2")],
            "secrets.platform_admin must be at least 16 characters",
        ),
        (
            "a secret for nobody",
            &[("PROMOTION_SECRETS__PLATFORM_ADMINS", "Zq8wE3rT6yU9iO2pA5sD")],
            "secrets.platform_admins (PROMOTION_SECRETS__PLATFORM_ADMINS) names no client",
        ),
        (
            "a database URL that is not PostgreSQL's",
            &[("PROMOTION_DATABASE_URL", "mysql://db/promotion")],
            "storage.database_url (PROMOTION_DATABASE_URL) must be a postgres:// or postgresql:// URL",
        ),
    ];
    for (what, changes, problem) in cases {
        let outcome = check_text_with(&package, &[], &secrets_with(changes));
        assert!(!outcome.success, "{what}: accepted");
        assert!(outcome.stderr.contains(problem), "{what}: should name {problem:?}; got {}", outcome.stderr);
    }
    // A hash this repository once shipped, of a placeholder secret written next to it.
    let published = "$argon2id$v=19$m=19456,t=2,p=1$Q0/EKzoOuXkcMKHMABDtyw$1w+ZTnQTgkhQFK2bhIC6qF94Yu95aT59JOhLv/cW1ds";
    let text = replaced(
        &package,
        "id = \"installation-dev-qa\"\norganization = \"globex\"\n",
        &format!("id = \"installation-dev-qa\"\norganization = \"globex\"\nsecret_hash = \"{published}\"\n"),
    );
    let outcome = check_text_with(&text, &[], &secrets_with(&[("PROMOTION_SECRETS__INSTALLATION_DEV_QA", "")]));
    assert_refused(&outcome, "client installation-dev-qa: secret_hash is the hash of a placeholder secret");
}

#[test]
fn service_addresses_must_be_urls() {
    let package = read("package-service.toml");
    let installation = read("installation-dev-qa.toml");
    let outcome = check_text(
        &replaced(
            &package,
            "installation_service = \"http://127.0.0.1:50052\"",
            "installation_service = \"127.0.0.1:50052\"",
        ),
        &[],
    );
    assert_refused(&outcome, "environment dev: installation_service \"127.0.0.1:50052\" is not a URL");
    let outcome = check_text_with(
        &replaced(
            &installation,
            "package_service = \"http://127.0.0.1:50051\"",
            "package_service = \"ftp://packages\"",
        ),
        &[],
        INSTALLATION_SECRETS,
    );
    assert_refused(&outcome, "package_service \"ftp://packages\" is not a URL: write http://HOST:PORT");
    let outcome = check_text_with(&installation, &[], INSTALLATION_SECRETS);
    assert!(outcome.success, "{}", outcome.stderr);
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
            replaced(&package, "[auth]\n", "[auth]\nsigning_key = \"short\"\n"),
            "auth.signing_key must be at least 32 bytes",
        ),
        (
            "bad secret hash",
            replaced(
                &package,
                "id = \"installation-dev-qa\"\norganization = \"globex\"\n",
                "id = \"installation-dev-qa\"\norganization = \"globex\"\nsecret_hash = \"plain-text-secret\"\n",
            ),
            "client installation-dev-qa: secret_hash is not a PHC hash",
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
        // The file's own value is under test: leave out the variable that would override it.
        let envs = match what {
            "short signing key" => secrets_with(&[("PROMOTION_AUTH__SIGNING_KEY", "")]),
            "bad secret hash" => secrets_with(&[("PROMOTION_SECRETS__INSTALLATION_DEV_QA", "")]),
            _ => REAL_SECRETS.to_vec(),
        };
        let outcome = check_text_with(&text, &[], &envs);
        assert!(!outcome.success, "{what}: accepted");
        assert!(outcome.stderr.contains(problem), "{what}: the error should name {problem:?}; got {}", outcome.stderr);
    }
    // Every problem is reported at once, not only the first.
    let twice_broken = replaced(&package, "catalog = \"apim\"", "catalog = \"salesforce\"");
    let outcome = check_text_with(&twice_broken, &[], &secrets_with(&[("PROMOTION_AUTH__SIGNING_KEY", "short")]));
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
    let outcome = promotion(&["check-config", file], &secrets_with(&[("PROMOTION_AUTH__SIGNING_KEY", "short")]));
    assert_refused(&outcome, "auth.signing_key must be at least 32 bytes");
    // Below the configured default page size (50): only wrong if the override took effect.
    let outcome = promotion(&["check-config", file], &secrets_with(&[("PROMOTION_LIMITS__MAX_PAGE_SIZE", "10")]));
    assert_refused(&outcome, "default_page_size <= max_page_size");
    let outcome = promotion(&["check-config", file], &secrets_with(&[("PROMOTION_LIMITS__MAX_PAGE_SIZE", "500")]));
    assert!(outcome.success, "{}", outcome.stderr);
    // A value of the wrong type is a schema error naming the key.
    let outcome = promotion(&["check-config", file], &secrets_with(&[("PROMOTION_LIMITS__MAX_PAGE_SIZE", "lots")]));
    assert_refused(&outcome, "max_page_size");
    // Top-level keys: PROMOTION_<KEY>.
    let outcome = promotion(&["check-config", file], &secrets_with(&[("PROMOTION_LOG_FORMAT", "yaml")]));
    assert_refused(&outcome, "yaml");
    // A misspelt key of a section is refused, not ignored.
    let outcome = promotion(&["check-config", file], &secrets_with(&[("PROMOTION_LIMITS__MAX_PAGE_SIZ", "500")]));
    assert_refused(&outcome, "max_page_siz");
}

#[test]
fn variables_of_the_command_line_and_development_mode_are_never_configuration() {
    let file = deploy_config("package-service.toml");
    let foreign = [
        ("PROMOTION_DEV_DATA_DIR", "/tmp/promotion-dev"),
        ("PROMOTION_CONFIG", "/elsewhere.toml"),
        ("PROMOTION_CONFIG_DIR", "/tmp/cli"),
        ("PROMOTION_PROFILE", "staging"),
        ("PROMOTION_TOKEN", "not-a-token"),
        ("PROMOTION_OUTPUT", "json"),
        ("PROMOTION_PACKAGE_ADDR", "http://127.0.0.1:1"),
        ("PROMOTION_INSTALLATION_ADDR", "http://127.0.0.1:1"),
        ("PROMOTION_CLIENT_ID", "alice"),
        ("PROMOTION_CLIENT_SECRET", "alice-secret"),
        ("PROMOTION_SOMETHING__ELSE", "x"),
    ];
    let mut envs = REAL_SECRETS.to_vec();
    envs.extend(foreign);
    let outcome = promotion(&["check-config", file.to_str().unwrap()], &envs);
    assert!(outcome.success, "a client or dev-mode variable broke the configuration: {}", outcome.stderr);
    for (name, _) in foreign {
        assert_eq!(promotion_core::config::env_override_key(name), None, "{name}");
    }
    let key = promotion_core::config::env_override_key;
    assert_eq!(key("PROMOTION_AUTH__SIGNING_KEY").as_deref(), Some("auth.signing_key"));
    assert_eq!(key("PROMOTION_DATABASE_URL").as_deref(), Some("storage.database_url"));
    assert_eq!(key("PROMOTION_ADMIN_LISTEN").as_deref(), Some("admin_listen"));
    assert_eq!(promotion_core::config::env_var("auth.signing_key"), "PROMOTION_AUTH__SIGNING_KEY");
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
    // The hash in the file instead of the first administrator's secret in the environment.
    let package = replaced(
        &read("package-service.toml"),
        "id = \"platform-admin\"\norganization = \"globex\"\n",
        &format!("id = \"platform-admin\"\norganization = \"globex\"\nsecret_hash = \"{hash}\"\n"),
    );
    let outcome = check_text_with(&package, &[], &secrets_with(&[("PROMOTION_SECRETS__PLATFORM_ADMIN", "")]));
    assert!(outcome.success, "{}", outcome.stderr);
    // The same hash may be given as the client's variable.
    let file = deploy_config("package-service.toml");
    let outcome = promotion(
        &["check-config", file.to_str().unwrap()],
        &secrets_with(&[("PROMOTION_SECRETS__PLATFORM_ADMIN", hash)]),
    );
    assert!(outcome.success, "{}", outcome.stderr);
    assert_refused(&promotion(&["hash-secret", ""], &[]), "the secret is empty");
}
