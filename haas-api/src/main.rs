//! `iris-api`, the HaaS broker.
//!
//! ```text
//! iris-api run --config FILE        serve the broker's API
//! iris-api check-config FILE        validate FILE, every problem with its key
//! iris-api openapi                  print the OpenAPI document
//! ```
//!
//! Exit codes: 0 success, 1 the configuration is wrong or the broker could
//! not run.

use clap::{Parser, Subcommand};
use iris_api::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(name = "iris-api", version, about = "The Iris HaaS broker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Validate a configuration file and print what it describes.
    CheckConfig { file: PathBuf },
    /// Print the OpenAPI document.
    Openapi,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(c) => {
                print!("{}: valid\n{}", file.display(), c.summary());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Openapi => {
            print!("{}", iris_api::api::openapi_text());
            ExitCode::SUCCESS
        }
        Command::Run { config } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr)
                .init();
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            let Ok(rt) = tokio::runtime::Runtime::new() else {
                eprintln!("cannot start the runtime");
                return ExitCode::FAILURE;
            };
            rt.block_on(async {
                let shutdown = CancellationToken::new();
                let running = match iris_api::run::start(&config, shutdown.clone()).await {
                    Ok(r) => {
                        // What scripts and tests wait for (with port 0, the
                        // only place the port is told). One write: stderr
                        // is unbuffered, and `eprintln!` writes the line in
                        // pieces, so a reader could take "127.0.0.1" for
                        // the whole address.
                        let line = format!("iris-api: listening on {}\n", r.addr);
                        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
                        r
                    }
                    Err(e) => {
                        eprintln!("iris-api: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                let stop = shutdown.clone();
                // SIGINT or a service manager's SIGTERM: stop serving, and
                // resign if active so that a standby takes over at once.
                let Ok(mut term) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                else {
                    eprintln!("iris-api: cannot watch for SIGTERM");
                    return ExitCode::FAILURE;
                };
                tokio::spawn(async move {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                    stop.cancel();
                });
                match running.task.await {
                    Ok(Ok(())) => ExitCode::SUCCESS,
                    Ok(Err(e)) => {
                        eprintln!("iris-api: {e}");
                        ExitCode::FAILURE
                    }
                    Err(e) => {
                        eprintln!("iris-api: {e}");
                        ExitCode::FAILURE
                    }
                }
            })
        }
    }
}
