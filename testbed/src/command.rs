//! Running the host's networking tools (`ip`, `ethtool`, `ovs-*`) and turning
//! their failures into errors that quote the command line and its stderr.

use std::ffi::OsStr;
use std::process::{Command, Output, Stdio};

use crate::error::{Error, Result};

/// The command line of `command`, for messages.
pub(crate) fn describe(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Runs `command` to completion and returns its output whatever the exit status.
/// Only a failure to start it is an error. The tools speak English to us
/// (`LC_ALL=C`) because some of their output is parsed.
pub(crate) fn output(command: &mut Command) -> Result<Output> {
    command
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io(format!("cannot run `{}`", describe(command)), e))
}

/// Runs `command` to completion; a non-zero exit is an error carrying stderr.
/// Returns stdout.
pub(crate) fn run(command: &mut Command) -> Result<String> {
    let out = output(command)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(failure(command, &out))
    }
}

/// The error for a command that ran and exited unsuccessfully.
pub(crate) fn failure(command: &Command, out: &Output) -> Error {
    Error::Command {
        command: describe(command),
        status: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `command` for its side effect, treating a failure whose stderr contains
/// one of `gone` as success: deleting something already deleted is fine.
pub(crate) fn run_unless_gone(command: &mut Command, gone: &[&str]) -> Result<()> {
    let out = output(command)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || gone.iter().any(|marker| stderr.contains(marker)) {
        Ok(())
    } else {
        Err(failure(command, &out))
    }
}

/// `program args…` as a [`Command`].
pub(crate) fn program<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Command {
    let mut command = Command::new(program);
    command.args(args);
    command
}
