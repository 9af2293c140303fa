//! The command-line client: the client subcommands of the `promotion` binary, the flags
//! they share (before or after the subcommand), and the dispatch to the command modules.
//! Talks gRPC to the services only.
pub mod commands;
pub mod connect;
pub mod error;
pub mod output;
pub mod parse;
pub mod profiles;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use commands::{audit, auth, config, drift, env, install, objects, packages, promote};
use connect::Session;
use error::CliError;
use output::{ColorChoice, Format, Out};

/// Flags every client command takes, before or after the subcommand
/// (`promotion -o json env list` and `promotion env list -o json`). Every field is an
/// Option, so that a flag given after the subcommand can win over one given before it and
/// the defaults apply only to what neither gave.
#[derive(clap::Args, Debug, Clone, Default)]
#[command(next_help_heading = "Connection and output")]
pub struct GlobalArgs {
    /// Output: human (tables), json or yaml (the responses, proto3 JSON mapping), id (only
    /// the resulting ids, one per line) [default: human]
    #[arg(
        long,
        short = 'o',
        global = true,
        value_enum,
        env = "PROMOTION_OUTPUT",
        hide_possible_values = true,
        value_name = "FORMAT"
    )]
    pub output: Option<Format>,
    /// Colour: auto (on a terminal, without NO_COLOR), always, never [default: auto]
    #[arg(long, global = true, value_enum, hide_possible_values = true, value_name = "WHEN")]
    pub color: Option<ColorChoice>,
    /// Profile: its own servers and token [default: `promotion config use-profile`'s, else default]
    #[arg(long, global = true, env = "PROMOTION_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,
    /// Package service address [default: the profile's, else http://127.0.0.1:50051]
    #[arg(long, global = true, env = "PROMOTION_PACKAGE_ADDR", value_name = "URL")]
    pub package_server: Option<String>,
    /// Installation service with the environment directory [default: the profile's, else
    /// http://127.0.0.1:50052]; calls about an environment go to the one hosting it
    #[arg(long, global = true, env = "PROMOTION_INSTALLATION_ADDR", value_name = "URL")]
    pub installation_server: Option<String>,
    /// Bearer token to use instead of the profile's
    #[arg(long, global = true, env = "PROMOTION_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Where profiles are kept [default: $XDG_CONFIG_HOME/promotion, else ~/.config/promotion]
    #[arg(long, global = true, env = "PROMOTION_CONFIG_DIR", value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
    /// Deadline of each call, in seconds [default: 120]
    #[arg(long, global = true, value_name = "SECONDS")]
    pub timeout: Option<u64>,
}

impl GlobalArgs {
    /// These flags (given after the subcommand), else `before` (given before it).
    pub fn or(self, before: GlobalArgs) -> GlobalArgs {
        GlobalArgs {
            output: self.output.or(before.output),
            color: self.color.or(before.color),
            profile: self.profile.or(before.profile),
            package_server: self.package_server.or(before.package_server),
            installation_server: self.installation_server.or(before.installation_server),
            token: self.token.or(before.token),
            config_dir: self.config_dir.or(before.config_dir),
            timeout: self.timeout.or(before.timeout),
        }
    }

    /// The ids of these flags, for turning them off where they do not belong.
    pub const IDS: &'static [&'static str] =
        &["output", "color", "profile", "package_server", "installation_server", "token", "config_dir", "timeout"];
}

/// Paging of list commands.
#[derive(clap::Args, Debug, Clone)]
pub struct PageArgs {
    /// Items per page (0: the service's default; the service caps it).
    #[arg(long, default_value_t = 0)]
    pub page_size: i32,
    /// Continue from the token a previous page printed.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub page_token: String,
    /// Follow every page to the end.
    #[arg(long)]
    pub all: bool,
}

#[derive(clap::Subcommand, Debug)]
pub enum ClientCommand {
    /// Exchange client credentials for a token and cache it in the profile.
    Login(auth::LoginArgs),
    /// Forget the profile's cached token.
    Logout(auth::LogoutArgs),
    /// Show whose token is in use, its organization, role bindings and expiry.
    Whoami(auth::WhoamiArgs),
    /// Profiles: list, show, and choose the one commands use.
    Config(config::ConfigArgs),
    /// Environments of your organization and their catalogs.
    Env(env::EnvArgs),
    /// Configuration objects of an environment: list, show, put (JSON or YAML), patch, edit,
    /// delete.
    Objects(objects::ObjectsArgs),
    /// Packages: create, inspect, change status, watch, delete.
    Package(packages::PackageArgs),
    /// Plan the installation of a package into an environment and show what would happen.
    Prerun(install::PrerunArgs),
    /// Install a package into an environment (a pre-run's plan, with overrides).
    Install(install::InstallArgs),
    /// Installations made into environments.
    Installations(install::InstallationsArgs),
    /// Undo an installation: restore everything it changed.
    Rollback(install::RollbackArgs),
    /// What installations wrote into an environment and was edited or deleted there since
    /// (exit status 2 on drift, 0 without).
    Drift(drift::DriftArgs),
    /// One step from objects to a promotion request: create or reuse a package, wait for
    /// it, take it through the statuses the target needs, and request the promotion.
    Promote(promote::PromoteArgs),
    /// Pending promotion requests you may accept or reject.
    Tasks(promote::TasksArgs),
    /// Promotion requests: list and show.
    Requests(promote::RequestsArgs),
    /// Accept a promotion request: pre-run and install it into its target.
    Accept(promote::AcceptArgs),
    /// Reject a pending promotion request.
    Reject(promote::DecideArgs),
    /// Withdraw a promotion request you made.
    Cancel(promote::DecideArgs),
    /// Read the audit trail of both services.
    Audit(audit::AuditArgs),
}

impl ClientCommand {
    fn global(&self) -> &GlobalArgs {
        match self {
            ClientCommand::Login(a) => &a.global,
            ClientCommand::Logout(a) => &a.global,
            ClientCommand::Whoami(a) => &a.global,
            ClientCommand::Config(a) => &a.global,
            ClientCommand::Env(a) => &a.global,
            ClientCommand::Objects(a) => &a.global,
            ClientCommand::Package(a) => &a.global,
            ClientCommand::Prerun(a) => &a.global,
            ClientCommand::Install(a) => &a.global,
            ClientCommand::Installations(a) => &a.global,
            ClientCommand::Rollback(a) => &a.global,
            ClientCommand::Drift(a) => &a.global,
            ClientCommand::Promote(a) => &a.global,
            ClientCommand::Tasks(a) => &a.global,
            ClientCommand::Requests(a) => &a.global,
            ClientCommand::Accept(a) => &a.global,
            ClientCommand::Reject(a) | ClientCommand::Cancel(a) => &a.global,
            ClientCommand::Audit(a) => &a.global,
        }
    }
}

/// Runs one client command with the flags given after it, else those given before it
/// (`before`); failures are printed on standard error (as JSON or YAML with those outputs)
/// and end with a non-zero exit code.
pub fn run(command: ClientCommand, before: GlobalArgs) -> ExitCode {
    let global = command.global().clone().or(before);
    let out = Out::new(global.output.unwrap_or(Format::Human), global.color.unwrap_or(ColorChoice::Auto));
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(format!("cannot start the async runtime: {e}")))
        .and_then(|runtime| {
            runtime.block_on(async {
                let session = Session::new(&global)?;
                let result = dispatch(command, &session, &out).await;
                if let Err(e) = &result {
                    if e.reason().as_deref() == Some("ENVIRONMENT_NOT_HOSTED") {
                        // The directory moved an environment: learn it again next time.
                        session.forget_hosts();
                    }
                }
                result
            })
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e, &out);
            ExitCode::from(e.exit_code())
        }
    }
}

async fn dispatch(command: ClientCommand, session: &Session, out: &Out) -> Result<(), CliError> {
    match command {
        ClientCommand::Login(a) => auth::login(session, out, a).await,
        ClientCommand::Logout(_) => auth::logout(session, out),
        ClientCommand::Whoami(_) => auth::whoami(session, out).await,
        ClientCommand::Config(a) => config::run(session, out, a.command),
        ClientCommand::Env(a) => env::run(session, out, a.command).await,
        ClientCommand::Objects(a) => objects::run(session, out, a.command).await,
        ClientCommand::Package(a) => packages::run(session, out, a.command).await,
        ClientCommand::Prerun(a) => install::prerun(session, out, a).await,
        ClientCommand::Install(a) => install::install(session, out, a).await,
        ClientCommand::Installations(a) => install::installations(session, out, a.command).await,
        ClientCommand::Rollback(a) => install::rollback(session, out, a).await,
        ClientCommand::Drift(a) => drift::drift(session, out, a).await,
        ClientCommand::Promote(a) => promote::promote(session, out, a).await,
        ClientCommand::Tasks(a) => promote::tasks(session, out, a).await,
        ClientCommand::Requests(a) => promote::requests(session, out, a.command).await,
        ClientCommand::Accept(a) => promote::accept(session, out, a).await,
        ClientCommand::Reject(a) => promote::close(session, out, a, false).await,
        ClientCommand::Cancel(a) => promote::close(session, out, a, true).await,
        ClientCommand::Audit(a) => audit::run(session, out, a).await,
    }
}

fn report(e: &CliError, out: &Out) {
    if let CliError::Exit(_) = e {
        return;
    }
    if out.structured() {
        eprint!("{}", output::document(out.format, &e.to_json()));
        return;
    }
    let label = if std::io::stderr().is_terminal() && out.color { "\x1b[1;31merror:\x1b[0m" } else { "error:" };
    // The message may carry what a service sent: escaped, line by line.
    let text: Vec<String> = e.to_string().lines().map(|l| output::safe(l).into_owned()).collect();
    eprintln!("{label} {}", text.join("\n"));
}
