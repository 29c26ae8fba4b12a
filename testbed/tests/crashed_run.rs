//! A run killed with SIGKILL cannot tear down: its namespaces, root-namespace
//! links, OVS daemons and state directory stay behind. `cleanup_stale` finds
//! them by prefix and removes them. The test runs its own binary as the run
//! that gets killed. Needs root and Open vSwitch.

#![allow(clippy::unwrap_used)]

mod topology;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use iris_testbed::stale::leftovers;
use iris_testbed::{cleanup_stale, FailMode, Inventory, Prefix, DEFAULT_STATE_ROOT};

/// Argument that makes this binary play the run that gets killed.
const VICTIM: &str = "--be-the-killed-run";

fn main() {
    if std::env::args().any(|arg| arg == VICTIM) {
        victim();
    }
    print!("test a_killed_run_is_cleaned_up_by_prefix ... ");
    a_killed_run_is_cleaned_up_by_prefix();
    println!("ok");
}

/// Builds a testbed, prints its inventory, and waits to be killed.
fn victim() -> ! {
    let mut t = topology::two_pms("crashed-run", FailMode::Standalone);
    t.add_managed_pm("pm3", "198.18.201.0/30");
    let vm = t.vm("vm1", 1, t.pm1);
    t.tb.spawn(vm, "sleeper", &["sleep", "600"]).unwrap();
    let inv = t.tb.inventory();
    let mut out = std::io::stdout().lock();
    writeln!(out, "prefix {}", inv.prefix).unwrap();
    writeln!(out, "dir {}", inv.state_dir.display()).unwrap();
    for ns in &inv.namespaces {
        writeln!(out, "ns {ns}").unwrap();
    }
    for pid in &inv.pids {
        writeln!(out, "pid {pid}").unwrap();
    }
    for link in &inv.root_links {
        writeln!(out, "link {link}").unwrap();
    }
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    drop(out);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn a_killed_run_is_cleaned_up_by_prefix() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg(VICTIM)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let done = line == "ready";
            tx.send(line).unwrap();
            if done {
                break;
            }
        }
    });
    let mut inventory = Inventory {
        prefix: Prefix::parse("ir000").unwrap(),
        state_dir: PathBuf::new(),
        namespaces: Vec::new(),
        pids: Vec::new(),
        root_links: Vec::new(),
    };
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("the killed run never got ready: {e}"));
        let (key, value) = line.split_once(' ').unwrap_or((&line, ""));
        match key {
            "prefix" => inventory.prefix = Prefix::parse(value).unwrap(),
            "dir" => inventory.state_dir = PathBuf::from(value),
            "ns" => inventory.namespaces.push(value.to_owned()),
            "pid" => inventory.pids.push(value.parse().unwrap()),
            "link" => inventory.root_links.push(value.to_owned()),
            "ready" => break,
            other => panic!("unexpected line from the killed run: {other}"),
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let left = leftovers(&inventory).unwrap();
    let count = |kind: &str| left.iter().filter(|l| l.starts_with(kind)).count();
    assert_eq!(count("namespace"), 5, "{left:?}");
    assert_eq!(count("process"), 3 * 2 + 1, "{left:?}");
    assert_eq!(count("root-namespace link"), 1, "{left:?}");
    assert_eq!(count("state directory"), 1, "{left:?}");

    let report = cleanup_stale(Path::new(DEFAULT_STATE_ROOT)).unwrap();
    assert!(report.removed.contains(&inventory.prefix), "{report}");
    assert_eq!(leftovers(&inventory).unwrap(), Vec::<String>::new());
}
