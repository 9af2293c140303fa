//! The command-line client: the client subcommands of the `promotion` binary, the flags
//! they share, and the dispatch to the command modules. Talks gRPC to the services only.
pub mod commands;
pub mod connect;
pub mod error;
pub mod output;
pub mod parse;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use commands::{audit, auth, env, install, objects, packages, promote};
use connect::Session;
use error::CliError;
use output::{ColorChoice, Format, Out};

/// Flags every client command takes (before or after its own arguments).
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Connection and output")]
pub struct GlobalArgs {
    /// Output: `human` tables, `json` (proto3 JSON of the responses) for scripts, or `id`
    /// (only the ids of the resulting resources, one per line).
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Format::Human, env = "PROMOTION_OUTPUT")]
    pub output: Format,
    /// When to colour human output.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// Package service address [default: the one used at login, else http://127.0.0.1:50051].
    #[arg(long, global = true, env = "PROMOTION_PACKAGE_ADDR", value_name = "URL")]
    pub package_server: Option<String>,
    /// Installation service address [default: the one used at login, else http://127.0.0.1:50052].
    #[arg(long, global = true, env = "PROMOTION_INSTALLATION_ADDR", value_name = "URL")]
    pub installation_server: Option<String>,
    /// Bearer token to use instead of the one `promotion login` cached.
    #[arg(long, global = true, env = "PROMOTION_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Where the token is cached [default: $XDG_CONFIG_HOME/promotion, else ~/.config/promotion].
    #[arg(long, global = true, env = "PROMOTION_CONFIG_DIR", value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
    /// Deadline of each call, in seconds (waiting for an extraction is not bounded by it).
    #[arg(long, global = true, default_value_t = 120, value_name = "SECONDS")]
    pub timeout: u64,
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
    /// Exchange client credentials for a token and cache it for the other commands.
    Login(auth::LoginArgs),
    /// Forget the cached token.
    Logout(auth::LogoutArgs),
    /// Show whose token is in use, its organization, role bindings and expiry.
    Whoami(auth::WhoamiArgs),
    /// Environments of your organization and their catalogs.
    Env(env::EnvArgs),
    /// Configuration objects of an environment: list, show, put (JSON or YAML), delete.
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
    /// One step from objects to a promotion request: create or reuse a package, wait for
    /// it, make it installable into the target, and request the promotion.
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
            ClientCommand::Env(a) => &a.global,
            ClientCommand::Objects(a) => &a.global,
            ClientCommand::Package(a) => &a.global,
            ClientCommand::Prerun(a) => &a.global,
            ClientCommand::Install(a) => &a.global,
            ClientCommand::Installations(a) => &a.global,
            ClientCommand::Rollback(a) => &a.global,
            ClientCommand::Promote(a) => &a.global,
            ClientCommand::Tasks(a) => &a.global,
            ClientCommand::Requests(a) => &a.global,
            ClientCommand::Accept(a) => &a.global,
            ClientCommand::Reject(a) | ClientCommand::Cancel(a) => &a.global,
            ClientCommand::Audit(a) => &a.global,
        }
    }
}

/// Runs one client command; failures are printed on standard error (as JSON with
/// `--output json`) and end with a non-zero exit code.
pub fn run(command: ClientCommand) -> ExitCode {
    let global = command.global().clone();
    let out = Out::new(global.output, global.color);
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(format!("cannot start the async runtime: {e}")))
        .and_then(|runtime| {
            runtime.block_on(async {
                let session = Session::new(&global)?;
                dispatch(command, &session, &out).await
            })
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e, &out);
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: ClientCommand, session: &Session, out: &Out) -> Result<(), CliError> {
    match command {
        ClientCommand::Login(a) => auth::login(session, out, a).await,
        ClientCommand::Logout(_) => auth::logout(session, out),
        ClientCommand::Whoami(_) => auth::whoami(session, out).await,
        ClientCommand::Env(a) => env::run(session, out, a.command).await,
        ClientCommand::Objects(a) => objects::run(session, out, a.command).await,
        ClientCommand::Package(a) => packages::run(session, out, a.command).await,
        ClientCommand::Prerun(a) => install::prerun(session, out, a).await,
        ClientCommand::Install(a) => install::install(session, out, a).await,
        ClientCommand::Installations(a) => install::installations(session, out, a.command).await,
        ClientCommand::Rollback(a) => install::rollback(session, out, a).await,
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
    if out.format == Format::Json {
        eprintln!("{}", e.to_json());
        return;
    }
    let label = if std::io::stderr().is_terminal() && out.color { "\x1b[1;31merror:\x1b[0m" } else { "error:" };
    eprintln!("{label} {e}");
}
