//! The `promotion` binary: runs either service, development mode, and operator tools.
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use promotion_core::config::{Config, LogFormat, ServiceKind};
use promotion_serving::{init_tracing, shutdown_signal};

/// The version and the commit it was built from ("unknown" outside a git checkout).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("PROMOTION_GIT_COMMIT"), ")");

#[derive(Parser)]
#[command(
    name = "promotion",
    version = VERSION,
    about = "Environment promotion: package and installation services, and their command-line client"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The client's flags may also come before the subcommand (`promotion -o json env
    /// list`); see `command_line()` for why they are not global here.
    #[command(flatten)]
    client: promotion_cli::GlobalArgs,
}

/// The command line, with the client's flags accepted before the subcommand but not passed
/// down from here: each client subcommand takes them itself (after it), and the service and
/// operator subcommands do not take them at all.
fn command_line() -> clap::Command {
    let mut command = Cli::command();
    for id in promotion_cli::GlobalArgs::IDS {
        command = command.mut_arg(*id, |a| a.global(false));
    }
    command
}

#[derive(clap::Args)]
struct ServiceArgs {
    /// Configuration file (TOML).
    #[arg(long, env = "PROMOTION_CONFIG")]
    config: PathBuf,
    /// Override the listen address.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Override the data directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Override any configuration value: --set limits.max_page_size=500 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

impl ServiceArgs {
    fn load(&self) -> Result<Config, String> {
        let mut sets = self.sets.clone();
        if let Some(l) = self.listen {
            sets.push(format!("listen={l}"));
        }
        if let Some(d) = &self.data_dir {
            sets.push(format!("data_dir={}", d.display()));
        }
        Config::load(&self.config, &sets)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the package service (packages, tokens).
    PackageService(ServiceArgs),
    /// Run an installation service (environments, pre-runs, installations, promotions).
    InstallationService(ServiceArgs),
    /// Run both services in one process on loopback with demo data (development mode).
    Dev {
        /// Where both services keep their data; reused across restarts.
        #[arg(long, env = "PROMOTION_DEV_DATA_DIR", default_value = ".promotion-dev")]
        data_dir: PathBuf,
        /// Keep both services' data in this PostgreSQL database instead (postgres://...);
        /// its tables are created on first use.
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
        #[arg(long, default_value = "127.0.0.1:50051")]
        package_addr: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:50052")]
        installation_addr: SocketAddr,
        /// Where both services' JSON API is served over HTTP.
        #[arg(long, default_value = "127.0.0.1:50080")]
        http_addr: SocketAddr,
        /// Log as JSON lines instead of text.
        #[arg(long)]
        json_logs: bool,
        /// Write the two configuration files development mode runs with into DIR and
        /// exit (a starting point for a real deployment, and what tests run with).
        #[arg(long, value_name = "DIR")]
        write_config: Option<PathBuf>,
    },
    /// Validate a configuration file without starting anything.
    CheckConfig {
        file: PathBuf,
        /// Which service the file configures.
        #[arg(long, value_enum, default_value = "auto")]
        service: CheckKind,
        /// Check with overrides applied, as the service would run: --set key.path=value.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
    /// Probe a service's gRPC health (grpc.health.v1): exit 0 when SERVING, 1 otherwise.
    /// For container health checks, where there is no curl.
    #[command(after_help = "Examples:\n  promotion health-check --addr 127.0.0.1:50051\n  \
        promotion health-check --addr http://127.0.0.1:50052 --service promotion.v1.EnvironmentService\n\n\
        Without --addr it probes the port PROMOTION_LISTEN names (a container's own service),\n\
        else 127.0.0.1:50051.")]
    HealthCheck {
        /// The service's gRPC address, host:port or a URL [default: PROMOTION_LISTEN's port on
        /// 127.0.0.1, else 127.0.0.1:50051].
        #[arg(long, value_name = "ADDR")]
        addr: Option<String>,
        /// The health service name to ask about (empty: the whole server).
        #[arg(long, default_value = "", hide_default_value = true, value_name = "NAME")]
        service: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3, value_name = "SECONDS")]
        timeout: u64,
    },
    /// Print a shell completion script: bash, zsh or fish.
    #[command(after_help = "Examples:\n  \
        promotion completion bash > ~/.local/share/bash-completion/completions/promotion\n  \
        promotion completion zsh > \"${fpath[1]}/_promotion\"\n  \
        promotion completion fish > ~/.config/fish/completions/promotion.fish")]
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Print the argon2id hash of a client secret for the configuration's `secret_hash`.
    HashSecret {
        /// The secret; read from standard input when omitted.
        secret: Option<String>,
    },
    #[command(flatten)]
    Client(Box<promotion_cli::ClientCommand>),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CheckKind {
    Auto,
    Package,
    Installation,
}

fn main() -> ExitCode {
    let cli = match command_line().try_get_matches().and_then(|m| Cli::from_arg_matches(&m)) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Client(command) => return promotion_cli::run(*command, cli.client),
        Command::Completion { shell } => {
            let shell = match shell {
                CompletionShell::Bash => clap_complete::Shell::Bash,
                CompletionShell::Zsh => clap_complete::Shell::Zsh,
                CompletionShell::Fish => clap_complete::Shell::Fish,
            };
            clap_complete::generate(shell, &mut command_line(), "promotion", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        Command::CheckConfig { file, service, sets } => check_config(&file, service, &sets),
        Command::HashSecret { secret } => hash_secret(secret),
        command => run_async(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_async(command: Command) -> Result<(), String> {
    promotion_serving::memory::configure_allocator();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        match command {
            Command::PackageService(args) => {
                let config = args.load()?;
                init_tracing(config.log_format);
                warn_about_demo_secrets(&config);
                let listener = tokio::net::TcpListener::bind(config.listen)
                    .await
                    .map_err(|e| format!("bind {}: {e}", config.listen))?;
                let state = promotion_package::server::open(config).map_err(|e| e.to_string())?;
                let package = promotion_serving::in_process(promotion_package::server::grpc_routes(&state));
                let upstreams = promotion_web::Upstreams { package: Some(package), installation: None };
                let http = start_http(&state.config, &upstreams).await?;
                let served = promotion_package::server::run(state, listener, shutdown_signal()).await;
                if let Some(http) = http {
                    http.stop();
                }
                served.map_err(|e| e.to_string())
            }
            Command::InstallationService(args) => {
                let config = args.load()?;
                init_tracing(config.log_format);
                warn_about_demo_secrets(&config);
                let listener = tokio::net::TcpListener::bind(config.listen)
                    .await
                    .map_err(|e| format!("bind {}: {e}", config.listen))?;
                let state = promotion_installation::server::open(config).map_err(|e| e.to_string())?;
                // The package endpoints answer here too, by the package service's gRPC port.
                let package = match state.config.package_service.as_deref() {
                    Some(address) => Some(promotion_serving::remote(address).map_err(|e| e.to_string())?),
                    None => None,
                };
                let installation = promotion_serving::in_process(promotion_installation::server::grpc_routes(&state));
                let upstreams = promotion_web::Upstreams { package, installation: Some(installation) };
                let http = start_http(&state.config, &upstreams).await?;
                let served = promotion_installation::server::run(state, listener, shutdown_signal()).await;
                if let Some(http) = http {
                    http.stop();
                }
                served.map_err(|e| e.to_string())
            }
            Command::Dev {
                data_dir,
                database_url,
                package_addr,
                installation_addr,
                http_addr,
                json_logs,
                write_config,
            } => {
                let log_format = if json_logs { LogFormat::Json } else { LogFormat::Text };
                let opts = promotion_dev::mode::DevOptions {
                    data_dir,
                    database_url,
                    package_addr,
                    installation_addr,
                    http_addr,
                    log_format,
                };
                if let Some(dir) = write_config {
                    return promotion_dev::mode::write_configs(&opts, &dir).map_err(|e| e.to_string());
                }
                init_tracing(log_format);
                promotion_dev::mode::run(opts).await.map_err(|e| e.to_string())
            }
            Command::HealthCheck { addr, service, timeout } => health_check(addr, service, timeout).await,
            Command::CheckConfig { .. }
            | Command::HashSecret { .. }
            | Command::Completion { .. }
            | Command::Client(_) => {
                unreachable!("handled without this runtime")
            }
        }
    })
}

/// The service's HTTP port (the JSON API), when `http_listen` asks for one.
async fn start_http(
    config: &Config,
    upstreams: &promotion_web::Upstreams,
) -> Result<Option<promotion_serving::http::HttpServer>, String> {
    let Some(addr) = config.http_listen else { return Ok(None) };
    let max = config.limits.max_message_bytes;
    promotion_web::start(addr, "http_listen", upstreams, max).await.map(Some).map_err(|e| e.to_string())
}

/// A service started with development mode's published secrets runs (the integration
/// tests do that) but says so; `check-config` refuses such a configuration.
fn warn_about_demo_secrets(config: &Config) {
    for problem in config.demo_secrets() {
        tracing::warn!(problem, "anyone can read this secret in the repository; do not deploy it");
    }
}

fn check_config(file: &std::path::Path, kind: CheckKind, sets: &[String]) -> Result<(), String> {
    let config = Config::load(file, sets)?;
    let kind = match kind {
        CheckKind::Package => ServiceKind::Package,
        CheckKind::Installation => ServiceKind::Installation,
        // A file naming hosted environments configures an installation service.
        CheckKind::Auto if config.hosted_environments.is_empty() => ServiceKind::Package,
        CheckKind::Auto => ServiceKind::Installation,
    };
    // Every problem at once, so one edit fixes them all. Development mode's published
    // secrets are fine for it and refused here: check-config checks real deployments.
    let mut problems = config.validate(kind).err().unwrap_or_default();
    problems.extend(config.demo_secrets());
    if !problems.is_empty() {
        return Err(format!("{} is not valid:\n  {}", file.display(), problems.join("\n  ")));
    }
    let what = if kind == ServiceKind::Package { "package service" } else { "installation service" };
    println!("{}: valid {what} configuration", file.display());
    Ok(())
}

/// The address `health-check` probes without --addr: the service of this container, whose
/// PROMOTION_LISTEN (often 0.0.0.0:PORT) names the port.
fn default_health_addr() -> String {
    match std::env::var("PROMOTION_LISTEN").ok().and_then(|l| l.parse::<SocketAddr>().ok()) {
        Some(listen) if listen.ip().is_unspecified() => format!("127.0.0.1:{}", listen.port()),
        Some(listen) => listen.to_string(),
        None => "127.0.0.1:50051".into(),
    }
}

async fn health_check(addr: Option<String>, service: String, timeout: u64) -> Result<(), String> {
    use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest};
    let addr = promotion_cli::connect::normalize_address(&addr.unwrap_or_else(default_health_addr));
    let deadline = std::time::Duration::from_secs(timeout.max(1));
    let endpoint = tonic::transport::Endpoint::from_shared(addr.clone())
        .map_err(|e| format!("{addr:?} is not an address: {e}"))?
        .connect_timeout(deadline)
        .timeout(deadline);
    let channel = endpoint.connect().await.map_err(|e| format!("{addr}: cannot connect: {e}"))?;
    let request = HealthCheckRequest { service: service.clone() };
    let response = HealthClient::new(channel).check(request).await.map_err(|e| format!("{addr}: {}", e.message()))?;
    let status = ServingStatus::try_from(response.into_inner().status).unwrap_or(ServingStatus::Unknown);
    let what = if service.is_empty() { addr } else { format!("{addr} {service}") };
    if status == ServingStatus::Serving {
        println!("{what}: SERVING");
        Ok(())
    } else {
        Err(format!("{what}: {}", status.as_str_name()))
    }
}

fn hash_secret(secret: Option<String>) -> Result<(), String> {
    let secret = match secret {
        Some(s) => s,
        None => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map_err(|e| e.to_string())?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    if secret.is_empty() {
        return Err("the secret is empty".into());
    }
    println!("{}", promotion_core::secrets::hash_secret(&secret));
    Ok(())
}
