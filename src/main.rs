//! The `promotion` binary: runs either service, development mode, and operator tools.
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use promotion_core::config::{Config, LogFormat, ServiceKind};
use promotion_serving::{init_tracing, shutdown_signal};

#[derive(Parser)]
#[command(
    name = "promotion",
    version,
    about = "Environment promotion: package and installation services, and their command-line client"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
        #[arg(long, default_value = "127.0.0.1:50051")]
        package_addr: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:50052")]
        installation_addr: SocketAddr,
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
    /// Print the argon2id hash of a client secret for the configuration's `secret_hash`.
    HashSecret {
        /// The secret; read from standard input when omitted.
        secret: Option<String>,
    },
    #[command(flatten)]
    Client(Box<promotion_cli::ClientCommand>),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CheckKind {
    Auto,
    Package,
    Installation,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Client(command) => return promotion_cli::run(*command),
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
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        match command {
            Command::PackageService(args) => {
                let config = args.load()?;
                init_tracing(config.log_format);
                let listener = tokio::net::TcpListener::bind(config.listen)
                    .await
                    .map_err(|e| format!("bind {}: {e}", config.listen))?;
                promotion_package::server::run(config, listener, shutdown_signal()).await.map_err(|e| e.to_string())
            }
            Command::InstallationService(args) => {
                let config = args.load()?;
                init_tracing(config.log_format);
                let listener = tokio::net::TcpListener::bind(config.listen)
                    .await
                    .map_err(|e| format!("bind {}: {e}", config.listen))?;
                let state = promotion_installation::server::open(config).map_err(|e| e.to_string())?;
                promotion_installation::server::run(state, listener, shutdown_signal()).await.map_err(|e| e.to_string())
            }
            Command::Dev { data_dir, package_addr, installation_addr, json_logs, write_config } => {
                let log_format = if json_logs { LogFormat::Json } else { LogFormat::Text };
                let opts = promotion_dev::mode::DevOptions { data_dir, package_addr, installation_addr, log_format };
                if let Some(dir) = write_config {
                    return promotion_dev::mode::write_configs(&opts, &dir).map_err(|e| e.to_string());
                }
                init_tracing(log_format);
                promotion_dev::mode::run(opts).await.map_err(|e| e.to_string())
            }
            Command::CheckConfig { .. } | Command::HashSecret { .. } | Command::Client(_) => {
                unreachable!("handled without this runtime")
            }
        }
    })
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
    config
        .validate(kind)
        .map_err(|problems| format!("{} is not valid:\n  {}", file.display(), problems.join("\n  ")))?;
    let what = if kind == ServiceKind::Package { "package service" } else { "installation service" };
    println!("{}: valid {what} configuration", file.display());
    Ok(())
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
