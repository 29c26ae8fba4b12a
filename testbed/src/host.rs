//! Whether this host can run testbeds: the cheap checks every testbed makes
//! before it creates anything, and the thorough ones behind
//! `iris-testbed check`.

use std::env;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{Error, Result, INSTALL_ADVICE};
use crate::ovs::VSWITCH_SCHEMA;

/// Programs the testbed runs, each with the Debian package providing it.
pub const REQUIRED_PROGRAMS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("ethtool", "ethtool"),
    ("ping", "iputils-ping"),
    ("sysctl", "procps"),
    ("ovsdb-tool", "openvswitch-common"),
    ("ovsdb-server", "openvswitch-switch"),
    ("ovs-vswitchd", "openvswitch-switch"),
    ("ovs-vsctl", "openvswitch-switch"),
    ("ovs-ofctl", "openvswitch-common"),
    ("ovs-appctl", "openvswitch-common"),
];

/// Whether this process runs as root (namespaces, veths and OVS need it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Where `program` is found on `PATH`, as the testbed will run it.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

/// Directories that hold the OVS daemons and network tools on Debian but are
/// often missing from a non-root `PATH`.
const SBIN_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/local/sbin"];

/// Why `program` is not usable, with a hint when it exists off `PATH`.
fn missing_program(program: &str, package: &str) -> String {
    match SBIN_DIRS
        .iter()
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| is_executable(candidate))
    {
        Some(found) => format!(
            "{program} is at {} but its directory is not on PATH",
            found.display()
        ),
        None => format!("{program} is not on PATH (package {package})"),
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The checks a testbed makes before creating anything: root, every
/// required program on `PATH`, and the OVS schema. The error names every
/// problem found, not only the first.
pub fn require_host() -> Result<()> {
    let mut problems = Vec::new();
    if !is_root() {
        problems.push("not running as root".to_owned());
    }
    problems.extend(
        REQUIRED_PROGRAMS
            .iter()
            .filter(|(program, _)| find_program(program).is_none())
            .map(|(program, package)| missing_program(program, package)),
    );
    if !Path::new(VSWITCH_SCHEMA).is_file() {
        problems.push(format!(
            "{VSWITCH_SCHEMA} is missing (package openvswitch-common)"
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Host {
            problem: problems.join("; "),
        })
    }
}

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// Worth knowing, but the testbed works.
    Note,
    Fail,
}

/// One line of `iris-testbed check`'s report.
#[derive(Debug, Clone)]
pub struct Finding {
    pub what: String,
    pub outcome: Outcome,
    pub detail: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.outcome {
            Outcome::Pass => "ok  ",
            Outcome::Note => "note",
            Outcome::Fail => "FAIL",
        };
        write!(f, "[{tag}] {}: {}", self.what, self.detail)
    }
}

/// The full report of `iris-testbed check`.
#[derive(Debug, Clone)]
pub struct HostReport {
    pub findings: Vec<Finding>,
}

impl HostReport {
    pub fn passed(&self) -> bool {
        self.findings.iter().all(|f| f.outcome != Outcome::Fail)
    }

    /// What to do when a check failed.
    pub fn advice(&self) -> Option<&'static str> {
        (!self.passed()).then_some(INSTALL_ADVICE)
    }

    fn push(&mut self, what: &str, outcome: Outcome, detail: impl Into<String>) {
        self.findings.push(Finding {
            what: what.to_owned(),
            outcome,
            detail: detail.into(),
        });
    }
}

/// Checks everything a testbed needs, ending by bringing up and tearing down
/// a throwaway testbed with one underlay and one PM under `config`.
pub fn check(config: &crate::Config) -> HostReport {
    let mut report = HostReport {
        findings: Vec::new(),
    };
    if is_root() {
        report.push("root", Outcome::Pass, "running as root");
    } else {
        report.push("root", Outcome::Fail, "not running as root");
    }
    for (program, package) in REQUIRED_PROGRAMS {
        match find_program(program) {
            Some(path) => report.push(program, Outcome::Pass, path.display().to_string()),
            None => report.push(
                program,
                Outcome::Fail,
                format!("not on PATH (package {package})"),
            ),
        }
    }
    if Path::new(VSWITCH_SCHEMA).is_file() {
        report.push("OVS schema", Outcome::Pass, VSWITCH_SCHEMA);
    } else {
        report.push(
            "OVS schema",
            Outcome::Fail,
            format!("{VSWITCH_SCHEMA} is missing"),
        );
    }
    if let Some(version) = first_line_of("ovs-vswitchd", &["--version"]) {
        report.push("OVS version", Outcome::Pass, version);
    }
    if Path::new("/sys/module/openvswitch").exists() {
        report.push(
            "openvswitch kernel module",
            Outcome::Note,
            "loaded; the testbed still uses the userspace datapath so that it runs the same everywhere",
        );
    } else {
        report.push(
            "openvswitch kernel module",
            Outcome::Note,
            "absent; fine, the testbed uses the userspace datapath (datapath_type=netdev)",
        );
    }
    if !report.passed() {
        return report;
    }
    check_live_testbed(config, &mut report);
    report
}

fn check_live_testbed(config: &crate::Config, report: &mut HostReport) {
    use crate::{PmSpec, Testbed, UnderlaySpec};

    let start = Instant::now();
    let outcome = (|| -> Result<(String, crate::Inventory)> {
        let mut tb = Testbed::with_config("iris-testbed check", config.clone())?;
        let subnet = "10.255.0.0/24".parse()?;
        let underlay = tb.add_underlay(UnderlaySpec::new("dc", subnet))?;
        let pm = tb.add_pm(PmSpec::new("pm", underlay))?;
        let bridges = tb.pm(pm).vsctl(&["list-br"])?;
        let detail = format!(
            "namespaces, veths, a Linux bridge and an OVS instance with netdev bridges ({}) came up in {} ms",
            bridges.split_whitespace().collect::<Vec<_>>().join(", "),
            start.elapsed().as_millis()
        );
        let inventory = tb.inventory();
        tb.teardown()?;
        Ok((detail, inventory))
    })();
    match outcome {
        Ok((detail, inventory)) => {
            report.push("throwaway testbed", Outcome::Pass, detail);
            match crate::stale::leftovers(&inventory) {
                Ok(left) if left.is_empty() => {
                    report.push("teardown", Outcome::Pass, "nothing left behind")
                }
                Ok(left) => report.push(
                    "teardown",
                    Outcome::Fail,
                    format!("left behind: {}", left.join(", ")),
                ),
                Err(e) => report.push("teardown", Outcome::Fail, e.to_string()),
            }
        }
        Err(e) => report.push("throwaway testbed", Outcome::Fail, e.to_string()),
    }
}

/// The first line a program prints, if it runs.
fn first_line_of(program: &str, args: &[&str]) -> Option<String> {
    let out = crate::command::run(&mut crate::command::program(program, args)).ok()?;
    out.lines().next().map(str::to_owned)
}
