//! A private libvirtd for one emulated PM, so that the broker's `libvirt`
//! compute driver can be run against real QEMU guests there.
//!
//! A real PM runs its own libvirtd; an emulated PM is a network namespace,
//! and libvirtd must run inside it for the taps it creates to be there,
//! where the PM's `ovs-vswitchd` opens them. The system QEMU driver keeps
//! its state in fixed paths (`/etc/libvirt`, `/run/libvirt`,
//! `/var/lib/libvirt`, ...), so each PM's libvirtd also gets a mount
//! namespace of its own in which those paths are bind mounts of the PM's
//! own directories: several PMs' daemons never see each other's domains,
//! and the host's own libvirt (if any) is untouched. Clients reach it at
//! `qemu+unix:///system?socket=<dir>/run/libvirt-sock`.
//!
//! QEMU runs as root with no security driver and no cgroups: the testbed
//! is root already, and its PMs are not machines of their own.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use iris_api::compute::libvirt::{Accel as DriverAccel, BootImage, Config};

use super::{Accel, GuestImage, KERNEL_ARGS, QBOOT};
use crate::error::{Error, Result};
use crate::process::{Process, STOP_GRACE};
use crate::readiness::{poll_until, Probe};
use crate::Pm;

/// How long libvirtd may take to open its socket.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The directories bind-mounted over libvirt's own: (ours, libvirt's).
const MOUNTS: [(&str, &str); 5] = [
    ("etc", "/etc/libvirt"),
    ("run", "/run/libvirt"),
    ("lib", "/var/lib/libvirt"),
    ("cache", "/var/cache/libvirt"),
    ("log", "/var/log/libvirt"),
];

const LIBVIRTD_CONF: &str = "\
# Written by iris-testbed for one emulated PM.
unix_sock_group = \"root\"
unix_sock_rw_perms = \"0700\"
auth_unix_rw = \"none\"
auth_unix_ro = \"none\"
";

const QEMU_CONF: &str = "\
# Written by iris-testbed for one emulated PM.
user = \"root\"
group = \"root\"
dynamic_ownership = 0
remember_owner = 0
security_driver = \"none\"
namespaces = []
cgroup_controllers = []
# QEMU's output to a file, not through virtlogd (one more daemon).
stdio_handler = \"file\"
";

/// Mounts `$1/<ours>` over each of libvirt's directories, then becomes
/// libvirtd.
fn script() -> String {
    let mut s = String::from("set -e\n");
    for (ours, theirs) in MOUNTS {
        s.push_str(&format!(
            "mkdir -p \"$1/{ours}\" {theirs}\nmount --bind \"$1/{ours}\" {theirs}\n"
        ));
    }
    s.push_str(
        "exec libvirtd --config /etc/libvirt/libvirtd.conf --pid-file \"$1/run/libvirtd.pid\"\n",
    );
    s
}

/// One PM's libvirtd; stopped, with its guests, when dropped.
#[derive(Debug)]
pub struct Libvirtd {
    pm: String,
    dir: PathBuf,
    process: Process,
}

impl Libvirtd {
    /// Starts libvirtd in `pm`'s namespace with its state under the PM's
    /// directory; returns once its socket is there.
    pub fn start(pm: &Pm) -> Result<Self> {
        let dir = pm.ovs().dir().join("libvirt");
        for (ours, _) in MOUNTS {
            let d = dir.join(ours);
            fs::create_dir_all(&d).map_err(|e| Error::io_at("creating", &d, e))?;
        }
        for (name, text) in [("libvirtd.conf", LIBVIRTD_CONF), ("qemu.conf", QEMU_CONF)] {
            let path = dir.join("etc").join(name);
            fs::write(&path, text).map_err(|e| Error::io_at("writing", &path, e))?;
        }
        let mut command = pm.netns().command("unshare");
        command.args(["--mount", "--propagation", "private", "sh", "-c"]);
        command.arg(script()).arg("iris-libvirtd").arg(&dir);
        let log = dir.join("libvirtd.log");
        let mut process = Process::spawn(format!("libvirtd {}", pm.name()), command, Some(&log))?;
        let socket = socket_in(&dir);
        poll_until(&format!("libvirtd of {}", pm.name()), READY_TIMEOUT, || {
            process.ensure_running()?;
            Ok(if socket.exists() {
                Probe::Ready(())
            } else {
                Probe::NotYet(format!("no {}", socket.display()))
            })
        })?;
        Ok(Self {
            pm: pm.name().to_owned(),
            dir,
            process,
        })
    }

    /// The connection URI, as a PM's `endpoint`.
    pub fn uri(&self) -> String {
        format!(
            "qemu+unix:///system?socket={}",
            socket_in(&self.dir).display()
        )
    }

    /// Where the daemon keeps everything.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the guests' consoles are written (the driver's
    /// `console_dir`).
    pub fn console_dir(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// Where the driver makes its nodes' disks (the driver's `state_dir`).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("disks")
    }

    /// The running QEMUs of the daemon's domains, from their pid files.
    pub fn qemu_pids(&self) -> Vec<u32> {
        let run = self.dir.join("run").join("qemu");
        let Ok(entries) = fs::read_dir(&run) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
            .filter_map(|e| fs::read_to_string(e.path()).ok()?.trim().parse().ok())
            .filter(|pid: &u32| {
                fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.starts_with("qemu"))
            })
            .collect()
    }

    /// Kills the daemon's QEMUs (which outlive libvirtd, whose children
    /// they are not), then stops the daemon.
    pub fn stop(&mut self) -> Result<()> {
        for pid in self.qemu_pids() {
            let pid = i32::try_from(pid).unwrap_or(i32::MAX);
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        self.process.stop(STOP_GRACE).map(drop)
    }

    pub fn pm(&self) -> &str {
        &self.pm
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("iris-testbed: {e}");
        }
    }
}

fn socket_in(dir: &Path) -> PathBuf {
    dir.join("run").join("libvirt-sock")
}

/// The `libvirt` driver's settings for Iris's guest image, booted as
/// [`super::Guest`] boots it, under `accel`, the nodes' disks in
/// `state_dir`.
pub fn driver_config(
    image: &GuestImage,
    accel: Accel,
    console_dir: Option<PathBuf>,
    state_dir: PathBuf,
) -> Config {
    Config {
        accel: match accel {
            Accel::Kvm => DriverAccel::Kvm,
            Accel::Tcg => DriverAccel::Tcg,
        },
        image: BootImage {
            kernel: image.kernel.clone(),
            initrd: image.initramfs.clone(),
            firmware: Path::new(QBOOT).is_file().then(|| PathBuf::from(QBOOT)),
            cmdline: KERNEL_ARGS.to_owned(),
        },
        console_dir,
        state_dir,
    }
}
