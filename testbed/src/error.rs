//! Testbed errors, split by who has to act: the operator of the host, the caller
//! of this library, or a component (a command or daemon) that misbehaved.

use std::fmt;
use std::io;
use std::time::Duration;

/// What the operator should do when the host itself cannot run the testbed.
pub const INSTALL_ADVICE: &str =
    "run scripts/install-deps.sh as root, then run the testbed as root (e.g. under sudo)";

/// Everything that can go wrong while building, driving or tearing down a testbed.
#[derive(Debug)]
pub enum Error {
    /// The host cannot run the testbed: not root, a program or file is missing.
    /// The operator fixes this; see [`INSTALL_ADVICE`].
    Host { problem: String },
    /// The caller asked for something that cannot exist: an invalid or duplicate
    /// name, an address outside its subnet, an id from another testbed.
    Usage(String),
    /// An external command ran and failed.
    Command {
        command: String,
        status: Option<i32>,
        stderr: String,
    },
    /// A command printed something this library does not understand.
    UnexpectedOutput {
        command: String,
        reason: String,
        output: String,
    },
    /// A daemon did not become ready in time, or exited while starting.
    NotReady {
        what: String,
        waited: Duration,
        detail: String,
    },
    /// I/O on the testbed's own files, or spawning a program.
    Io { context: String, source: io::Error },
    /// Tearing down left something behind; each entry is one failed step.
    Teardown(Vec<Error>),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn io_at(action: &str, path: &std::path::Path, source: io::Error) -> Self {
        Self::io(format!("{action} {}", path.display()), source)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Host { problem } => write!(
                f,
                "this host cannot run the testbed: {problem}; {INSTALL_ADVICE}"
            ),
            Self::Usage(msg) => write!(f, "invalid testbed request: {msg}"),
            Self::Command {
                command,
                status,
                stderr,
            } => {
                match status {
                    Some(code) => write!(f, "`{command}` exited with status {code}")?,
                    None => write!(f, "`{command}` was killed by a signal")?,
                }
                let stderr = stderr.trim();
                if !stderr.is_empty() {
                    write!(f, ": {stderr}")?;
                }
                Ok(())
            }
            Self::UnexpectedOutput {
                command,
                reason,
                output,
            } => write!(
                f,
                "cannot read the output of `{command}` ({reason}): {output:?}"
            ),
            Self::NotReady {
                what,
                waited,
                detail,
            } => write!(
                f,
                "{what} was not ready after {:.1}s: {detail}",
                waited.as_secs_f64()
            ),
            Self::Io { context, source } => write!(f, "{context}: {source}"),
            Self::Teardown(failures) => {
                write!(f, "teardown left {} step(s) failed", failures.len())?;
                for failure in failures {
                    write!(f, "\n  - {failure}")?;
                }
                write!(
                    f,
                    "\nrun `iris-testbed cleanup-stale` to remove what is left"
                )
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
