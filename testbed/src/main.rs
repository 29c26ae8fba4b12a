//! `iris-testbed`: checks a host for the testbed, cleans up after crashed
//! `iris-testbed`: checks a host for the testbed, cleans up after crashed
//! runs, runs the demo, the end-to-end scenarios and the benchmarks.
//! Scenarios, benchmarks and the demo build on the library.

mod demo;
mod interop_demo;
mod scenarios;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use iris_testbed::bench::{self, Mode, Target, Workload};
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
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// cbench-style OpenFlow 1.3 load: emulated switches send PacketIns to a
    /// controller this command starts on a loopback port, and count the
    /// answers (responses/s) and how long they took.
    Controller(ControllerArgs),
    /// K VMs live-migrate at once in a mesh of N PMs with the real
    /// iris-controller: RARP-to-last-barrier time per move, first RARP to
    /// last move confirmed, and the pings lost by each moving VM.
    Moves(MovesArgs),
}

#[derive(Debug, Args)]
struct MovesArgs {
    /// PMs in the mesh (each its own ovsdb-server and ovs-vswitchd).
    #[arg(long, default_value_t = 8)]
    pms: usize,
    /// VMs that move at once.
    #[arg(long, default_value_t = 1)]
    moves: usize,
    /// Milliseconds between two pings to one moving VM.
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
    /// The iris-controller binary; by default the one beside this program.
    #[arg(long)]
    controller: Option<PathBuf>,
    /// Copy the controller's log (debug level) here after the run.
    #[arg(long)]
    keep_log: Option<PathBuf>,
    /// Print one JSON object with the figures instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ControllerArgs {
    /// The controller to measure; peers are installed when missing.
    #[arg(long, value_enum)]
    target: Target,
    /// Emulated switches, each on its own TCP connection.
    #[arg(long, default_value_t = 16)]
    switches: u32,
    /// Hosts (source MACs) per switch.
    #[arg(long, default_value_t = 1000)]
    macs: u32,
    /// Ports per switch the hosts are spread over.
    #[arg(long, default_value_t = 8)]
    ports: u16,
    #[arg(long, value_enum, default_value_t = Mode::Throughput)]
    mode: Mode,
    #[arg(long, value_enum, default_value_t = Workload::Learning)]
    workload: Workload,
    /// Unanswered PacketIns per switch in throughput mode [default: 1024
    /// across all switches, at least 1 each].
    #[arg(long)]
    window: Option<u32>,
    /// Buffered PacketIns as cbench sends them: the controller may answer
    /// with the buffer id instead of the frame.
    #[arg(long)]
    buffered: bool,
    /// Seconds of load before the measurement starts.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds a PacketIn may wait for its answer before it is given up.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    /// Where the Python peers' venv is kept [default: $IRIS_BENCH_CACHE,
    /// else $XDG_CACHE_HOME/iris-bench, else ~/.cache/iris-bench].
    #[arg(long)]
    cache: Option<PathBuf>,
    /// The iris-controller binary [default: $IRIS_CONTROLLER, next to
    /// iris-testbed, or on PATH].
    #[arg(long)]
    iris_controller: Option<PathBuf>,
    /// Keep the run directory (the controller's configuration and log).
    #[arg(long)]
    keep: bool,
    /// Print one JSON object with the figures instead of text.
    #[arg(long)]
    json: bool,
}

fn seconds(flag: &str, s: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|_| format!("{flag} must be a number of seconds >= 0"))
}

fn bench_controller(a: ControllerArgs) -> ExitCode {
    let durations = (|| {
        Ok::<_, String>((
            seconds("--warmup", a.warmup)?,
            seconds("--duration", a.duration)?,
            seconds("--timeout", a.timeout)?,
        ))
    })();
    let (warmup, duration, timeout) = match durations {
        Ok(d) => d,
        Err(e) => {
            eprintln!("bench controller: {e}");
            return ExitCode::from(2);
        }
    };
    let options = bench::Options {
        target: a.target,
        switches: a.switches,
        macs: a.macs,
        ports: a.ports,
        mode: a.mode,
        workload: a.workload,
        window: a.window,
        buffered: a.buffered,
        warmup,
        duration,
        timeout,
        cache: a.cache.unwrap_or_else(bench::default_cache),
        iris_controller: a.iris_controller,
        keep: a.keep,
    };
    match bench::run(&options) {
        Ok(report) if a.json => match serde_json::to_string(&report) {
            Ok(j) => {
                println!("{j}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("bench controller: cannot write the report as JSON: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench controller: {e}");
            match e {
                bench::BenchError::Usage(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn bench_moves(a: MovesArgs, config: Config) -> ExitCode {
    let Some(scenario) = scenarios::options(a.controller.as_deref(), config) else {
        return ExitCode::from(2);
    };
    let options = bench::moves::Options {
        pms: a.pms,
        moves: a.moves,
        interval: Duration::from_millis(a.interval_ms),
        scenario,
        keep_log: a.keep_log,
    };
    match bench::moves::run(&options) {
        Ok(report) if a.json => match serde_json::to_string(&report) {
            Ok(j) => {
                println!("{j}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("bench moves: cannot write the report as JSON: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench moves: {e}");
            match e {
                iris_testbed::scenario::ScenarioError::Testbed(iris_testbed::Error::Usage(_)) => {
                    ExitCode::from(2)
                }
                _ => ExitCode::FAILURE,
            }
        }
    }
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
        Command::Bench(BenchCommand::Controller(args)) => bench_controller(args),
        Command::Bench(BenchCommand::Moves(args)) => bench_moves(args, config),
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
