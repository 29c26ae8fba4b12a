//! The SSH server of a `netns` node: OpenSSH's `sshd`, one per node, run
//! inside the node's namespace so that it listens on the node's address on
//! the VI and nowhere else, and lets in the node's SSH user with the VI's
//! key and nothing else.
//!
//! Everything of it lives in a directory named after the node's namespace
//! (its config, host key, authorized key, PID file and log), so that
//! [`stop`] finds it again after a crash of the broker.

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::process::Command;
use tokio::sync::Mutex;

use super::run;

/// The user the operator logs in as, on every node.
pub const USER: &str = "iris";
/// Where each node's sshd files live, one directory per node namespace.
pub const FILES_DIR: &str = "/run/iris/nodes";
/// sshd re-executes itself, which needs its absolute path.
const SSHD: &str = "/usr/sbin/sshd";
/// sshd's privilege-separation directory, which Debian's service unit
/// makes; without the unit, it is made here.
const PRIVSEP_DIR: &str = "/run/sshd";
/// How long sshd may take to bind its address and write its PID file.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// One `useradd` at a time: nodes are made in parallel.
static USER_LOCK: Mutex<()> = Mutex::const_new(());

/// The directory of the sshd of the node in namespace `ns`.
pub fn dir(ns: &str) -> PathBuf {
    Path::new(FILES_DIR).join(ns)
}

fn pid_file(ns: &str) -> PathBuf {
    dir(ns).join("sshd.pid")
}

/// Makes the node's SSH user on the PM when it has none: a system user
/// with a shell, and `*` as its password (no password opens it, and, unlike
/// `!`, sshd does not take it for a locked account).
async fn ensure_user() -> Result<(), String> {
    let _one = USER_LOCK.lock().await;
    if run(Command::new("getent").args(["passwd", USER]), "getent")
        .await
        .is_ok()
    {
        return Ok(());
    }
    run(
        Command::new("useradd").args([
            "--system",
            "--user-group",
            "--create-home",
            "--home-dir",
            &format!("/home/{USER}"),
            "--shell",
            "/bin/sh",
            "--password",
            "*",
            USER,
        ]),
        &format!("useradd {USER}"),
    )
    .await
    .map(drop)
}

/// The key as one `authorized_keys` line, or why it cannot be one: a line
/// break or control character would let a key add lines (options, other
/// keys) of its own.
fn key_line(key: &str) -> Result<String, String> {
    let key = key.trim();
    if key.is_empty() || key.chars().any(char::is_control) {
        return Err("the VI's SSH key is not a single OpenSSH public key line".into());
    }
    Ok(format!("{key}\n"))
}

fn config(dir: &Path, addr: Ipv4Addr) -> String {
    let d = dir.display();
    format!(
        "# The sshd of one Iris node; made by iris-api, removed with the node.\n\
         ListenAddress {addr}:22\n\
         HostKey {d}/ssh_host_ed25519_key\n\
         PidFile {d}/sshd.pid\n\
         AuthorizedKeysFile {d}/authorized_keys\n\
         AllowUsers {USER}\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PermitRootLogin no\n\
         UsePAM no\n\
         DisableForwarding yes\n\
         PrintMotd no\n"
    )
}

fn write(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The PID in the node's PID file, when sshd is running there.
fn running(ns: &str) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file(ns))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let config = dir(ns).join("sshd_config");
    String::from_utf8_lossy(&cmdline)
        .contains(config.to_str()?)
        .then_some(pid)
}

/// Starts the sshd of the node in namespace `ns`, listening on `addr:22`
/// and letting in [`USER`] with `key` alone. Idempotent: a running one
/// is kept, with its key written again.
pub async fn start(ns: &str, addr: Ipv4Addr, key: &str) -> Result<(), String> {
    let line = key_line(key)?;
    ensure_user().await?;
    let dir = dir(ns);
    for d in [Path::new(PRIVSEP_DIR), &dir] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        // sshd refuses files under a directory others may write to.
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("{}: {e}", d.display()))?;
    }
    // Readable by the user: sshd reads it with the user's rights.
    write(&dir.join("authorized_keys"), &line, 0o644)?;
    let config_path = dir.join("sshd_config");
    write(&config_path, &config(&dir, addr), 0o644)?;
    if running(ns).is_some() {
        return Ok(());
    }
    let host_key = dir.join("ssh_host_ed25519_key");
    if !host_key.exists() {
        run(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", ns, "-f"])
                .arg(&host_key),
            "ssh-keygen",
        )
        .await?;
    }
    run(
        Command::new(SSHD).arg("-t").arg("-f").arg(&config_path),
        "sshd -t",
    )
    .await?;
    let log = dir.join("sshd.log");
    // sshd forks away at once and reports a failure to bind only in its
    // log; it writes its PID file once it listens.
    run(
        Command::new("ip")
            .args(["netns", "exec", ns, SSHD, "-f"])
            .arg(&config_path)
            .arg("-E")
            .arg(&log),
        "sshd",
    )
    .await?;
    let since = Instant::now();
    while running(ns).is_none() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if since.elapsed() > START_TIMEOUT || text.contains("Cannot bind any address") {
            return Err(format!(
                "sshd did not start listening on {addr}:22: {}",
                text.trim()
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Ends every process in the node's namespace (its sshd and the sessions
/// it opened) and the sshd of its PID file, then removes its files.
/// Succeeds when there is nothing.
pub async fn stop(ns: &str, ns_exists: bool) -> Result<(), String> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let mut pids: Vec<i32> = Vec::new();
    if ns_exists {
        let out = run(
            Command::new("ip").args(["netns", "pids", ns]),
            "ip netns pids",
        )
        .await?;
        pids.extend(out.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
    }
    pids.extend(running(ns));
    // The broker itself is never in a node's namespace, but a guard costs
    // nothing.
    let me = std::process::id() as i32;
    pids.retain(|&p| p != me);
    for &pid in &pids {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let alive = |pid: &i32| Path::new(&format!("/proc/{pid}")).exists();
    let since = Instant::now();
    while pids.iter().any(alive) && since.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for pid in pids.iter().filter(|p| alive(p)) {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    let dir = dir(ns);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: {e}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_with_a_line_break_is_refused() {
        assert!(key_line("ssh-ed25519 AAAA a@b\nssh-rsa AAAA evil@x").is_err());
        assert!(key_line("ssh-ed25519 AAAA a@b\r").is_ok());
        assert_eq!(
            key_line(" ssh-ed25519 AAAA a@b ").unwrap(),
            "ssh-ed25519 AAAA a@b\n"
        );
    }

    #[test]
    fn the_config_lets_in_the_key_of_the_node_alone() {
        let c = config(Path::new("/run/iris/nodes/n1"), Ipv4Addr::new(10, 0, 0, 5));
        for line in [
            "ListenAddress 10.0.0.5:22",
            "AuthorizedKeysFile /run/iris/nodes/n1/authorized_keys",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "AllowUsers iris",
            "PidFile /run/iris/nodes/n1/sshd.pid",
        ] {
            assert!(c.lines().any(|l| l == line), "{line} not in\n{c}");
        }
    }
}
