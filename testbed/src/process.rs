//! A program the testbed started and must stop: an OVS daemon, or anything a
//! scenario runs inside a namespace.
//!
//! Daemons run in the foreground as direct children (never `--detach`ed), so
//! the testbed can see them exit, reap them, and stop them by pid without
//! trusting pidfiles.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::command::describe;
use crate::error::{Error, Result};
use crate::state::process_start_time;

/// How long a process has to exit after SIGTERM before it gets SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// A running child process, stopped (SIGTERM, then SIGKILL) and reaped when
/// dropped.
#[derive(Debug)]
pub struct Process {
    name: String,
    command_line: String,
    child: Child,
    output: Option<PathBuf>,
    exit: Option<ExitStatus>,
}

impl Process {
    /// Starts `command` with stdin closed. Its stdout and stderr go to
    /// `output` (appended) when given, else nowhere.
    pub fn spawn(
        name: impl Into<String>,
        mut command: Command,
        output: Option<&Path>,
    ) -> Result<Self> {
        let command_line = describe(&command);
        command.stdin(Stdio::null());
        match output {
            Some(path) => {
                let file = open_append(path)?;
                let copy = file
                    .try_clone()
                    .map_err(|e| Error::io_at("duplicating the handle of", path, e))?;
                command.stdout(file).stderr(copy);
            }
            None => {
                command.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        let child = command
            .spawn()
            .map_err(|e| Error::io(format!("cannot start `{command_line}`"), e))?;
        Ok(Self {
            name: name.into(),
            command_line,
            child,
            output: output.map(Path::to_path_buf),
            exit: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The file receiving the process's stdout and stderr, if any.
    pub fn output_path(&self) -> Option<&Path> {
        self.output.as_deref()
    }

    /// The exit status if the process has exited (it is reaped then).
    pub fn try_exit_status(&mut self) -> Result<Option<ExitStatus>> {
        if self.exit.is_none() {
            self.exit = self
                .child
                .try_wait()
                .map_err(|e| Error::io(format!("waiting for {}", self.name), e))?;
        }
        Ok(self.exit)
    }

    /// An error unless the process is still running: used while waiting for a
    /// daemon, so that one which died is reported at once with its output.
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.try_exit_status()? {
            None => Ok(()),
            Some(status) => Err(Error::NotReady {
                what: self.name.clone(),
                waited: Duration::ZERO,
                detail: format!(
                    "`{}` exited ({status}){}",
                    self.command_line,
                    self.output
                        .as_deref()
                        .map(|p| format!("; its output ends with:\n{}", tail_of(p, 20)))
                        .unwrap_or_default()
                ),
            }),
        }
    }

    /// Sends `signal` to the process unless it already exited.
    pub fn signal(&mut self, signal: Signal) -> Result<()> {
        if self.try_exit_status()?.is_some() {
            return Ok(());
        }
        send_signal(self.pid(), signal)
    }

    /// Stops the process: SIGTERM, up to `grace` to exit, then SIGKILL.
    /// Returns how it exited. Stopping a stopped process is a no-op.
    pub fn stop(&mut self, grace: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.try_exit_status()? {
            return Ok(status);
        }
        self.signal(Signal::SIGTERM)?;
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.try_exit_status()? {
                return Ok(status);
            }
            thread::sleep(Duration::from_millis(10));
        }
        self.signal(Signal::SIGKILL)?;
        let status = self
            .child
            .wait()
            .map_err(|e| Error::io(format!("waiting for {}", self.name), e))?;
        self.exit = Some(status);
        Ok(status)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Err(e) = self.stop(STOP_GRACE) {
            eprintln!("iris-testbed: cannot stop {}: {e}", self.name);
        }
    }
}

/// Sends `signal` to `pid`; a process that is already gone is fine.
fn send_signal(pid: u32, signal: Signal) -> Result<()> {
    let raw = i32::try_from(pid).map_err(|_| Error::Usage(format!("pid {pid} out of range")))?;
    match kill(Pid::from_raw(raw), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(Error::io(
            format!("sending {signal} to pid {pid}"),
            e.into(),
        )),
    }
}

/// Stops processes that are not (or not necessarily) this process's children,
/// e.g. whatever is left in a namespace: SIGTERM to all, up to `grace` for them
/// to exit, then SIGKILL to the rest. A pid that is already gone is fine.
pub(crate) fn terminate_pids(pids: &[u32], grace: Duration) -> Result<()> {
    let running = |pid: &&u32| matches!(process_start_time(**pid), Ok(Some(_)));
    for pid in pids {
        send_signal(*pid, Signal::SIGTERM)?;
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && pids.iter().any(|pid| running(&pid)) {
        thread::sleep(Duration::from_millis(10));
    }
    for pid in pids.iter().filter(running) {
        send_signal(*pid, Signal::SIGKILL)?;
    }
    Ok(())
}

fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io_at("opening", path, e))
}

/// The last `lines` lines of a text file, for error messages; a note instead
/// when it cannot be read.
pub(crate) fn tail_of(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("({} unreadable: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_terminates_and_reaps() {
        let mut p =
            Process::spawn("sleeper", crate::command::program("sleep", &["30"]), None).unwrap();
        assert!(p.try_exit_status().unwrap().is_none());
        p.ensure_running().unwrap();
        let status = p.stop(STOP_GRACE).unwrap();
        assert!(!status.success());
        assert!(p.ensure_running().is_err());
        // Idempotent.
        assert_eq!(p.stop(STOP_GRACE).unwrap(), status);
    }

    #[test]
    fn an_exited_process_reports_its_output() {
        let dir = std::env::temp_dir().join(format!("iris-testbed-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("p.stderr");
        let mut p = Process::spawn(
            "failing",
            crate::command::program("sh", &["-c", "echo first; echo 'bad things' >&2; exit 3"]),
            Some(&out),
        )
        .unwrap();
        let status = loop {
            if let Some(s) = p.try_exit_status().unwrap() {
                break s;
            }
            thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(status.code(), Some(3));
        let err = p.ensure_running().unwrap_err().to_string();
        assert!(err.contains("bad things"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
