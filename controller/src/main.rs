//! `iris-controller`: the Iris OpenFlow controller.
//!
//! ```text
//! iris-controller run --config FILE      serve until SIGTERM or ctrl-c
//!                  [--empty-store]       move the store aside first
//!                  [--accept-store]      take a store whose witness is lost
//! iris-controller check-config FILE      validate FILE and print a summary
//! iris-controller hash-token < TOKEN     print the hash [api_auth] takes
//! ```
//!
//! Exit codes: 0 success, 1 the controller failed while running, 2 the
//! configuration (or the command line) is wrong.

use clap::{Parser, Subcommand};
use iris_controller::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Every PacketIn and its answer allocate a few small buffers on one task
/// and free them on another; glibc's malloc spent a quarter of the
/// controller's time on that under load (docs/benchmarks.md), mimalloc far
/// less. The `system-allocator` feature leaves it out, so that heap
/// profilers that hook malloc see every allocation.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "iris-controller",
    version,
    about = "The Iris OpenFlow 1.3 controller"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controller.
    Run {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Move the store aside (to `<store>.set-aside-<seconds>`) and start
        /// with an empty one: every switch is then reconciled to the
        /// configuration alone. For a store that cannot be restored.
        #[arg(long)]
        empty_store: bool,
        /// Take the store as it is although its witness file
        /// (`iris-store.json`) is missing, and write the witness anew. For a
        /// store whose directory was restored without that one file.
        #[arg(long, conflicts_with = "empty_store")]
        accept_store: bool,
    },
    /// Read an API token from the first line of standard input and print the
    /// argon2 hash to write into `[api_auth] token_hashes`.
    HashToken,
    /// Validate a configuration file and print what it describes.
    CheckConfig {
        /// The TOML configuration file.
        file: PathBuf,
    },
}

const EXIT_FAILED: u8 = 1;
const EXIT_BAD_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::HashToken => hash_token(),
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
                ExitCode::from(EXIT_BAD_CONFIG)
            }
        },
        Command::Run {
            config,
            empty_store,
            accept_store,
        } => {
            let mut config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EXIT_BAD_CONFIG);
                }
            };
            init_logging();
            config.accept_store = accept_store;
            if config.etcd.is_some() && (empty_store || accept_store) {
                tracing::error!(
                    "--empty-store and --accept-store are for the sled store; an etcd store is \
                     kept by its cluster (etcdctl del --prefix PREFIX empties it)"
                );
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
            if empty_store {
                match iris_controller::store::set_aside(&config.store) {
                    Ok(Some(to)) => tracing::warn!(
                        "--empty-store: moved the store {} to {}; starting with an empty store",
                        config.store.display(),
                        to.display()
                    ),
                    Ok(None) => tracing::info!(
                        "--empty-store: there is no store at {} to move aside",
                        config.store.display()
                    ),
                    Err(e) => {
                        tracing::error!("--empty-store: {e}");
                        return ExitCode::from(EXIT_FAILED);
                    }
                }
            }
            run(config)
        }
    }
}

/// The token is read from standard input, not the command line, so that it
/// stays out of the shell's history and the process list.
fn hash_token() -> ExitCode {
    let token = match iris_controller::api_auth::read_token_line(std::io::stdin().lock()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot read the token from standard input: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match iris_controller::api_auth::hash_token(&token) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}

/// `RUST_LOG` chooses what is logged; `info` by default.
fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

fn run(config: Config) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        match iris_controller::run::run(config, shutdown, |_| {}).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e}");
                ExitCode::from(EXIT_FAILED)
            }
        }
    })
}

/// Cancels `shutdown` on SIGTERM or SIGINT (ctrl-c).
async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        tracing::warn!("cannot watch SIGTERM; stop the controller with ctrl-c");
        let _ = tokio::signal::ctrl_c().await;
        shutdown.cancel();
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: shutting down"),
    }
    shutdown.cancel();
}
