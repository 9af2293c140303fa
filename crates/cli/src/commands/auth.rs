//! `login`, `logout` and `whoami`: tokens from AuthService, cached in the profile in use.
use std::io::{BufRead, IsTerminal, Write};
use std::process::{Command, Stdio};

use crate::connect::{CachedToken, Session};
use crate::error::CliError;
use crate::output::{details, emit, note, or_dash, safe, time, to_json, Format, Out, Table};
use crate::GlobalArgs;
use promotion_api::convert::from_timestamp;
use promotion_api::v1 as pb;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    promotion login --client-id alice --client-secret alice-secret\n  \
    echo \"$SECRET\" | promotion login --client-id ci-bot\n  \
    promotion login --client-id bob --package-server http://packages.internal:50051 \\\n    \
    --installation-server http://install-a.internal:50052\n  \
    promotion --profile staging login --client-id bob     # another profile, another token")]
pub struct LoginArgs {
    /// Client id; prompted for when neither given nor set.
    #[arg(long, env = "PROMOTION_CLIENT_ID")]
    pub client_id: Option<String>,
    /// Client secret; prompted for (without echo) or read from standard input when neither
    /// given nor set. Never stored.
    #[arg(long, env = "PROMOTION_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
    /// Requested token lifetime in seconds (0: the service's default; the service caps it).
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    pub ttl: i64,
    /// Also print the token itself on standard output (for grpcurl or other tools).
    #[arg(long)]
    pub print_token: bool,
    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(clap::Args, Debug)]
pub struct LogoutArgs {
    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(clap::Args, Debug)]
pub struct WhoamiArgs {
    #[command(flatten)]
    pub global: GlobalArgs,
}

pub async fn login(session: &Session, out: &Out, args: LoginArgs) -> Result<(), CliError> {
    let client_id = match args.client_id.filter(|s| !s.is_empty()) {
        Some(id) => id,
        None => prompt("client id", false)?,
    };
    let client_secret = match args.client_secret.filter(|s| !s.is_empty()) {
        Some(secret) => secret,
        None => prompt(&format!("secret of {client_id}"), true)?,
    };
    let request = pb::IssueTokenRequest { client_id, client_secret, ttl_seconds: args.ttl };
    let mut response = session.anonymous_auth().await?.issue_token(session.request(request)).await?.into_inner();
    let identity = response.identity.clone().unwrap_or_default();
    let cached = CachedToken {
        access_token: response.access_token.clone(),
        expire_time: response.expire_time.as_ref().and_then(from_timestamp),
        subject: identity.subject.clone(),
        organization: identity.organization.clone(),
    };
    // The servers used to log in are the profile's from now on; only this profile changes.
    let (package, installation) = (session.package_addr.clone(), session.installation_addr.clone());
    let path = session.update_profile(|p| {
        if p.installation_server.as_deref() != Some(installation.as_str()) {
            p.environments.clear();
        }
        p.package_server = Some(package);
        p.installation_server = Some(installation);
        p.token = Some(cached);
    })?;
    if !args.print_token {
        response.access_token.clear();
    }
    match out.format {
        Format::Json | Format::Yaml => {
            let mut json = to_json(&response)?;
            json["tokenFile"] = path.display().to_string().into();
            json["profile"] = session.profile_name.clone().into();
            out.print_json(&json);
        }
        Format::Id => println!("{}", safe(&identity.subject)),
        Format::Human => {
            if args.print_token {
                println!("{}", response.access_token);
            }
            note(
                out,
                format!(
                    "Logged in as {} (organization {}) until {}.\nToken cached in profile {} ({})",
                    identity.subject,
                    identity.organization,
                    time(&response.expire_time),
                    session.profile_name,
                    path.display()
                ),
            );
        }
    }
    Ok(())
}

pub fn logout(session: &Session, out: &Out) -> Result<(), CliError> {
    let removed = session.profile().token.is_some();
    let path = if removed { Some(session.update_profile(|p| p.token = None)?) } else { None };
    match out.format {
        Format::Json | Format::Yaml => {
            out.print_json(&serde_json::json!({ "removed": removed, "profile": session.profile_name }))
        }
        Format::Id => {}
        Format::Human => match path {
            Some(path) => {
                println!("Logged out of profile {}: removed its token from {}", session.profile_name, path.display())
            }
            None => println!("Not logged in (profile {}): there was no cached token", session.profile_name),
        },
    }
    Ok(())
}

pub async fn whoami(session: &Session, out: &Out) -> Result<(), CliError> {
    let identity = session.auth().await?.who_am_i(session.request(pb::WhoAmIRequest {})).await?.into_inner();
    emit(out, &identity, std::slice::from_ref(&identity.subject), || {
        let mut text = details(
            out,
            &[
                ("Subject", identity.subject.clone().into()),
                ("Organization", identity.organization.clone().into()),
                ("Token expires", time(&identity.expire_time).into()),
                ("Profile", session.profile_name.clone().into()),
                ("Package service", session.package_addr.clone().into()),
                ("Installation service", session.installation_addr.clone().into()),
            ],
        );
        let mut table = Table::new(&["ROLE", "ENVIRONMENT"]);
        for b in &identity.bindings {
            table.row(vec![b.role.clone().into(), or_dash(&b.environment).into()]);
        }
        text.push('\n');
        text.push_str(&table.render(out, ""));
        text
    })
}

/// Reads one line from standard input, asking on standard error when it is a terminal and
/// turning echo off for secrets.
fn prompt(what: &str, secret: bool) -> Result<String, CliError> {
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    if interactive {
        eprint!("{what}: ");
        let _ = std::io::stderr().flush();
    }
    let echo_off = secret && interactive && stty("-echo");
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if echo_off {
        stty("echo");
        eprintln!();
    }
    read.map_err(|e| CliError::usage(format!("cannot read the {what}: {e}")))?;
    let value = line.trim_end_matches(['\r', '\n']).to_string();
    if value.is_empty() {
        let flag =
            if secret { "--client-secret or PROMOTION_CLIENT_SECRET" } else { "--client-id or PROMOTION_CLIENT_ID" };
        return Err(CliError::usage(format!("no {what} given: type it when asked, or use {flag}")));
    }
    Ok(value)
}

fn stty(setting: &str) -> bool {
    Command::new("stty").arg(setting).stdin(Stdio::inherit()).status().is_ok_and(|s| s.success())
}
