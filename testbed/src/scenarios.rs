//! `iris-testbed scenario NAME|all`: runs scenarios from the library and
//! prints their outcomes as JSON.

use std::path::Path;
use std::process::ExitCode;

use iris_testbed::scenario::{self, Options, Outcome, ALL, BY_NAME_ONLY};
use iris_testbed::{controller, host, Config};

/// Runs one scenario, or all in order (every one runs even after a
/// failure, so one run shows every problem). Exit 0 when all passed, 1 when
/// one failed, 2 when none could start.
pub fn run(name: &str, controller: Option<&Path>, config: Config) -> ExitCode {
    let chosen: Vec<_> = if name == "all" {
        ALL.iter().collect()
    } else {
        match scenario::find(name) {
            Some(s) => vec![s],
            None => {
                let names: Vec<&str> = ALL.iter().chain(BY_NAME_ONLY).map(|s| s.name).collect();
                eprintln!(
                    "no scenario {name:?}; choose one of {} or all",
                    names.join(", ")
                );
                return ExitCode::from(2);
            }
        }
    };
    let options = match options(controller, config) {
        Some(o) => o,
        None => return ExitCode::from(2),
    };
    let outcomes: Vec<Outcome> = chosen
        .iter()
        .map(|s| {
            eprintln!("== scenario {}: {}", s.name, s.proves);
            let outcome = scenario::run(s, &options);
            match &outcome.reason {
                None => eprintln!("== {} passed in {:.1} s", s.name, outcome.seconds),
                Some(why) => eprintln!("== {} FAILED: {why}", s.name),
            }
            if let Some(logs) = &outcome.logs {
                eprintln!("   logs kept in {}", logs.display());
            }
            outcome
        })
        .collect();
    let passed = outcomes.iter().all(|o| o.passed);
    let json = if name == "all" {
        serde_json::json!({ "passed": passed, "scenarios": outcomes })
    } else {
        serde_json::json!(outcomes[0])
    };
    match serde_json::to_string_pretty(&json) {
        Ok(text) => println!("{text}"),
        Err(e) => {
            eprintln!("cannot print the summary: {e}");
            return ExitCode::FAILURE;
        }
    }
    if passed {
        ExitCode::SUCCESS
    } else {
        if name == "all" {
            let failed: Vec<&str> = outcomes
                .iter()
                .filter(|o| !o.passed)
                .map(|o| o.scenario)
                .collect();
            eprintln!("failed: {}", failed.join(", "));
        }
        ExitCode::FAILURE
    }
}

/// What every scenario needs, or `None` (the reason printed) when this
/// host cannot run them: not root, or no controller binary.
pub fn options(controller: Option<&Path>, config: Config) -> Option<Options> {
    if !host::is_root() {
        eprintln!("scenarios need root; {}", iris_testbed::INSTALL_ADVICE);
        return None;
    }
    match controller::locate_binary(controller) {
        Ok(binary) => Some(Options {
            controller: binary,
            gateway: None,
            testbed: config,
        }),
        Err(e) => {
            eprintln!("{e}");
            None
        }
    }
}
