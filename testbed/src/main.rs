//! `iris-testbed`: checks a host for the testbed, cleans up after crashed
//! runs, runs the demo and the end-to-end scenarios. Scenarios, benchmarks
//! and the demo build on the library.

mod demo;
mod interop_demo;
mod scenarios;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use iris_testbed::{cleanup_prefix, cleanup_stale, host, Config, Prefix, DEFAULT_STATE_ROOT};

#[derive(Debug, Parser)]
#[command(
    name = "iris-testbed",
    version,
    about = "The Iris emulated inter-cloud testbed"
)]
struct Cli {
    /// Directory holding one state directory per live testbed.
    #[arg(long, global = true, default_value = DEFAULT_STATE_ROOT)]
    state_root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Verify that this host can run the testbed: root, tools, namespaces, and
    /// a throwaway OVS instance that comes up and goes away.
    Check,
    /// Run the demo that `make demo` shows: the emulated inter-cloud with the
    /// real iris-controller (mesh, ARP, isolation, live migration, controller
    /// restart), each step and its measurements printed for a human.
    Demo {
        /// Run only the OpenFlow 1.3 codec in a live session with a real
        /// ovs-vswitchd, every message and check printed.
        #[arg(long)]
        openflow_only: bool,
        /// The iris-controller binary; by default the one beside this program.
        #[arg(long, conflicts_with = "openflow_only")]
        controller: Option<PathBuf>,
    },
    /// Run an end-to-end scenario (or `all` of them) against the real
    /// iris-controller process; print a JSON summary with its measurements
    /// on stdout, progress on stderr; exit non-zero if it fails.
    Scenario {
        /// mesh, isolation, vlan, migrate, controller-restart, host-churn, or all.
        name: String,
        /// The iris-controller binary; by default the one beside this program.
        #[arg(long)]
        controller: Option<PathBuf>,
    },
    /// Remove namespaces, links, processes and state left by testbeds whose
    /// owning process is gone. Live testbeds are left alone.
    CleanupStale {
        /// Remove this testbed prefix (e.g. ir7kq) even if its owner still runs.
        #[arg(long, value_parser = parse_prefix)]
        prefix: Option<Prefix>,
    },
}

fn parse_prefix(s: &str) -> Result<Prefix, String> {
    Prefix::parse(s).ok_or_else(|| format!("{s:?} is not a testbed prefix like ir7kq"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = Config {
        state_root: cli.state_root.clone(),
        ..Config::default()
    };
    match cli.command {
        Command::Demo {
            openflow_only: true,
            ..
        } => interop_demo::run(config),
        Command::Demo { controller, .. } => match scenarios::options(controller.as_deref(), config)
        {
            Some(options) => demo::run(&options),
            None => ExitCode::from(2),
        },
        Command::Scenario { name, controller } => {
            scenarios::run(&name, controller.as_deref(), config)
        }
        Command::Check => {
            let report = host::check(&config);
            for finding in &report.findings {
                println!("{finding}");
            }
            match report.advice() {
                None => {
                    println!("this host can run the Iris testbed");
                    ExitCode::SUCCESS
                }
                Some(advice) => {
                    eprintln!("this host cannot run the Iris testbed; {advice}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CleanupStale { prefix } => {
            if !host::is_root() {
                eprintln!("cleanup-stale needs root; run it as root (e.g. under sudo)");
                return ExitCode::FAILURE;
            }
            let result = match prefix {
                Some(prefix) => cleanup_prefix(&cli.state_root, &prefix),
                None => cleanup_stale(&cli.state_root),
            };
            match result {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("cleanup-stale: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
