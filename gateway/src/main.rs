//! `iris-gateway`: the Iris gateway between data centers.
//!
//! ```text
//! iris-gateway run --config FILE      serve until SIGTERM or ctrl-c
//! iris-gateway check-config FILE      validate FILE and print what it describes
//! iris-gateway genkey FILE            write a new WireGuard private key, print its public key
//! iris-gateway hash-token < TOKEN     print the hash a [[peer]]'s token_hash takes
//! ```
//!
//! Exit codes: 0 success, 1 the configuration is wrong or the gateway
//! could not run.

use clap::{Parser, Subcommand};
use iris_gateway::config::encryption::{generate_key, key_text};
use iris_gateway::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "iris-gateway",
    version,
    about = "The Iris gateway: one layer-2 network per VI across data centers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway until SIGTERM; SIGHUP reads the file again and puts
    /// new encrypted-WAN keys in place (anything else changed is refused).
    Run {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file and print what it describes.
    CheckConfig {
        /// The TOML configuration file.
        file: PathBuf,
    },
    /// Write a new private key for `[wan.encryption]` to FILE (which must
    /// not exist; mode 0600) and print its public key, for the peers.
    Genkey { file: PathBuf },
    /// Read a peer's token from standard input and print the argon2 hash
    /// to write as that `[[peer]]`'s `token_hash` on the gateway it
    /// reports to (the controller's `hash-token`, the same hash).
    HashToken,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Genkey { file } => match generate_key(&file) {
            Ok(public) => {
                println!("{}", key_text(&public));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("iris-gateway: {e}");
                ExitCode::FAILURE
            }
        },
        Command::HashToken => {
            let token = match iris_controller::api_auth::read_token_line(std::io::stdin().lock()) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("iris-gateway: cannot read the token from standard input: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match iris_controller::api_auth::hash_token(&token) {
                Ok(hash) => {
                    println!("{hash}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("iris-gateway: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(config) => {
                for w in config.warnings() {
                    eprintln!("warning: {w}");
                }
                print!("{}: valid\n{}", file.display(), config.summary());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Run { config } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
                )
                .init();
            let path = config;
            let config = match Config::load(&path) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            for w in config.warnings() {
                tracing::warn!("{w}");
            }
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(iris_gateway::run::run(config, path)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("iris-gateway: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
