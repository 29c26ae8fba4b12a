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
use iris_testbed::dataplane::{arp, goodput, intercloud};
use iris_testbed::scenario::{self, Harness, ScenarioError};
use iris_testbed::{cleanup_prefix, cleanup_stale, host, wan, Config, Prefix, DEFAULT_STATE_ROOT};

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
    /// Run the demo that `make demo` shows: the HaaS service (broker,
    /// irisctl, two operators' data centers and their gateways); with
    /// --controller-only, the emulated inter-cloud with the real
    /// iris-controller alone (mesh, ARP, isolation, live migration,
    /// controller restart), each step and its measurements printed for a
    /// human.
    Demo {
        /// Run only the OpenFlow 1.3 codec in a live session with a real
        /// ovs-vswitchd, every message and check printed.
        #[arg(long)]
        openflow_only: bool,
        /// Run the controller-only steps (mesh, ARP, isolation, migration,
        /// controller restart, inter-cloud) instead of the service.
        #[arg(long, conflicts_with = "openflow_only")]
        controller_only: bool,
        /// The iris-controller binary; by default the one beside this program.
        #[arg(long, conflicts_with = "openflow_only")]
        controller: Option<PathBuf>,
    },
    /// Run an end-to-end scenario (or `all` of them) against the real
    /// iris-controller process; print a JSON summary with its measurements
    /// on stdout, progress on stderr; exit non-zero if it fails.
    Scenario {
        /// mesh, isolation, vlan, migrate, controller-restart, host-churn,
        /// qemu-migrate, intercloud, intercloud-encrypted, tenants-intercloud,
        /// migrate-intercloud,
        /// broker, wan-cut, libvirt-node, service, or all.
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
    /// Experiments that reproduce the shape of a published study; each
    /// writes a markdown table and SVG plots into a directory.
    #[command(subcommand)]
    Experiment(ExperimentCommand),
}

#[derive(Debug, Subcommand)]
enum ExperimentCommand {
    /// The Iris paper's WAN study on the inter-cloud world: ping RTT IaaS
    /// guest to HaaS guest and inside the IaaS DC, and an emulated move
    /// IaaS DC -> HaaS DC (first RARP to the controller's move event,
    /// re-plug to first reply), as the one-way WAN delay grows.
    Wan(ExperimentWanArgs),
    /// The Iris paper's migration-time figure with real QEMU: a guest
    /// live-migrates IaaS DC -> HaaS DC across the WAN at each delay (total
    /// time, downtime, pause, ping gap).
    QemuMigration(ExperimentQemuMigrationArgs),
}

#[derive(Debug, Args)]
struct ExperimentQemuMigrationArgs {
    /// Where qemu-migration.md and qemu-migration.svg are written.
    #[arg(long)]
    out: PathBuf,
    /// One-way WAN delays in ms, one migration each.
    #[arg(long, value_delimiter = ',', default_value = "0,5,10,20,50,100")]
    delays: Vec<u64>,
    /// The iris-controller binary; by default the one beside this program.
    #[arg(long)]
    controller: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ExperimentWanArgs {
    /// Where wan.md, wan-rtt.svg and wan-migration.svg are written.
    #[arg(long)]
    out: PathBuf,
    /// One-way WAN delays in ms.
    #[arg(long, value_delimiter = ',', default_value = "0,5,10,20,50,100")]
    delays: Vec<u64>,
    /// Echo requests per RTT measurement.
    #[arg(long, default_value_t = 20)]
    pings: u32,
    /// Milliseconds between two echo requests.
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
    /// The iris-controller binary; by default the one beside this program.
    #[arg(long)]
    controller: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// cbench-style OpenFlow 1.3 load: emulated switches send PacketIns to a
    /// controller this command starts on a loopback port, and count the
    /// answers (responses/s) and how long they took.
    Controller(ControllerArgs),
    /// How iris-controller grows: memory against registry size, reconcile
    /// after a kill -9 with many flows on real OVS, many switches at once.
    #[command(subcommand)]
    Scale(ScaleCommand),
    /// TCP goodput (iperf3) between two VMs through Iris's GRE mesh, against
    /// the same VMs on one Iris bridge and on a plain NORMAL bridge, in one
    /// run on the emulated testbed with the real iris-controller.
    Goodput(GoodputArgs),
    /// TCP goodput (iperf3) from an IaaS guest to a HaaS guest through both
    /// iris-gateways and the WAN relay at 0 ms, against the same path with
    /// plain L2 switching (NORMAL) in place of Iris's flows, alternating.
    Intercloud(IntercloudArgs),
    /// Time to answer an ARP request in Iris's datapath responder against a
    /// plain NORMAL bridge where the target VM answers, with the
    /// controller's PacketIn counter read around the run.
    Arp(ArpArgs),
    /// K VMs live-migrate at once in a mesh of N PMs with the real
    /// iris-controller: RARP-to-last-barrier time per move, first RARP to
    /// last move confirmed, and the pings lost by each moving VM.
    Moves(MovesArgs),
    /// A real QEMU live migration between two PMs while a VM on a third
    /// pings the guest every 10 ms, under Iris and (with --peer ovn) under
    /// OVN in its live-migration mode, alternating: pings lost, the longest
    /// gap, QEMU's downtime and the gap beyond it.
    Migration(MigrationArgs),
    /// The emulated WAN: ping RTT through the userspace relay at several
    /// one-way delays against twice the delay plus the 0-ms baseline, and
    /// TCP goodput through the relay at 0 ms against a kernel bridge on the
    /// same cables, alternating. Exit 1 when a bound is missed.
    Wan(WanArgs),
}

#[derive(Debug, Args)]
struct IntercloudArgs {
    /// Seconds per iperf3 test.
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// Seconds of each test left out at its start (slow start).
    #[arg(long, default_value_t = 1)]
    omit: u32,
    /// Rounds of an Iris test and a plain one, each over the WAN relay
    /// and then with a bridge in its place.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    #[command(flatten)]
    common: DataplaneArgs,
}

#[derive(Debug, Args)]
struct WanArgs {
    /// One-way delays in ms (0 is always measured, as the baseline).
    #[arg(long, value_delimiter = ',', default_value = "0,10,50,100")]
    delays: Vec<u64>,
    /// Echo requests per delay.
    #[arg(long, default_value_t = 20)]
    pings: u32,
    /// Milliseconds between two echo requests.
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
    /// Seconds per iperf3 test (0: no goodput).
    #[arg(long, default_value_t = 5)]
    seconds: u32,
    /// Relay and bridge tests each, alternating.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Print one JSON object with the figures instead of text.
    #[arg(long)]
    json: bool,
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
struct MigrationArgs {
    /// The overlay to compare with, set up by the benchmark itself
    /// [default: Iris alone].
    #[arg(long, value_enum)]
    peer: Option<bench::migration::Peer>,
    /// Migrations per system.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// The iris-controller binary; by default the one beside this program.
    #[arg(long)]
    controller: Option<PathBuf>,
    /// Print one JSON object with the figures instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum ScaleCommand {
    /// Seeds a registry through the API in steps and reads the
    /// controller's VmRSS/VmHWM and every switch's flow count at each.
    Registry {
        /// Registry sizes (MACs, one IP each), ascending.
        #[arg(long, value_delimiter = ',', default_value = "1000,10000,30000,100000")]
        sizes: Vec<u32>,
        /// Configure the hosts but start no switch: the registry alone.
        #[arg(long)]
        without_switches: bool,
        /// Seed rows per request (the API takes bodies up to 2 MiB).
        #[arg(long, default_value_t = 5000)]
        chunk: u32,
        #[command(flatten)]
        common: ScaleCommon,
    },
    /// Kill -9 and restart the controller with MACs on real OVS switches;
    /// time until every switch is reconciled, and what was deleted.
    Restart {
        /// Testbed PMs (each a real ovs-vswitchd), the gateway included.
        #[arg(long, default_value_t = 16)]
        pms: usize,
        #[arg(long, default_value_t = 10_000)]
        macs: u32,
        #[arg(long, default_value_t = 5000)]
        chunk: u32,
        /// Who opens the OpenFlow connections: the bridges (active) or,
        /// with the bridges listening, the controller (passive).
        #[arg(long, value_enum, default_value_t = iris_testbed::controller::OpenFlowMode::Active)]
        openflow: iris_testbed::controller::OpenFlowMode,
        #[command(flatten)]
        common: ScaleCommon,
    },
    /// Emulated switches connect to the controller at once: handshake and
    /// dump times, memory per switch.
    Switches {
        #[arg(long, default_value_t = 1000)]
        switches: u32,
        /// Whether the controller's configuration has a host for each dpid.
        #[arg(long, value_enum, default_value_t = bench::scale::switches::Dpids::Unknown)]
        dpids: bench::scale::switches::Dpids,
        /// Ports each switch reports.
        #[arg(long, default_value_t = 4)]
        ports: u16,
        /// Keep the run directory (the controller's configuration and log).
        #[arg(long)]
        keep: bool,
        #[command(flatten)]
        common: ScaleCommon,
    },
}

#[derive(Debug, Args)]
struct ScaleCommon {
    /// The iris-controller binary [default: $IRIS_CONTROLLER, next to
    /// iris-testbed, or on PATH].
    #[arg(long)]
    iris_controller: Option<PathBuf>,
    /// Print one JSON object with the figures instead of text.
    #[arg(long)]
    json: bool,
}

/// What every data-plane benchmark takes besides its own parameters.
#[derive(Debug, Args)]
struct DataplaneArgs {
    /// The iris-controller binary; by default the one beside this program.
    #[arg(long)]
    controller: Option<PathBuf>,
    /// Print one JSON object with the figures instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct GoodputArgs {
    /// Seconds each iperf3 test measures.
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// Seconds of TCP slow start iperf3 leaves out of each test.
    #[arg(long, default_value_t = 1)]
    omit: u32,
    /// Run OVS with other_config:userspace-tso-enable=true and the VM links'
    /// offloads (sg, tx, tso, gso) on.
    #[arg(long)]
    tso: bool,
    #[command(flatten)]
    common: DataplaneArgs,
}

#[derive(Debug, Args)]
struct ArpArgs {
    /// Measured requests per setup.
    #[arg(long, default_value_t = 1000)]
    requests: u32,
    /// Unmeasured requests per setup before the measurement.
    #[arg(long, default_value_t = 100)]
    warmup: u32,
    /// Blocks the requests are split into, the setups alternating.
    #[arg(long, default_value_t = 10)]
    blocks: u32,
    /// Microseconds between an answer and the next request.
    #[arg(long, default_value_t = 1000)]
    pause_us: u64,
    /// Milliseconds a request waits for its answer.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    #[command(flatten)]
    common: DataplaneArgs,
}

/// Runs one data-plane benchmark on a fresh testbed, torn down whatever
/// happens, and prints its report as text or JSON.
fn bench_dataplane<R: serde::Serialize + std::fmt::Display>(
    name: &'static str,
    common: DataplaneArgs,
    config: Config,
    body: impl FnOnce(&mut Harness) -> Result<R, ScenarioError>,
) -> ExitCode {
    let Some(options) = scenarios::options(common.controller.as_deref(), config) else {
        return ExitCode::from(2);
    };
    let (outcome, report) = scenario::run_measured(name, &options, body);
    match (report, outcome.reason) {
        (Some(report), None) => {
            if common.json {
                match serde_json::to_string(&report) {
                    Ok(j) => println!("{j}"),
                    Err(e) => {
                        eprintln!("bench {name}: cannot write the report as JSON: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                println!("{report}");
            }
            ExitCode::SUCCESS
        }
        (_, reason) => {
            eprintln!(
                "bench {name} failed: {}",
                reason.as_deref().unwrap_or("no report")
            );
            if let Some(logs) = outcome.logs {
                eprintln!("logs kept in {}", logs.display());
            }
            ExitCode::FAILURE
        }
    }
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
                ScenarioError::Testbed(iris_testbed::Error::Usage(_)) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn bench_migration(a: MigrationArgs, config: Config) -> ExitCode {
    let Some(scenario) = scenarios::options(a.controller.as_deref(), config) else {
        return ExitCode::from(2);
    };
    let options = bench::migration::Options {
        rounds: a.rounds,
        peer: a.peer,
        scenario,
    };
    match bench::migration::run(&options) {
        Ok(report) => print_report("migration", &report, a.json),
        Err(e) => {
            eprintln!("bench migration: {e}");
            match e {
                ScenarioError::Testbed(iris_testbed::Error::Usage(_)) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn bench_wan(a: WanArgs, config: Config) -> ExitCode {
    let o = wan::bench::Options {
        delays_ms: a.delays,
        pings: a.pings,
        ping_interval: Duration::from_millis(a.interval_ms),
        seconds: a.seconds,
        rounds: a.rounds,
    };
    match wan::bench::measure(&o, config) {
        Ok(report) => {
            let printed = print_report("wan", &report, a.json);
            if printed == ExitCode::SUCCESS && !report.passed() {
                eprintln!("bench wan: a bound was missed (see the report)");
                return ExitCode::FAILURE;
            }
            printed
        }
        Err(e) => {
            eprintln!("bench wan failed: {e}");
            ExitCode::FAILURE
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
        Command::Bench(BenchCommand::Scale(c)) => bench_scale(c, config),
        Command::Bench(BenchCommand::Moves(args)) => bench_moves(args, config),
        Command::Bench(BenchCommand::Migration(a)) => bench_migration(a, config),
        Command::Bench(BenchCommand::Wan(a)) => bench_wan(a, config),
        Command::Bench(BenchCommand::Goodput(a)) => {
            let o = goodput::Options {
                seconds: a.seconds,
                omit: a.omit,
                tso: a.tso,
            };
            bench_dataplane("goodput", a.common, config, |h| goodput::measure(h, o))
        }
        Command::Bench(BenchCommand::Intercloud(a)) => {
            let o = intercloud::Options {
                seconds: a.seconds,
                omit: a.omit,
                rounds: a.rounds,
            };
            bench_dataplane("intercloud", a.common, config, |h| {
                intercloud::measure(h, o)
            })
        }
        Command::Bench(BenchCommand::Arp(a)) => {
            let o = arp::Options {
                requests: a.requests,
                warmup: a.warmup,
                blocks: a.blocks,
                pause: Duration::from_micros(a.pause_us),
                timeout: Duration::from_millis(a.timeout_ms),
            };
            bench_dataplane("arp", a.common, config, |h| arp::measure(h, o))
        }
        Command::Demo {
            openflow_only: true,
            ..
        } => interop_demo::run(config),
        Command::Demo {
            controller,
            controller_only,
            ..
        } => match scenarios::options(controller.as_deref(), config) {
            Some(options) if controller_only => demo::run(&options),
            Some(options) => demo::run_service(&options),
            None => ExitCode::from(2),
        },
        Command::Experiment(ExperimentCommand::Wan(a)) => {
            match scenarios::options(a.controller.as_deref(), config) {
                Some(options) => iris_testbed::experiment::run_wan(
                    &options,
                    &iris_testbed::experiment::WanOptions {
                        delays_ms: a.delays,
                        pings: a.pings,
                        interval: Duration::from_millis(a.interval_ms),
                        out: a.out,
                    },
                ),
                None => ExitCode::from(2),
            }
        }
        Command::Experiment(ExperimentCommand::QemuMigration(a)) => {
            match scenarios::options(a.controller.as_deref(), config) {
                Some(options) => iris_testbed::migration_experiment::run(
                    &options,
                    &iris_testbed::migration_experiment::MigrationOptions {
                        delays_ms: a.delays,
                        out: a.out,
                    },
                ),
                None => ExitCode::from(2),
            }
        }
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

/// Prints a report as text, or as one JSON object with `json`.
fn print_report<R: serde::Serialize + std::fmt::Display>(
    what: &str,
    r: &R,
    json: bool,
) -> ExitCode {
    if !json {
        println!("{r}");
        return ExitCode::SUCCESS;
    }
    match serde_json::to_string(r) {
        Ok(j) => {
            println!("{j}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench scale {what}: cannot write the report as JSON: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a measurement on a testbed harness the way scenarios run; exit 1
/// (with the reason and where the logs were kept) when it fails.
fn scale_on_testbed<R: serde::Serialize + std::fmt::Display>(
    what: &'static str,
    common: &ScaleCommon,
    config: Config,
    body: impl FnOnce(&mut Harness) -> Result<R, ScenarioError>,
) -> ExitCode {
    let Some(options) = scenarios::options(common.iris_controller.as_deref(), config) else {
        return ExitCode::from(2);
    };
    let (outcome, report) = scenario::run_measured(what, &options, body);
    match report {
        Some(r) => print_report(what, &r, common.json),
        None => {
            eprintln!(
                "bench scale {what}: {}",
                outcome.reason.as_deref().unwrap_or("failed")
            );
            if let Some(logs) = &outcome.logs {
                eprintln!("   logs kept in {}", logs.display());
            }
            ExitCode::FAILURE
        }
    }
}

fn bench_scale(command: ScaleCommand, config: Config) -> ExitCode {
    use bench::scale::{registry, restart, switches};
    match command {
        ScaleCommand::Registry {
            sizes,
            without_switches,
            chunk,
            common,
        } => {
            let o = registry::Options {
                sizes,
                switches: !without_switches,
                chunk,
            };
            if let Err(e) = registry::check(&o) {
                eprintln!("bench scale registry: {e}");
                return ExitCode::from(2);
            }
            scale_on_testbed("scale-registry", &common, config, |h| {
                registry::measure(h, &o)
            })
        }
        ScaleCommand::Restart {
            pms,
            macs,
            chunk,
            openflow,
            common,
        } => {
            let o = restart::Options {
                pms,
                macs,
                chunk,
                openflow,
            };
            if let Err(e) = restart::check(&o) {
                eprintln!("bench scale restart: {e}");
                return ExitCode::from(2);
            }
            scale_on_testbed("scale-restart", &common, config, |h| {
                restart::measure(h, &o)
            })
        }
        ScaleCommand::Switches {
            switches: n,
            dpids,
            ports,
            keep,
            common,
        } => {
            let o = switches::Options {
                switches: n,
                dpids,
                ports,
                iris_controller: common.iris_controller.clone(),
                keep,
            };
            match switches::run(&o) {
                Ok(r) => print_report("switches", &r, common.json),
                Err(e) => {
                    eprintln!("bench scale switches: {e}");
                    match e {
                        bench::BenchError::Usage(_) => ExitCode::from(2),
                        _ => ExitCode::FAILURE,
                    }
                }
            }
        }
    }
}
