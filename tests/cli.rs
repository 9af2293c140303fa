//! The command-line client seen from a terminal: the real `promotion` binary's client
//! subcommands against `promotion dev`, each user with their own token directory.
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Output, Stdio};

use common::*;
use serde_json::{json, Value};

/// One user of the client: a private config directory holding their cached token.
struct User<'a> {
    dev: &'a DevServices,
    config: tempfile::TempDir,
}

impl<'a> User<'a> {
    /// A user who has not logged in.
    fn anonymous(dev: &'a DevServices) -> User<'a> {
        User { dev, config: tempfile::tempdir().unwrap() }
    }

    /// A demo client logged in with `promotion login`.
    fn login(dev: &'a DevServices, client: &str) -> User<'a> {
        let user = User::anonymous(dev);
        user.ok(&["login", "--client-id", client, "--client-secret", &format!("{client}-secret")]);
        user
    }

    fn run(&self, args: &[&str]) -> Output {
        promotion(args, self.config.path(), &self.dev.package_url(), &self.dev.installation_url())
    }

    /// Standard output of a command that must succeed.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "`promotion {}` failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The parsed `--output json` of a command that must succeed.
    #[track_caller]
    fn json(&self, args: &[&str]) -> Value {
        let args: Vec<&str> = args.iter().copied().chain(["--output", "json"]).collect();
        let text = self.ok(&args);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("`{}` printed invalid JSON ({e}):\n{text}", args.join(" ")))
    }

    /// The single id `--output id` prints.
    #[track_caller]
    fn id(&self, args: &[&str]) -> String {
        let args: Vec<&str> = args.iter().copied().chain(["--output", "id"]).collect();
        let text = self.ok(&args);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "expected one id from `{}`:\n{text}", args.join(" "));
        lines[0].to_string()
    }

    /// Standard error of a command that must fail with exit code 1.
    #[track_caller]
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(1), "`promotion {}` should fail: {out:?}", args.join(" "));
        String::from_utf8(out.stderr).unwrap()
    }
}

fn promotion(args: &[&str], config: &Path, package: &str, installation: &str) -> Output {
    promotion_with(args, config, package, installation, &[])
}

/// `promotion` with none of the tester's PROMOTION_* variables, standard input not a
/// terminal, and `envs` added.
fn promotion_with(args: &[&str], config: &Path, package: &str, installation: &str, envs: &[(&str, &str)]) -> Output {
    promotion_command()
        .args(args)
        .env("PROMOTION_CONFIG_DIR", config)
        .env("PROMOTION_PACKAGE_ADDR", package)
        .env("PROMOTION_INSTALLATION_ADDR", installation)
        .env_remove("NO_COLOR")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run promotion")
}

/// Every subcommand path of the client (`["package", "create"]`, ...), from its clap definition.
fn client_command_paths() -> Vec<Vec<String>> {
    use clap::Subcommand;
    fn walk(cmd: &clap::Command, prefix: &[String], out: &mut Vec<(Vec<String>, clap::Command)>) {
        for sub in cmd.get_subcommands() {
            let mut path = prefix.to_vec();
            path.push(sub.get_name().to_string());
            out.push((path.clone(), sub.clone()));
            walk(sub, &path, out);
        }
    }
    let root = promotion_cli::ClientCommand::augment_subcommands(clap::Command::new("promotion"));
    let mut found = Vec::new();
    walk(&root, &[], &mut found);
    for (path, cmd) in &found {
        assert!(cmd.get_about().is_some(), "`promotion {}` has no description", path.join(" "));
        for arg in cmd.get_arguments().filter(|a| !["help", "version"].contains(&a.get_id().as_str())) {
            assert!(
                arg.get_help().is_some() || arg.get_long_help().is_some(),
                "`promotion {}`: argument {} has no help text",
                path.join(" "),
                arg.get_id()
            );
        }
    }
    found.into_iter().map(|(path, _)| path).collect()
}

#[test]
fn every_subcommand_has_complete_help() {
    let paths = client_command_paths();
    for expected in [vec!["login"], vec!["package", "watch"], vec!["prerun"], vec!["accept"], vec!["audit"]] {
        assert!(paths.iter().any(|p| *p == expected), "missing subcommand {expected:?}");
    }
    let servers = ["package-service", "installation-service", "dev", "check-config", "hash-secret"];
    let config = tempfile::tempdir().unwrap();
    let all = paths.iter().map(|p| p.iter().map(String::as_str).collect::<Vec<_>>()).chain(servers.map(|s| vec![s]));
    for path in all.chain([vec![]]) {
        let args: Vec<&str> = path.iter().copied().chain(["--help"]).collect();
        let out = promotion(&args, config.path(), "http://127.0.0.1:1", "http://127.0.0.1:1");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "`promotion {}` exited {}", args.join(" "), out.status);
        assert!(help.contains("Usage: promotion"), "`promotion {}` printed:\n{help}", args.join(" "));
    }
}

#[test]
fn bad_arguments_are_refused_before_anything_is_sent() {
    let config = tempfile::tempdir().unwrap();
    // Nothing listens on port 1: reaching the network would fail differently.
    let run = |args: &[&str]| promotion(args, config.path(), "http://127.0.0.1:1", "http://127.0.0.1:1");
    let out = run(&["install", "PKG", "--env", "qa", "--override", "TMPL:abc=MERGE"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an action"), "{out:?}");
    let out = run(&["package", "create", "--name", "x", "--source", "dev", "--root", "TMPL"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("TYPE:ID[:NAME]"), "{out:?}");
}

#[tokio::test]
async fn login_caches_a_private_token_used_by_whoami_env_and_objects() {
    let dev = DevServices::start().await;
    let alice = User::login(&dev, "alice");

    let token_file = alice.config.path().join("profiles/default.json");
    let cached = std::fs::read_to_string(&token_file).unwrap();
    assert!(!cached.contains("alice-secret"), "the secret is never stored");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777, 0o600);
    }

    let whoami = alice.ok(&["whoami"]);
    assert!(whoami.contains("alice") && whoami.contains("acme") && whoami.contains("publisher"), "{whoami}");
    let identity = alice.json(&["whoami"]);
    assert_eq!(identity["subject"], "alice");
    assert_eq!(identity["bindings"].as_array().unwrap().len(), 2);

    let envs = alice.ok(&["env", "list"]);
    for env in ["dev", "qa", "prod", "SANDBOX", "PRODUCTION", "workfront"] {
        assert!(envs.contains(env), "{env} missing:\n{envs}");
    }
    let envs = alice.json(&["env", "list"]);
    let ids: Vec<&str> = envs["environments"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["dev", "prod", "qa"]);

    let templates = alice.ok(&["objects", "list", "--env", "dev", "--type", "TMPL"]);
    assert!(templates.contains("New Agency Onboarding") && templates.contains(ONBOARDING_TMPL), "{templates}");
    let listed = alice.json(&["objects", "list", "--env", "dev", "--type", "TMPL"]);
    let names: Vec<&str> = listed["objects"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["New Agency Onboarding", "New Agency Offboarding"]);
    assert_eq!(listed["nextPageToken"], "");
    let ids = alice.ok(&["objects", "list", "--env", "dev", "--type", "TMPL", "--output", "id"]);
    assert_eq!(ids.lines().collect::<Vec<_>>(), [ONBOARDING_TMPL, OFFBOARDING_TMPL]);

    let shown = alice.json(&["objects", "show", "--env", "dev", "TMPL", ONBOARDING_TMPL]);
    assert_eq!(shown["objCode"], "TMPL");
    assert!(!shown["references"].as_array().unwrap().is_empty());
    let catalog = alice.ok(&["env", "catalog", "dev"]);
    assert!(catalog.contains("TMPL") && catalog.contains("TTSK"), "{catalog}");

    // Two pages of one item each, followed with --all.
    let page = alice.json(&["objects", "list", "--env", "dev", "--type", "TMPL", "--page-size", "1"]);
    assert_eq!(page["objects"].as_array().unwrap().len(), 1);
    let token = page["nextPageToken"].as_str().unwrap();
    assert!(!token.is_empty());
    let rest =
        alice.json(&["objects", "list", "--env", "dev", "--type", "TMPL", "--page-size", "1", "--page-token", token]);
    assert_eq!(rest["objects"][0]["id"], OFFBOARDING_TMPL);
    let all = alice.json(&["objects", "list", "--env", "dev", "--type", "TMPL", "--page-size", "1", "--all"]);
    assert_eq!(all["objects"].as_array().unwrap().len(), 2);

    assert!(alice.ok(&["logout"]).contains("Logged out"));
    assert!(!std::fs::read_to_string(&token_file).unwrap().contains("access_token"), "the token is gone");
    assert!(alice.fails(&["whoami"]).contains("UNAUTHENTICATED NOT_LOGGED_IN"));
}

#[tokio::test]
async fn failures_exit_non_zero_with_the_code_and_reason() {
    let dev = DevServices::start().await;
    let gina = User::login(&dev, "gina");
    let err = gina.fails(&["objects", "list", "--env", "dev", "--type", "TMPL"]);
    assert!(err.starts_with("error: NOT_FOUND ENVIRONMENT_NOT_FOUND: "), "{err}");

    let err = gina.fails(&["objects", "list", "--env", "dev", "--type", "TMPL", "--output", "json"]);
    let err: Value = serde_json::from_str(&err).unwrap();
    assert_eq!(err["error"]["code"], "NOT_FOUND");
    assert_eq!(err["error"]["reason"], "ENVIRONMENT_NOT_FOUND");
    assert_eq!(err["error"]["metadata"]["environment"], "dev");

    let nobody = User::anonymous(&dev);
    let err = nobody.fails(&["login", "--client-id", "alice", "--client-secret", "wrong"]);
    assert!(err.starts_with("error: UNAUTHENTICATED "), "{err}");
    assert!(!nobody.config.path().join("profiles/default.json").exists(), "a failed login caches nothing");
    assert!(nobody.fails(&["env", "list"]).contains("UNAUTHENTICATED NOT_LOGGED_IN"));

    let viewer = User::login(&dev, "victor");
    let err = viewer.fails(&["objects", "delete", "--env", "dev", "TMPL", ONBOARDING_TMPL, "--yes"]);
    assert!(err.starts_with("error: PERMISSION_DENIED: the caller lacks environment.write"), "the code once: {err}");

    // A service that is not there.
    let out =
        promotion(&["env", "list", "--token", "x"], nobody.config.path(), &dev.package_url(), "http://127.0.0.1:1");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("UNAVAILABLE") && err.contains("installation service at http://127.0.0.1:1"), "{err}");
}

#[tokio::test]
async fn objects_are_put_from_yaml_and_json_files_and_deleted() {
    let dev = DevServices::start().await;
    let erin = User::login(&dev, "erin");
    let dir = tempfile::tempdir().unwrap();

    let yaml = dir.path().join("groups.yaml");
    std::fs::write(
        &yaml,
        "- objCode: GROUP\n  name: Agency Partners\n  fields:\n    description: External agencies\n    size: 3\n",
    )
    .unwrap();
    let stored = erin.json(&["objects", "put", "--env", "dev", yaml.to_str().unwrap()]);
    let id = stored["objects"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 32, "a generated id: {stored}");

    let shown = dir.path().join("group.json");
    let text = erin.ok(&["objects", "show", "--env", "dev", "GROUP", &id, "--output", "json"]);
    assert!(text.contains("\"size\": 3"), "integral numbers print as written: {text}");
    std::fs::write(&shown, text.replace("External agencies", "Agencies we work with")).unwrap();
    erin.ok(&["objects", "put", "--env", "dev", shown.to_str().unwrap()]);
    let after = erin.json(&["objects", "show", "--env", "dev", "GROUP", &id]);
    assert_eq!(after["fields"]["description"], "Agencies we work with");
    assert_eq!(after["name"], "Agency Partners");

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"[{"objcode": "GROUP"}]"#).unwrap();
    let err = erin.fails(&["objects", "put", "--env", "dev", bad.to_str().unwrap()]);
    assert!(err.contains("object #1"), "{err}");

    let err = erin.fails(&["objects", "delete", "--env", "dev", "GROUP", &id]);
    assert!(err.contains("standard input is not a terminal; add --yes"), "{err}");
    let deleted = erin.json(&["objects", "delete", "--env", "dev", "GROUP", &id, "--yes"]);
    assert_eq!(deleted["deleted"][0]["id"], id.as_str());
    let err = erin.fails(&["objects", "show", "--env", "dev", "GROUP", &id]);
    assert!(err.contains("NOT_FOUND"), "{err}");
}

#[tokio::test]
async fn packages_are_created_inspected_moved_through_statuses_and_deleted() {
    let dev = DevServices::start().await;
    let alice = User::login(&dev, "alice");
    let root = format!("TMPL:{ONBOARDING_TMPL}");

    let created =
        alice.json(&["package", "create", "--name", "Agency onboarding", "--source", "dev", "--root", &root, "--wait"]);
    assert_eq!(created["status"], "PACKAGE_STATUS_BUILDING");
    assert_eq!(created["version"], 1);
    assert!(created["entityCounts"]["TTSK"].as_i64().unwrap() > 0, "{created}");
    let id = created["id"].as_str().unwrap().to_string();

    let listed = alice.ok(&["package", "list"]);
    assert!(listed.contains(&id) && listed.contains("BUILDING"), "{listed}");
    let shown = alice.ok(&["package", "show", &id]);
    assert!(shown.contains("Agency onboarding") && shown.contains(&root), "{shown}");

    let definition = alice.json(&["package", "definition", &id]);
    assert_eq!(definition["header"]["version"], 1);
    let objects = definition["objects"].as_array().unwrap();
    assert!(objects.iter().any(|o| o["id"] == ONBOARDING_TMPL), "the root is in its package");
    assert_eq!(objects.len() as i64, definition["header"]["entityTotal"].as_i64().unwrap());
    let human = alice.ok(&["package", "definition", &id]);
    assert!(human.contains("New Agency Onboarding") && human.contains("TTSK"), "{human}");

    assert_eq!(alice.json(&["package", "preview", &id])["status"], "PACKAGE_STATUS_PREVIEW");
    assert_eq!(alice.json(&["package", "publish", &id])["status"], "PACKAGE_STATUS_PUBLIC");
    assert_eq!(alice.json(&["package", "retire", &id])["status"], "PACKAGE_STATUS_RETIRED");
    let err = alice.fails(&["package", "publish", &id]);
    assert!(err.starts_with("error: FAILED_PRECONDITION INVALID_STATUS_TRANSITION: "), "{err}");
    assert!(!alice.ok(&["package", "list"]).contains(&id), "retired packages are hidden");
    assert!(alice.ok(&["package", "list", "--retired"]).contains(&id));

    // Back to BUILDING, then a re-extraction makes version 2.
    alice.ok(&["package", "update", &id, "--status", "building", "--name", "Agency onboarding v2"]);
    let v2 = alice.json(&["package", "update", &id, "--reextract", "--wait"]);
    assert_eq!((v2["version"].as_i64(), v2["name"].as_str()), (Some(2), Some("Agency onboarding v2")));
    let watched = alice.ok(&["package", "watch", &id, "--until-extracted", "--output", "json"]);
    let first: Value = serde_json::from_str(watched.lines().next().unwrap()).unwrap();
    assert_eq!(first["version"], 2);

    let err = alice.fails(&["package", "delete", &id]);
    assert!(err.contains("--yes"), "no confirmation without a terminal: {err}");
    alice.ok(&["package", "delete", &id, "--yes"]);
    assert!(alice.fails(&["package", "show", &id]).contains("NOT_FOUND"));
}

#[tokio::test]
async fn a_pre_run_shows_the_plan_and_an_install_with_overrides_can_be_rolled_back() {
    let dev = DevServices::start().await;
    let alice = User::login(&dev, "alice");
    let bob = User::login(&dev, "bob");
    let package = alice.id(&[
        "package",
        "create",
        "--name",
        "Agency onboarding",
        "--source",
        "dev",
        "--root",
        &format!("TMPL:{ONBOARDING_TMPL}"),
        "--wait",
    ]);
    alice.ok(&["package", "preview", &package]);

    let plan = bob.ok(&["prerun", &package, "--env", "qa"]);
    for text in [
        "TMPL (1)",
        "GROUP (",
        "ROLE (",
        "ACTION",
        "COLLISION",
        "NAME_MATCH",
        "USEEXISTING",
        "CREATE",
        "changes of ROLE",
    ] {
        assert!(plan.contains(text), "{text:?} missing from the pre-run:\n{plan}");
    }
    assert!(!plan.contains('\x1b'), "no colour when standard output is not a terminal");
    let coloured = bob.ok(&["prerun", &package, "--env", "qa", "--color", "always"]);
    assert!(coloured.contains("\x1b[32mCREATE\x1b[0m"), "{coloured}");
    // qa keeps its Designer rate: that change is shown, dimmed and marked, never as applied.
    assert!(coloured.contains("\x1b[2m      - fields.billing_per_hour: 130"), "{coloured}");
    assert!(plan.contains("not applied: USEEXISTING") && plan.contains("the destination keeps its values"), "{plan}");
    assert!(plan.contains("Collisions:") && plan.contains("NAME_MATCH="), "{plan}");
    assert!(plan.contains("Not applied: 1 change(s) of 1 object(s)"), "{plan}");

    let pre_run = bob.json(&["prerun", &package, "--env", "qa"]);
    assert_eq!(pre_run["status"], "PRE_RUN_STATUS_READY");
    let groups = pre_run["translationMap"]["GROUP"]["entries"].as_object().unwrap();
    let (matched, entry) = groups.iter().find(|(_, e)| e["collision"] == "COLLISION_NAME_MATCH").expect("a name match");
    assert_eq!(entry["action"], "INSTALL_ACTION_USEEXISTING");
    let created = groups
        .iter()
        .find(|(_, e)| e["action"] == "INSTALL_ACTION_CREATE")
        .map(|(id, _)| id.clone())
        .expect("a create");
    assert_eq!(bob.json(&["prerun", "--get", pre_run["id"].as_str().unwrap()])["id"], pre_run["id"]);

    // Overwrite the matched group instead of reusing it, and rename a created one.
    let overwrite = format!("GROUP:{matched}=OVERWRITING:{}", entry["targetId"].as_str().unwrap());
    let rename = format!("GROUP:{created}=CREATEWITHALTNAME:Digital Production (from dev)");
    let installation = bob.json(&[
        "install",
        "--pre-run",
        pre_run["id"].as_str().unwrap(),
        "--override",
        &overwrite,
        "--override",
        &rename,
    ]);
    assert_eq!(installation["status"], "INSTALLATION_STATUS_INSTALLED");
    let entries = &installation["translationMap"]["GROUP"]["entries"];
    assert_eq!(entries[matched.as_str()]["action"], "INSTALL_ACTION_OVERWRITING");
    assert_eq!(entries[created.as_str()]["altName"], "Digital Production (from dev)");
    let id = installation["id"].as_str().unwrap().to_string();
    let renamed = bob.ok(&["objects", "list", "--env", "qa", "--type", "GROUP", "--name-prefix", "Digital"]);
    assert!(renamed.contains("Digital Production (from dev)"), "{renamed}");

    let listed = bob.ok(&["installations", "list", "--env", "qa"]);
    assert!(listed.contains(&id) && listed.contains("INSTALLED"), "{listed}");
    let shown = bob.ok(&["installations", "show", &id]);
    assert!(shown.contains("REGISTERED") || shown.contains("INSTALLED"), "{shown}");

    let rolled_back = bob.json(&["rollback", &id]);
    assert_eq!(rolled_back["status"], "INSTALLATION_STATUS_ROLLED_BACK");
    let after = bob.ok(&["objects", "list", "--env", "qa", "--type", "GROUP", "--name-prefix", "Digital"]);
    assert!(!after.contains("Digital Production (from dev)"), "{after}");
    let err = bob.fails(&["rollback", &id]);
    assert!(err.starts_with("error: FAILED_PRECONDITION ALREADY_ROLLED_BACK: "), "{err}");

    // Plain install (defaults), then a conflicting override is refused and writes nothing.
    let err = bob.fails(&[
        "install",
        &package,
        "--env",
        "qa",
        "--override",
        &format!("GROUP:{created}=USEEXISTING:{}", "0".repeat(32)),
    ]);
    assert!(err.contains("FAILED_PRECONDITION INVALID_TRANSLATION_MAP"), "{err}");
    assert_eq!(bob.json(&["install", &package, "--env", "qa"])["status"], "INSTALLATION_STATUS_INSTALLED");
}

#[tokio::test]
async fn promote_accept_update_and_roll_back_like_the_walkthrough() {
    let dev = DevServices::start().await;
    let alice = User::login(&dev, "alice");
    let bob = User::login(&dev, "bob");
    let erin = User::login(&dev, "erin");
    let root = format!("TMPL:{OFFBOARDING_TMPL}");

    let request = alice.json(&[
        "promote",
        "--to",
        "qa",
        "--name",
        "Agency offboarding",
        "--source",
        "dev",
        "--root",
        &root,
        "--comment",
        "first cut",
    ]);
    assert_eq!(request["status"], "PROMOTION_STATUS_TO_BE_VALIDATED");
    assert_eq!(request["isUpdate"], false);
    let request_id = request["id"].as_str().unwrap().to_string();
    let package = request["packageId"].as_str().unwrap().to_string();
    assert_eq!(alice.json(&["package", "show", &package])["status"], "PACKAGE_STATUS_PREVIEW", "qa is a sandbox");

    let tasks = bob.json(&["tasks"]);
    assert_eq!(tasks["promotionRequests"][0]["id"], request_id.as_str());
    assert!(bob.ok(&["tasks"]).contains("Agency offboarding"));
    let err = alice.fails(&["promote", "--to", "qa", "--package", &package]);
    assert!(err.contains("ALREADY_EXISTS PROMOTION_ALREADY_IN_PROGRESS"), "{err}");

    let accepted = bob.ok(&["accept", &request_id, "--comment", "ok"]);
    assert!(accepted.contains("ACCEPTED") && accepted.contains("INSTALLED"), "{accepted}");
    assert!(bob.json(&["tasks"])["promotionRequests"].as_array().unwrap().is_empty());

    // Edit the template in dev, then promote the same package again with today's content.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tmpl.json");
    let text = erin.ok(&["objects", "show", "--env", "dev", "TMPL", OFFBOARDING_TMPL, "--output", "json"]);
    std::fs::write(&file, text.replace("\"planned_duration_days\": 10", "\"planned_duration_days\": 12")).unwrap();
    erin.ok(&["objects", "put", "--env", "dev", file.to_str().unwrap()]);

    let update = alice.json(&["promote", "--to", "qa", "--name", "Agency offboarding", "--source", "dev", "--refresh"]);
    assert_eq!(update["packageId"], package.as_str(), "the package is reused");
    assert_eq!((update["packageVersion"].as_i64(), update["isUpdate"].as_bool()), (Some(2), Some(true)));
    let plan = bob.ok(&["prerun", "--request", update["id"].as_str().unwrap()]);
    assert!(plan.contains("version 2") && plan.contains("OVERWRITING"), "{plan}");
    assert!(plan.contains("- fields.planned_duration_days: 10\n      + fields.planned_duration_days: 12"), "{plan}");
    // Between the two versions, exactly the field erin changed.
    let diff = bob.json(&["package", "diff", &package, "--from", "1", "--to", "2"]);
    let objects = diff["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 1, "{diff}");
    assert_eq!(
        (objects[0]["kind"].as_str(), objects[0]["id"].as_str()),
        (Some("OBJECT_DIFF_KIND_CHANGED"), Some(OFFBOARDING_TMPL))
    );
    let changes: Vec<(&str, &Value, &Value)> = objects[0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["path"].as_str().unwrap(), &c["before"], &c["after"]))
        .collect();
    assert_eq!(changes, [("fields.planned_duration_days", &json!(10), &json!(12))]);
    let installation = bob.id(&["accept", update["id"].as_str().unwrap()]);
    assert_eq!(bob.json(&["installations", "show", &installation])["packageVersion"], 2);
    let in_qa = |who: &User| -> Value {
        let list = who.json(&["objects", "list", "--env", "qa", "--type", "TMPL", "--name-prefix", "New Agency Off"]);
        list["objects"][0]["fields"]["planned_duration_days"].clone()
    };
    assert_eq!(in_qa(&bob), 12);

    bob.ok(&["rollback", &installation]);
    assert_eq!(in_qa(&bob), 10, "the rollback restored the first promotion's content");

    // A request can be cancelled by its requester and rejected by an approver.
    let again = alice.id(&["promote", "--to", "qa", "--package", &package]);
    assert_eq!(alice.json(&["cancel", &again])["status"], "PROMOTION_STATUS_CANCELLED");
    let again = alice.id(&["promote", "--to", "qa", "--package", &package]);
    assert_eq!(bob.json(&["reject", &again, "--comment", "not now"])["status"], "PROMOTION_STATUS_REJECTED");
    assert_eq!(alice.json(&["requests", "show", &again])["decisionComment"], "not now");

    // Production takes PUBLIC packages only: promote publishes the package first.
    let to_prod = alice.json(&["promote", "--to", "prod", "--package", &package]);
    assert_eq!(to_prod["targetEnvironment"], "prod");
    assert_eq!(alice.json(&["package", "show", &package])["status"], "PACKAGE_STATUS_PUBLIC");
    let requests = alice.json(&["requests", "list", "--package", &package]);
    assert_eq!(requests["promotionRequests"].as_array().unwrap().len(), 5);

    let admin = User::login(&dev, "admin");
    let audit = admin.json(&["audit", "--resource-id", &package]);
    let actions: Vec<&str> =
        audit["events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"PACKAGE_CREATED"), "{actions:?}");
    let trail = admin.ok(&["audit", "--env", "qa", "--action", "PROMOTION_ACCEPTED"]);
    assert_eq!(trail.lines().filter(|l| l.contains("PROMOTION_ACCEPTED")).count(), 2, "{trail}");
}

#[test]
fn version_completion_and_help_read_as_people_expect() {
    let config = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| promotion(args, config.path(), "http://127.0.0.1:1", "http://127.0.0.1:1");
    let out = run(&["--version"]);
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && version.starts_with("promotion 0.1.0 (commit "), "{version}");
    for (shell, marker) in [("bash", "complete -F"), ("zsh", "#compdef promotion"), ("fish", "complete -c promotion")] {
        let out = run(&["completion", shell]);
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && script.contains(marker), "{shell}: {script:.200}");
        assert!(script.contains("use-profile") && script.contains("prerun"), "{shell} completes subcommands");
    }
    // Each subcommand's help leads with its own options; the shared ones come once, last.
    for path in client_command_paths().iter().filter(|p| p.last().is_some_and(|l| l != "help")) {
        let args: Vec<&str> = path.iter().map(String::as_str).chain(["--help"]).collect();
        let help = String::from_utf8(run(&args).stdout).unwrap();
        assert_eq!(help.matches("Connection and output:").count(), 1, "`promotion {}`:\n{help}", args.join(" "));
        let shared = help.find("Connection and output:").unwrap();
        let own = help.find("Options:").unwrap_or(0);
        assert!(own < shared, "`promotion {}` starts with the shared options:\n{help}", args.join(" "));
        let shared_lines = help[shared..].lines().skip(1).take_while(|l| l.is_empty() || l.starts_with(' ')).count();
        assert!(shared_lines < 45, "`promotion {}`: the shared part is long:\n{help}", args.join(" "));
    }
}

#[tokio::test]
async fn global_flags_go_before_or_after_and_yaml_sits_beside_json() {
    let dev = DevServices::start().await;
    let alice = User::login(&dev, "alice");
    let before: Value = serde_json::from_str(&alice.ok(&["-o", "json", "env", "list"])).unwrap();
    let after: Value = serde_json::from_str(&alice.ok(&["env", "list", "-o", "json"])).unwrap();
    assert_eq!(before["environments"], after["environments"]);
    assert_eq!(before["environments"].as_array().unwrap().len(), 3);
    // After wins over before.
    let ids = alice.ok(&["--output", "json", "objects", "list", "--env", "dev", "--type", "tmpl", "--output", "id"]);
    assert_eq!(ids.lines().collect::<Vec<_>>(), [ONBOARDING_TMPL, OFFBOARDING_TMPL], "type codes in any case");
    let yaml: Value = serde_yaml::from_str(&alice.ok(&["env", "show", "dev", "-o", "yaml"])).unwrap();
    assert_eq!((yaml["id"].as_str(), yaml["kind"].as_str()), (Some("dev"), Some("ENVIRONMENT_KIND_SANDBOX")));
    assert!(yaml["objectCounts"]["TMPL"].as_i64().unwrap() >= 2, "{yaml:?}");
    let err = alice.fails(&["objects", "show", "--env", "dev", "TMPL", "0".repeat(32).as_str(), "-o", "yaml"]);
    let err: Value = serde_yaml::from_str(&err).unwrap();
    assert_eq!(err["error"]["reason"].as_str(), Some("OBJECT_NOT_FOUND"));
}

#[tokio::test]
async fn profiles_keep_their_own_servers_and_tokens() {
    let dev = DevServices::start().await;
    let user = User::anonymous(&dev);
    user.ok(&["login", "--client-id", "alice", "--client-secret", "alice-secret"]);
    user.ok(&["--profile", "ops", "login", "--client-id", "bob", "--client-secret", "bob-secret"]);
    // One login never overwrites another.
    assert_eq!(user.json(&["whoami"])["subject"], "alice");
    assert_eq!(user.json(&["whoami", "--profile", "ops"])["subject"], "bob");
    assert!(user.ok(&["config", "use-profile", "ops"]).contains("Using profile ops"));
    assert_eq!(user.json(&["whoami"])["subject"], "bob");
    let env_profile = promotion_with(
        &["whoami", "-o", "json"],
        user.config.path(),
        &dev.package_url(),
        &dev.installation_url(),
        &[("PROMOTION_PROFILE", "default")],
    );
    assert!(String::from_utf8_lossy(&env_profile.stdout).contains("\"alice\""), "{env_profile:?}");
    let listed = user.json(&["config", "list"]);
    assert_eq!(listed["currentProfile"], "ops");
    let names: Vec<&str> = listed["profiles"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["default", "ops"]);
    let table = user.ok(&["config", "list"]);
    assert!(table.contains("alice (acme)") && table.contains("bob (acme)"), "{table}");
    let shown = user.ok(&["config", "show", "default"]);
    assert!(shown.contains("alice") && shown.contains(&dev.package_url()), "{shown}");
    assert!(!user.ok(&["config", "show", "-o", "json"]).contains("access_token"), "never the token");
    user.ok(&["logout"]);
    assert!(user.fails(&["whoami"]).contains("not logged in (profile ops)"));
    assert_eq!(user.json(&["whoami", "--profile", "default"])["subject"], "alice", "the other stays logged in");
    assert!(user.fails(&["--profile", "../x", "whoami"]).contains("is not a profile name"));
}

#[tokio::test]
async fn names_with_control_characters_are_printed_escaped() {
    let dev = DevServices::start().await;
    let erin = User::login(&dev, "erin");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("evil.json");
    let evil = "Evil\u{1b}[2J\u{1b}]0;owned\u{7} \u{202e}dlrow";
    // The services refuse such a name (every path into a store does) ...
    std::fs::write(&file, serde_json::json!({"objCode": "GROUP", "name": evil}).to_string()).unwrap();
    let refused = erin.run(&["objects", "put", "--env", "dev", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(!refused.status.success() && text.contains("INVALID_NAME"), "{text}");
    // ... and field values holding escapes are printed escaped.
    let fields = serde_json::json!({"objCode": "GROUP", "name": "Evil fields", "fields": {"description": evil}});
    std::fs::write(&file, fields.to_string()).unwrap();
    let id = erin.id(&["objects", "put", "--env", "dev", file.to_str().unwrap()]);
    for args in [
        vec!["objects", "show", "--env", "dev", "GROUP", id.as_str()],
        vec!["objects", "show", "--env", "dev", "GROUP", id.as_str(), "--color", "always"],
    ] {
        let out = erin.run(&args);
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        let raw = text.replace("\x1b[1m", "").replace("\x1b[2m", "").replace("\x1b[0m", "");
        assert!(!raw.contains('\x1b') && !raw.contains('\u{7}') && !raw.contains('\u{202e}'), "{text:?}");
    }
    // Scripts get the value as it is, JSON-escaped.
    assert_eq!(erin.json(&["objects", "show", "--env", "dev", "GROUP", &id])["fields"]["description"], evil);
}

#[tokio::test]
async fn objects_patch_edit_and_put_keep_what_they_do_not_name() {
    let dev = DevServices::start().await;
    let erin = User::login(&dev, "erin");
    let show = |u: &User| u.json(&["objects", "show", "--env", "dev", "TMPL", OFFBOARDING_TMPL]);
    let before = show(&erin);
    erin.ok(&[
        "objects",
        "patch",
        "--env",
        "dev",
        "tmpl",
        OFFBOARDING_TMPL,
        "--set",
        "fields.planned_duration_days=12",
    ]);
    let after = show(&erin);
    assert_eq!(after["fields"]["planned_duration_days"], 12);
    let mut expected = before.clone();
    expected["fields"]["planned_duration_days"] = 12.into();
    assert_eq!(after["fields"], expected["fields"], "every other field is kept");
    assert_eq!(after["references"], before["references"], "every reference is kept");
    assert_eq!(after["name"], before["name"]);

    // A file saved before that patch is stale: refused, and nothing changes.
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("stale.json");
    let mut old = before.clone();
    old["fields"]["priority"] = 9.into();
    std::fs::write(&stale, old.to_string()).unwrap();
    let err = erin.fails(&["objects", "put", "--env", "dev", stale.to_str().unwrap()]);
    assert!(err.contains("ABORTED REVISION_MISMATCH") && err.contains("nothing was written"), "{err}");
    assert_eq!(show(&erin), after, "nothing changed");

    // A put that drops fields and references asks; without a terminal it needs --yes.
    let partial = dir.path().join("partial.yaml");
    std::fs::write(
        &partial,
        format!("objCode: TMPL\nid: {OFFBOARDING_TMPL}\nname: New Agency Offboarding\nfields: {{priority: 1}}\n"),
    )
    .unwrap();
    let err = erin.fails(&["objects", "put", "--env", "dev", partial.to_str().unwrap()]);
    assert!(err.contains("would remove") && err.contains("- fields.planned_duration_days: 12"), "{err}");
    assert!(err.contains("- references.") && err.contains("add --yes"), "{err}");
    assert_eq!(show(&erin), after, "nothing changed");

    // A merge patch file; null removes.
    let patch = dir.path().join("patch.yaml");
    std::fs::write(&patch, "name: Offboarding\nfields:\n  currency: null\n  region: EMEA\n").unwrap();
    erin.ok(&["objects", "patch", "--env", "dev", "TMPL", OFFBOARDING_TMPL, patch.to_str().unwrap()]);
    let patched = show(&erin);
    assert_eq!((patched["name"].as_str(), patched["fields"]["region"].as_str()), (Some("Offboarding"), Some("EMEA")));
    assert!(patched["fields"].get("currency").is_none() && patched["references"] == before["references"]);

    // edit runs $EDITOR on the object as YAML.
    let edited = promotion_with(
        &["objects", "edit", "--env", "dev", "TMPL", OFFBOARDING_TMPL],
        erin.config.path(),
        &dev.package_url(),
        &dev.installation_url(),
        &[("EDITOR", "sed -i -e s/EMEA/APAC/"), ("VISUAL", "")],
    );
    assert!(edited.status.success(), "{edited:?}");
    assert!(String::from_utf8_lossy(&edited.stderr).contains("+ fields.region: \"APAC\""), "{edited:?}");
    assert_eq!(show(&erin)["fields"]["region"], "APAC");
    let unchanged = promotion_with(
        &["objects", "edit", "--env", "dev", "TMPL", OFFBOARDING_TMPL],
        erin.config.path(),
        &dev.package_url(),
        &dev.installation_url(),
        &[("EDITOR", "true"), ("VISUAL", "")],
    );
    assert!(String::from_utf8_lossy(&unchanged.stderr).contains("No changes"), "{unchanged:?}");

    // Errors speak CLI: the service's "set cascade" is the --cascade flag.
    let err = erin.fails(&["objects", "delete", "--env", "dev", "TMPL", OFFBOARDING_TMPL, "--yes"]);
    assert!(err.contains("add --cascade") || err.contains("or add --cascade"), "{err}");
}

#[tokio::test]
async fn promote_to_production_publishes_step_by_step_and_leaves_nothing_on_a_refusal() {
    let dev = DevServices::start().await;
    let alice = User::login(&dev, "alice");
    let bob = User::login(&dev, "bob");
    let request = alice.json(&[
        "promote",
        "--to",
        "prod",
        "--name",
        "Onboarding for prod",
        "--source",
        "dev",
        "--root",
        &format!("tmpl:{ONBOARDING_TMPL}"),
    ]);
    assert_eq!(request["targetEnvironment"], "prod");
    let package = request["packageId"].as_str().unwrap();
    assert_eq!(alice.json(&["package", "show", package])["status"], "PACKAGE_STATUS_PUBLIC");

    let packages = |u: &User| u.json(&["package", "list"])["packages"].as_array().unwrap().len();
    let count = packages(&alice);
    let err = alice.fails(&[
        "promote",
        "--to",
        "prod",
        "--name",
        "No such root",
        "--source",
        "dev",
        "--root",
        &format!("TMPL:{}", "0".repeat(32)),
    ]);
    assert!(err.contains("does not exist in dev") && err.contains("nothing was created"), "{err}");
    let err = bob.fails(&[
        "promote",
        "--to",
        "prod",
        "--name",
        "Bob may not",
        "--source",
        "dev",
        "--root",
        &format!("TMPL:{ONBOARDING_TMPL}"),
    ]);
    assert!(err.contains("PERMISSION_DENIED") && err.contains("package.write"), "{err}");
    let err = alice.fails(&["promote", "--to", "prod", "--package", package]);
    assert!(err.contains("PROMOTION_ALREADY_IN_PROGRESS"), "{err}");
    assert_eq!(packages(&alice), count, "no package was left behind");

    // Accepting into production and forcing a rollback ask first. The demo's prod needs
    // two approvers: bob's accept approves, the admin's installs.
    let id = request["id"].as_str().unwrap();
    let err = bob.fails(&["accept", id]);
    assert!(err.contains("PRODUCTION") && err.contains("add --yes"), "{err}");
    let err = bob.fails(&["install", package, "--env", "prod"]);
    assert!(err.contains("PRODUCTION environment prod") && err.contains("add --yes"), "{err}");
    let approved = bob.json(&["accept", id, "--yes"]);
    assert_eq!(approved["status"], "PROMOTION_STATUS_TO_BE_VALIDATED");
    assert_eq!(approved["approvals"][0]["approver"], "bob");
    let err = bob.fails(&["accept", id, "--yes"]);
    assert!(err.contains("ALREADY_APPROVED"), "{err}");
    let admin = User::login(&dev, "admin");
    let installation = admin.id(&["accept", id, "--yes"]);
    let err = bob.fails(&["rollback", &installation, "--force"]);
    assert!(err.contains("add --yes"), "{err}");
    assert_eq!(bob.json(&["rollback", &installation, "--force", "--yes"])["status"], "INSTALLATION_STATUS_ROLLED_BACK");
}

#[tokio::test]
async fn env_policy_shows_and_changes_what_a_promotion_needs() {
    let dev = DevServices::start().await;
    let victor = User::login(&dev, "victor");
    let shown = victor.ok(&["env", "policy", "get", "prod"]);
    assert!(shown.contains("Required approvals") && shown.contains('2') && shown.contains("not allowed"), "{shown}");
    let err = victor.fails(&["env", "policy", "set", "qa", "--required-approvals", "2"]);
    assert!(err.contains("PERMISSION_DENIED") && err.contains("policy.write"), "{err}");
    let admin = User::login(&dev, "admin");
    let set = admin.json(&["env", "policy", "set", "qa", "--required-approvals", "2", "--allow-self-approval", "true"]);
    assert_eq!((set["requiredApprovals"].clone(), set["allowSelfApproval"].clone()), (2.into(), true.into()));
    assert_eq!(set["updatedBy"], "admin");
    let read = victor.json(&["env", "policy", "get", "qa"]);
    assert_eq!(read, set, "what was set is what everyone reads");
    let out = admin.run(&["env", "policy", "set", "qa"]);
    assert_eq!(out.status.code(), Some(2), "nothing to change is a usage error: {out:?}");

    // A freeze: installs wait, unless an admin overrides it with a reason.
    let today = chrono::Utc::now().date_naive();
    let freeze = format!("{},{},release freeze", today - chrono::Duration::days(1), today + chrono::Duration::days(2));
    admin.ok(&["env", "policy", "set", "qa", "--freeze", &freeze, "--window", "mon-sun 00:00-24:00 UTC"]);
    let shown = victor.ok(&["env", "policy", "get", "qa"]);
    assert!(shown.contains("release freeze") && shown.contains("MONDAY"), "{shown}");
    let alice = User::login(&dev, "alice");
    let package = alice.id(&[
        "package",
        "create",
        "--name",
        "Frozen",
        "--source",
        "dev",
        "--root",
        &format!("TMPL:{ONBOARDING_TMPL}"),
        "--wait",
    ]);
    alice.ok(&["package", "preview", &package]);
    let bob = User::login(&dev, "bob");
    let err = bob.fails(&["install", &package, "--env", "qa"]);
    assert!(err.contains("OUTSIDE_PROMOTION_WINDOW") && err.contains("release freeze"), "{err}");
    let installed = admin.json(&["install", &package, "--env", "qa", "--override-window", "hotfix"]);
    assert_eq!(installed["status"], "INSTALLATION_STATUS_INSTALLED");
    admin.ok(&["env", "policy", "set", "qa", "--no-freezes"]);
    bob.ok(&["rollback", installed["id"].as_str().unwrap()]);
}

#[tokio::test]
async fn prerun_detailed_exitcode_says_whether_the_plan_changes_anything() {
    let dev = DevServices::start().await;
    let alice = User::login(&dev, "alice");
    let bob = User::login(&dev, "bob");
    let package = alice.id(&[
        "package",
        "create",
        "--name",
        "Exit codes",
        "--source",
        "dev",
        "--root",
        &format!("TMPL:{ONBOARDING_TMPL}"),
        "--wait",
    ]);
    alice.ok(&["package", "preview", &package]);
    let code = |u: &User, args: &[&str]| u.run(args).status.code();
    assert_eq!(code(&bob, &["prerun", &package, "--env", "qa", "--detailed-exitcode"]), Some(2), "it creates objects");
    bob.ok(&["install", &package, "--env", "qa"]);
    assert_eq!(code(&bob, &["prerun", &package, "--env", "qa", "--detailed-exitcode"]), Some(0), "all in place");
    assert_eq!(code(&bob, &["prerun", &package, "--env", "prod", "--detailed-exitcode"]), Some(1), "not installable");
    assert_eq!(code(&bob, &["prerun", &package, "--env", "qa"]), Some(0), "without the flag: 0");
}

#[tokio::test]
async fn drift_shows_a_template_edited_after_a_promotion_until_a_rollback_or_an_overwrite() {
    let dev = DevServices::start().await;
    let alice = User::login(&dev, "alice");
    let bob = User::login(&dev, "bob");
    let erin = User::login(&dev, "erin");
    let drift = |args: &[&str]| {
        let out = bob.run(&[&["drift", "qa"], args].concat());
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    };
    assert_eq!(drift(&[]).0, Some(0), "nothing installed into qa yet");
    let root = format!("TMPL:{OFFBOARDING_TMPL}");
    let request = alice.json(&["promote", "--to", "qa", "--name", "Offboarding", "--source", "dev", "--root", &root]);
    let package = request["packageId"].as_str().unwrap().to_string();
    let installation = bob.id(&["accept", request["id"].as_str().unwrap()]);
    let (code, text) = drift(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.starts_with("No drift in qa: the "), "{text}");

    // erin edits the promoted template in qa.
    let target_of = |installation: &str| -> String {
        let shown = bob.json(&["installations", "show", installation]);
        shown["translationMap"]["TMPL"]["entries"][OFFBOARDING_TMPL]["targetId"].as_str().unwrap().to_string()
    };
    let template = target_of(&installation);
    edit_in_qa(&erin, "TMPL", &template, "planned_duration_days", json!(14));
    let (code, text) = drift(&[]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("LOCALLY_MODIFIED") && text.contains(&format!("dev:{OFFBOARDING_TMPL}")), "{text}");
    assert!(text.contains("- fields.planned_duration_days: 10\n      + fields.planned_duration_days: 14\n"), "{text}");
    let (code, json_text) = drift(&["--output", "json"]);
    assert_eq!(code, Some(2));
    let report: Value = serde_json::from_str(&json_text).unwrap();
    let drifted: Vec<&Value> =
        report["entries"].as_array().unwrap().iter().filter(|e| e["state"] != "DRIFT_STATE_UNCHANGED").collect();
    assert_eq!(drifted.len(), 1, "only the template: {json_text}");
    assert_eq!(
        (drifted[0]["id"].as_str(), drifted[0]["state"].as_str()),
        (Some(template.as_str()), Some("DRIFT_STATE_LOCALLY_MODIFIED"))
    );
    let paths: Vec<&str> =
        drifted[0]["changes"].as_array().unwrap().iter().map(|c| c["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["fields.planned_duration_days"]);

    // The rollback (forced: the template changed since) takes back what the promotion wrote.
    bob.ok(&["rollback", &installation, "--force", "--yes"]);
    assert_eq!(drift(&[]).0, Some(0));

    // A fresh installation, edited again, then installed over the edit.
    let fresh = bob.id(&["install", &package, "--env", "qa"]);
    assert_eq!(drift(&[]).0, Some(0));
    edit_in_qa(&erin, "TMPL", &target_of(&fresh), "planned_duration_days", json!(16));
    assert_eq!(drift(&[]).0, Some(2));
    bob.ok(&["install", &package, "--env", "qa", "--override", &format!("TMPL:{OFFBOARDING_TMPL}=OVERWRITING")]);
    let (code, text) = drift(&[]);
    assert_eq!(code, Some(0), "{text}");
}

/// (type, source id) -> target id of every CREATE in a pre-run's or installation's JSON.
fn creates(plan: &Value) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    for (code, t) in plan["translationMap"].as_object().unwrap() {
        for (source, e) in t["entries"].as_object().unwrap() {
            if e["action"] == "INSTALL_ACTION_CREATE" {
                out.insert((code.clone(), source.clone()), e["targetId"].as_str().unwrap().to_string());
            }
        }
    }
    out
}

/// erin sets a field of an object in qa through `objects put`.
fn edit_in_qa(erin: &User, obj_code: &str, id: &str, field: &str, value: Value) {
    let mut object = erin.json(&["objects", "show", "--env", "qa", obj_code, id]);
    object["fields"][field] = value;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("object.json");
    std::fs::write(&file, object.to_string()).unwrap();
    erin.ok(&["objects", "put", "--env", "qa", file.to_str().unwrap()]);
}

#[tokio::test]
async fn accept_installs_the_plan_prerun_request_showed_and_refuses_a_stale_one_unless_replanned() {
    let dev = DevServices::start().await;
    let alice = User::login(&dev, "alice");
    let bob = User::login(&dev, "bob");
    let erin = User::login(&dev, "erin");
    let root = format!("TMPL:{OFFBOARDING_TMPL}");
    let promote = ["promote", "--to", "qa", "--name", "Agency offboarding", "--source", "dev", "--root", &root];

    let request = alice.json(&promote);
    let id = request["id"].as_str().unwrap();
    let shown = bob.json(&["prerun", "--request", id]);
    assert_eq!(shown["id"], request["preRunId"], "prerun --request shows the plan the request carries");
    let planned = creates(&shown);
    assert!(planned.contains_key(&("TMPL".to_string(), OFFBOARDING_TMPL.to_string())), "{planned:?}");
    let first = bob.id(&["accept", id]);
    let installed = bob.json(&["installations", "show", &first]);
    assert_eq!(creates(&installed), planned, "accept installed the very target ids the pre-run showed");
    assert_eq!(installed["preRunId"], request["preRunId"]);
    let template = planned[&("TMPL".to_string(), OFFBOARDING_TMPL.to_string())].clone();
    assert_eq!(erin.json(&["objects", "show", "--env", "qa", "TMPL", &template])["id"], template.as_str());

    // The next request's plan goes stale when the template is edited in qa.
    let update = alice.json(&[&promote[..], &["--refresh"]].concat());
    let update_id = update["id"].as_str().unwrap();
    edit_in_qa(&erin, "TMPL", &template, "planned_duration_days", json!(30));
    let installations =
        || bob.json(&["installations", "list", "--env", "qa"])["installations"].as_array().unwrap().len();
    let count = installations();
    let err = bob.fails(&["accept", update_id]);
    assert!(err.contains("ABORTED PRE_RUN_STALE") && err.contains("--replan"), "{err}");
    assert_eq!(installations(), count, "nothing was installed");
    let in_qa = erin.json(&["objects", "show", "--env", "qa", "TMPL", &template]);
    assert_eq!(in_qa["fields"]["planned_duration_days"], 30, "nothing was written");
    assert!(bob.json(&["requests", "show", update_id])["lastError"].as_str().unwrap().contains("--replan"));

    // An approver may attach a fresh plan to review, or re-plan on accept.
    let fresh = bob.json(&["prerun", "--request", update_id, "--attach"]);
    assert_ne!(fresh["id"], update["preRunId"]);
    assert_eq!(bob.json(&["requests", "show", update_id])["preRunId"], fresh["id"]);
    edit_in_qa(&erin, "TMPL", &template, "planned_duration_days", json!(31));
    assert!(bob.fails(&["accept", update_id]).contains("PRE_RUN_STALE"), "the attached plan went stale too");
    let replanned = bob.json(&["accept", update_id, "--replan"]);
    assert_eq!(replanned["status"], "PROMOTION_STATUS_ACCEPTED");
    let second = replanned["installationId"].as_str().unwrap();
    assert_eq!(bob.json(&["installations", "show", second])["status"], "INSTALLATION_STATUS_INSTALLED");

    // Rolled back: the installation's entries and the request say so.
    bob.ok(&["rollback", second]);
    let rolled = bob.json(&["installations", "show", second]);
    for t in rolled["translationMap"].as_object().unwrap().values() {
        for e in t["entries"].as_object().unwrap().values() {
            assert_eq!(e["installationStatus"], "ENTRY_INSTALLATION_STATUS_ROLLED_BACK", "{e}");
        }
    }
    assert_eq!(bob.json(&["requests", "show", update_id])["installationStatus"], "INSTALLATION_STATUS_ROLLED_BACK");
    assert!(bob.ok(&["requests", "show", update_id]).contains("(ROLLED_BACK)"));
    assert!(bob.ok(&["installations", "show", second]).contains("ROLLED_BACK"));
}
