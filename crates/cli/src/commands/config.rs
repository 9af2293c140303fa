//! `config list/show/use-profile`: the named profiles, each with its own servers, token
//! and cache of where environments are hosted.
use serde_json::json;

use crate::connect::{normalize_address, Session, DEFAULT_INSTALLATION_ADDR, DEFAULT_PACKAGE_ADDR};
use crate::error::CliError;
use crate::output::{cell, details, emit_json, note, or_dash, Out, Style, Table};
use crate::profiles::{check_name, Profile};
use crate::GlobalArgs;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    promotion --profile staging login --client-id bob --package-server http://staging:50051 \\\n    \
    --installation-server http://staging:50052\n  \
    promotion config use-profile staging      # later commands use staging's servers and token\n  \
    promotion config list\n  \
    PROMOTION_PROFILE=default promotion whoami")]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum ConfigCommand {
    /// List the profiles: servers, who is logged in, which one is current.
    List,
    /// Show one profile (default: the one in use): servers, token, known environments.
    Show {
        /// Profile name.
        name: Option<String>,
    },
    /// Make NAME the profile later commands use (created empty if new; log in to fill it).
    UseProfile {
        /// Profile name: letters, digits, '-', '_' or '.'.
        name: String,
    },
}

pub fn run(session: &Session, out: &Out, command: ConfigCommand) -> Result<(), CliError> {
    let store = session.store()?;
    match command {
        ConfigCommand::List => {
            let current = store.current()?;
            let mut names = store.names()?;
            if !names.contains(&current) {
                names.push(current.clone());
                names.sort();
            }
            let mut rows = Vec::new();
            for name in &names {
                rows.push((name.clone(), store.load(name)?.unwrap_or_default()));
            }
            let doc = json!({
                "currentProfile": current,
                "profiles": rows.iter().map(|(n, p)| profile_json(n, p)).collect::<Vec<_>>(),
            });
            emit_json(out, &doc, &names, || {
                let mut table =
                    Table::new(&["", "PROFILE", "PACKAGE SERVER", "INSTALLATION SERVER", "LOGGED IN AS", "EXPIRES"]);
                for (name, p) in &rows {
                    let mark = if *name == current { cell("*", Style::Green) } else { "".into() };
                    let (who, expires) = match &p.token {
                        Some(t) => (format!("{} ({})", t.subject, t.organization), expiry(t.expire_time)),
                        None => ("-".into(), "-".into()),
                    };
                    table.row(vec![
                        mark,
                        cell(name.as_str(), Style::Bold),
                        server(&p.package_server, DEFAULT_PACKAGE_ADDR).into(),
                        server(&p.installation_server, DEFAULT_INSTALLATION_ADDR).into(),
                        who.into(),
                        expires.into(),
                    ]);
                }
                table.render(out, "")
            })
        }
        ConfigCommand::Show { name } => {
            let name = name.unwrap_or_else(|| session.profile_name.clone());
            check_name(&name)?;
            let p = store.load(&name)?.unwrap_or_default();
            emit_json(out, &profile_json(&name, &p), std::slice::from_ref(&name), || {
                let (who, expires) = match &p.token {
                    Some(t) => (format!("{} (organization {})", t.subject, t.organization), expiry(t.expire_time)),
                    None => ("not logged in".into(), "-".into()),
                };
                let mut text = details(
                    out,
                    &[
                        ("Profile", name.clone().into()),
                        ("File", store.path_of(&name).display().to_string().into()),
                        ("Package service", server(&p.package_server, DEFAULT_PACKAGE_ADDR).into()),
                        ("Installation service", server(&p.installation_server, DEFAULT_INSTALLATION_ADDR).into()),
                        ("Logged in as", who.into()),
                        ("Token expires", expires.into()),
                    ],
                );
                if !p.environments.is_empty() {
                    let mut table = Table::new(&["ENVIRONMENT", "HOSTED BY"]);
                    for (env, address) in &p.environments {
                        table.row(vec![env.as_str().into(), address.as_str().into()]);
                    }
                    text.push('\n');
                    text.push_str(&table.render(out, ""));
                }
                text
            })
        }
        ConfigCommand::UseProfile { name } => {
            check_name(&name)?;
            let existed = store.load(&name)?.is_some();
            if !existed {
                store.save(&name, &Profile::default())?;
            }
            store.set_current(&name)?;
            if !existed {
                note(out, format!("Profile {name} is new: log in with `promotion login` to use it"));
            }
            emit_json(out, &json!({ "currentProfile": name }), std::slice::from_ref(&name), || {
                format!("Using profile {name}\n")
            })
        }
    }
}

fn server(saved: &Option<String>, default: &str) -> String {
    saved.as_deref().map(normalize_address).unwrap_or_else(|| format!("{default} (default)"))
}

fn expiry(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    match t {
        Some(t) if t <= chrono::Utc::now() => format!("{} (expired)", t.format("%Y-%m-%d %H:%M:%SZ")),
        Some(t) => t.format("%Y-%m-%d %H:%M:%SZ").to_string(),
        None => "-".into(),
    }
}

/// A profile for scripts: never the token itself.
fn profile_json(name: &str, p: &Profile) -> serde_json::Value {
    json!({
        "name": name,
        "packageServer": p.package_server,
        "installationServer": p.installation_server,
        "subject": p.token.as_ref().map(|t| t.subject.clone()),
        "organization": p.token.as_ref().map(|t| t.organization.clone()),
        "expireTime": p.token.as_ref().and_then(|t| t.expire_time).map(|t| t.to_rfc3339()),
        "environments": p.environments,
        "loggedIn": or_dash(&p.token.as_ref().map(|t| t.subject.clone()).unwrap_or_default()) != "-",
    })
}
