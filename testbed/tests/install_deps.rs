//! `scripts/install-deps.sh`, which `make demo` and `make test` run first on
//! a fresh machine, run against a PATH of stand-ins: what it installs with
//! apt-get, and what it says about the Rust toolchain. Needs only bash.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Tools the script itself uses, linked from the real system.
const REAL_TOOLS: &[&str] = &["sort", "sed", "grep", "cat", "dirname", "tr", "head"];

/// Commands the script checks for, other than the C and Rust toolchains.
const PRESENT: &[&str] = &[
    "ovs-vswitchd",
    "ovsdb-server",
    "ovs-ofctl",
    "ovs-testcontroller",
    "mn",
    "iperf3",
    "ethtool",
    "tcpdump",
    "ip",
    "ping",
    "ps",
    "killall",
    "qemu-system-x86_64",
    "xz",
    "libvirtd",
    "virsh",
    "sshd",
    "ssh-keygen",
    "protoc",
    "etcd",
    "etcdctl",
    "ovn-northd",
    "ovn-nbctl",
    "ovn-controller",
    "python3",
    // libvirt-qemu exists.
    "getent",
];

/// A scratch directory with a `bin/` of stand-ins; removed when dropped.
struct Machine {
    root: PathBuf,
}

impl Machine {
    /// A root shell on a machine with Open vSwitch and the other tools,
    /// `rustc` of that version (with cargo) if any, and a C compiler if `cc`.
    fn new(name: &str, rustc: Option<&str>, cc: bool) -> Self {
        let root =
            std::env::temp_dir().join(format!("iris-install-deps-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("bin")).unwrap();
        let m = Self { root };
        for tool in REAL_TOOLS {
            let real = ["/usr/bin", "/bin"]
                .iter()
                .map(|d| Path::new(d).join(tool))
                .find(|p| p.exists())
                .unwrap_or_else(|| panic!("{tool} is not installed"));
            std::os::unix::fs::symlink(real, m.root.join("bin").join(tool)).unwrap();
        }
        for cmd in PRESENT {
            m.stand_in(cmd, "exit 0");
        }
        m.stand_in("id", "echo 0");
        // Every package asked about by name (the guests' kernel and
        // busybox-static) is installed.
        m.stand_in("dpkg-query", "printf 'install ok installed'");
        let log = m.root.join("apt.log");
        m.stand_in("apt-get", &format!("echo \"$*\" >> {}", log.display()));
        if let Some(version) = rustc {
            m.stand_in(
                "rustc",
                &format!("echo 'rustc {version} (0000000 2025-01-01)'"),
            );
            m.stand_in("cargo", "exit 0");
        }
        if cc {
            m.stand_in("cc", "exit 0");
        }
        m
    }

    fn stand_in(&self, cmd: &str, body: &str) {
        let path = self.root.join("bin").join(cmd);
        fs::write(&path, format!("#!/bin/bash\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Runs the script; (success, stderr, what apt-get was asked).
    fn install_deps(&self) -> (bool, String, String) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-deps.sh");
        let out = Command::new("/bin/bash")
            .arg(script)
            .env_clear()
            .env("PATH", self.root.join("bin"))
            .env("HOME", &self.root)
            .output()
            .unwrap();
        let apt = fs::read_to_string(self.root.join("apt.log")).unwrap_or_default();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            apt,
        )
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

const RUSTUP: &str = "curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y \
                      --profile minimal --component rustfmt --component clippy";

/// The Rust version the workspace asks for.
fn rust_version() -> String {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let text = fs::read_to_string(manifest).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("rust-version"))
        .unwrap();
    line.split('"').nth(1).unwrap().to_owned()
}

#[test]
fn a_missing_c_toolchain_is_installed_with_apt() {
    let (ok, stderr, apt) = Machine::new("no-cc", Some(&rust_version()), false).install_deps();
    assert!(ok, "{stderr}");
    assert!(
        apt.contains("build-essential") && apt.contains("pkg-config"),
        "apt-get was asked: {apt}"
    );
}

#[test]
fn debian_s_own_rust_is_too_old_and_the_fix_is_printed() {
    // Debian 12's apt rustc is 1.63.
    let (ok, stderr, _) = Machine::new("old-rust", Some("1.63.0"), true).install_deps();
    assert!(!ok);
    assert!(stderr.contains("rustc 1.63.0 is too old"), "{stderr}");
    assert!(
        stderr.contains(&format!("Rust {} or newer", rust_version())),
        "{stderr}"
    );
    assert!(stderr.contains(RUSTUP), "{stderr}");
}

#[test]
fn no_rust_at_all_gets_the_rustup_command() {
    let (ok, stderr, _) = Machine::new("no-rust", None, true).install_deps();
    assert!(!ok);
    assert!(
        stderr.contains(&format!("Rust {} or newer", rust_version())),
        "{stderr}"
    );
    assert!(stderr.contains(RUSTUP), "{stderr}");
}

#[test]
fn a_machine_with_everything_is_left_alone() {
    let (ok, stderr, apt) = Machine::new("complete", Some("1.95.0"), true).install_deps();
    assert!(ok, "{stderr}");
    assert_eq!(apt, "", "nothing to install");
    assert_eq!(stderr, "");
}

#[test]
fn the_guests_kernel_and_busybox_are_installed_when_missing() {
    let m = Machine::new("no-guest", Some(&rust_version()), true);
    // dpkg-query -W -f=... PACKAGE: only busybox-static is installed.
    m.stand_in(
        "dpkg-query",
        "[[ ${!#} == busybox-static ]] && printf 'install ok installed' || exit 1",
    );
    let (ok, stderr, apt) = m.install_deps();
    assert!(ok, "{stderr}");
    assert!(
        apt.contains("linux-image-amd64"),
        "apt-get was asked: {apt}"
    );
    assert!(!apt.contains("busybox-static"), "apt-get was asked: {apt}");
}

#[test]
fn libvirt_s_qemu_user_is_added_when_missing() {
    let m = Machine::new("no-libvirt-user", Some(&rust_version()), true);
    m.stand_in("getent", "exit 2");
    let added = m.root.join("useradd.log");
    m.stand_in("useradd", &format!("echo \"$*\" >> {}", added.display()));
    let (ok, stderr, _) = m.install_deps();
    assert!(ok, "{stderr}");
    let args = fs::read_to_string(&added).unwrap_or_default();
    assert!(
        args.contains("--system") && args.trim_end().ends_with("libvirt-qemu"),
        "useradd was asked: {args:?}"
    );
}

#[test]
fn the_nodes_ssh_server_is_installed_when_missing() {
    let m = Machine::new("no-sshd", Some(&rust_version()), true);
    fs::remove_file(m.root.join("bin").join("sshd")).unwrap();
    let (ok, stderr, apt) = m.install_deps();
    assert!(ok, "{stderr}");
    assert!(apt.contains("openssh-server"), "apt-get was asked: {apt}");
    assert!(!apt.contains("openssh-client"), "apt-get was asked: {apt}");
}

#[test]
fn ovn_is_installed_when_missing() {
    let m = Machine::new("no-ovn", Some(&rust_version()), true);
    for cmd in ["ovn-northd", "ovn-controller"] {
        fs::remove_file(m.root.join("bin").join(cmd)).unwrap();
    }
    let (ok, stderr, apt) = m.install_deps();
    assert!(ok, "{stderr}");
    for pkg in ["ovn-central", "ovn-host"] {
        assert!(apt.contains(pkg), "apt-get was asked: {apt}");
    }
    assert!(!apt.contains("ovn-common"), "apt-get was asked: {apt}");
}
