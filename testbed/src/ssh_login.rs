//! Logging into a node over SSH as an operator would, from a namespace on
//! its VI: a key pair made for the run, and `ssh` with nothing of the
//! machine's own (no configuration, agent or known hosts) and no prompt.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::error::{Error, Result};

/// Makes a fresh ed25519 key pair at `path` (and `path.pub`) and returns
/// the public key line.
pub fn keygen(path: &Path) -> Result<String> {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "operator@iaas", "-f"])
        .arg(path)
        .output()
        .map_err(|e| Error::io("running ssh-keygen", e))?;
    if !out.status.success() {
        return Err(Error::Host {
            problem: format!(
                "ssh-keygen -f {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    let public = path.with_extension("pub");
    Ok(std::fs::read_to_string(&public)
        .map_err(|e| Error::io_at("reading", &public, e))?
        .trim()
        .to_owned())
}

/// Runs `ssh -i key [extra] user@addr command` inside namespace `ns`.
pub fn ssh(
    ns: &str,
    key: &Path,
    extra: &[&str],
    user: &str,
    addr: &str,
    command: &str,
) -> Result<Output> {
    Command::new("ip")
        .args(["netns", "exec", ns, "ssh", "-F", "/dev/null", "-i"])
        .arg(key)
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
        ])
        .args(extra)
        .arg(format!("{user}@{addr}"))
        .arg(command)
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io("running ssh", e))
}

/// `ssh` options that offer the server a password (or keyboard-interactive
/// answers) instead of a key: a server that takes keys alone answers
/// `Permission denied (publickey).`
pub const PASSWORD_ONLY: &[&str] = &[
    "-o",
    "PubkeyAuthentication=no",
    "-o",
    "PreferredAuthentications=password,keyboard-interactive",
];
