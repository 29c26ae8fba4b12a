//! The guest image: a Debian kernel from `/boot` and an initramfs made at
//! test time of `busybox-static`, Debian's `dropbear` with the libraries
//! it links, the virtio-net modules of that kernel and an `/init` that
//! brings `eth0` up with the address of the kernel command line
//! (`iris.ip=10.0.0.5/24`) and, given `iris.ssh=<base64 of a public key
//! line>`, starts dropbear letting in the user `iris` with that key alone. Nothing of it is committed: it is built
//! from the host's packages, cached under [`CACHE_ROOT`]`/<key>/`, and
//! rebuilt whenever an input changes, since the key is a hash of every
//! byte that goes into it.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where built images are kept between runs.
pub const CACHE_ROOT: &str = "/var/cache/iris-testbed/guest";
/// The static busybox of Debian's `busybox-static`.
pub const BUSYBOX: &str = "/bin/busybox";
/// Debian's `dropbear` (`dropbear-bin`): the guest's SSH server.
pub const DROPBEAR: &str = "/usr/sbin/dropbear";
/// The user the guest's SSH server lets in.
pub const SSH_USER: &str = "iris";
/// What `/init` prints once dropbear is started.
pub const SSH_MARK: &str = "iris-guest: ssh";
/// The modules a guest needs for its NIC (with whatever they depend on):
/// Debian builds virtio's PCI transport and virtio-net as modules.
pub const NIC_MODULES: &[&str] = &["virtio_pci", "virtio_net"];
/// What `/init` prints on the serial console once `eth0` has its address.
pub const READY_MARK: &str = "iris-guest: ready";
/// What `/init` prints every second once it is done, after whatever the
/// kernel logged meanwhile (at every level; errors and worse the kernel
/// also prints itself, so that they show even when userspace is stuck):
/// its uptime and wall clock, `eth0`'s packet counters and its
/// neighbours. A console that stops saying it is a guest kernel that
/// stopped; counters that stop are a NIC that stopped.
pub const ALIVE_MARK: &str = "iris-guest: alive";
/// What `/init` prints when it could not configure `eth0`.
pub const FAILED_MARK: &str = "iris-guest: failed";

/// Changes whenever the layout of the image changes without its inputs
/// changing, so that an old cache entry is not taken for a new one.
const FORMAT: &str = "iris-guest-image 3";

/// A built (or cached) guest image.
#[derive(Debug, Clone)]
pub struct GuestImage {
    /// The kernel QEMU boots: the uncompressed `vmlinux` when the kernel
    /// has a PVH entry, else the `bzImage` as installed.
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    /// The kernel release the image was made from, e.g. `6.1.0-57-amd64`.
    pub release: String,
    /// The modules `/init` loads, in load order.
    pub modules: Vec<String>,
    /// The hash of the inputs, the name of the cache entry.
    pub key: String,
    /// Whether this call built the image (false: it was in the cache).
    pub built: bool,
}

impl GuestImage {
    /// The image in [`CACHE_ROOT`], built first if its inputs changed.
    pub fn ensure() -> Result<Self> {
        Self::ensure_in(
            Path::new(CACHE_ROOT),
            Path::new("/boot"),
            Path::new("/lib/modules"),
            Path::new(BUSYBOX),
            Path::new(DROPBEAR),
        )
    }

    /// The image cached in `cache`, made of the newest kernel in `boot`
    /// whose modules are in `modules`, of the static `busybox`, and of
    /// `dropbear` with its libraries.
    pub fn ensure_in(
        cache: &Path,
        boot: &Path,
        modules: &Path,
        busybox: &Path,
        dropbear: &Path,
    ) -> Result<Self> {
        let (release, kernel) = newest_kernel(boot, modules)?;
        let module_dir = modules.join(&release);
        let order = load_order(&module_dir, NIC_MODULES)?;
        let busybox_path = busybox;
        let busybox = read(busybox_path)?;
        let dropbear_files: Vec<(String, Vec<u8>)> =
            std::iter::once(Ok(("sbin/dropbear".to_owned(), read(dropbear)?)))
                .chain(libraries(dropbear)?.into_iter().map(|lib| {
                    Ok((
                        lib.trim_start_matches('/').to_owned(),
                        read(Path::new(&lib))?,
                    ))
                }))
                .collect::<Result<_>>()?;
        let kernel_bytes = read(&kernel)?;
        let module_files: Vec<(String, Vec<u8>)> = order
            .iter()
            .map(|(name, path)| Ok((name.clone(), read(&module_dir.join(path))?)))
            .collect::<Result<_>>()?;
        let names: Vec<String> = module_files.iter().map(|(n, _)| n.clone()).collect();
        let init = init_script(&names);

        let mut hash = Fnv64::new();
        hash.add(FORMAT.as_bytes());
        hash.add(init.as_bytes());
        hash.add(&kernel_bytes);
        hash.add(&busybox);
        for (name, bytes) in module_files.iter().chain(&dropbear_files) {
            hash.add(name.as_bytes());
            hash.add(bytes);
        }
        let key = format!("{release}-{:016x}", hash.finish());
        let entry = cache.join(&key);
        let pvh = fs::read_to_string(boot.join(format!("config-{release}")))
            .is_ok_and(|config| config.lines().any(|l| l == "CONFIG_PVH=y"));
        let kernel_name = if pvh { "vmlinux" } else { "vmlinuz" };
        let image = |built| Self {
            kernel: entry.join(kernel_name),
            initramfs: entry.join("initramfs.cpio"),
            release: release.clone(),
            modules: names.clone(),
            key: key.clone(),
            built,
        };
        if entry.join("initramfs.cpio").is_file() && entry.join(kernel_name).is_file() {
            return Ok(image(false));
        }

        let mut cpio = Cpio::default();
        for dir in [
            "bin",
            "sbin",
            "usr",
            "usr/bin",
            "usr/sbin",
            "dev",
            "proc",
            "sys",
            "lib",
            "lib/modules",
            "lib64",
            "lib/x86_64-linux-gnu",
            "etc",
            "etc/dropbear",
            "home",
            "tmp",
            "root",
        ] {
            cpio.dir(dir);
        }
        cpio.file(
            "etc/passwd",
            0o644,
            format!(
                "root:x:0:0:root:/root:/bin/sh\n{SSH_USER}:x:1000:1000::/home/{SSH_USER}:/bin/sh\n"
            )
            .as_bytes(),
        );
        cpio.file(
            "etc/group",
            0o644,
            format!("root:x:0:\n{SSH_USER}:x:1000:\n").as_bytes(),
        );
        cpio.file("etc/shells", 0o644, b"/bin/sh\n");
        for (path, bytes) in &dropbear_files {
            if let Some((dir, _)) = path.rsplit_once('/') {
                cpio.dir(dir);
            }
            cpio.file(path, 0o755, bytes);
        }
        cpio.char_device("dev/console", 0o600, 5, 1);
        cpio.file("init", 0o755, init.as_bytes());
        cpio.file("bin/busybox", 0o755, &busybox);
        for (name, bytes) in &module_files {
            cpio.file(&format!("lib/modules/{name}.ko"), 0o644, bytes);
        }
        let archive = cpio.finish();

        // Built beside the entry and renamed into place, so that a reader
        // never sees half an image and two runs building at once both end
        // with a whole one.
        fs::create_dir_all(cache).map_err(|e| Error::io_at("creating", cache, e))?;
        // Per process and per call: two tests of one binary building at
        // once had one staging directory, and one removed the other's.
        static BUILDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let build = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let staging = cache.join(format!(".{key}.{}.{build}", std::process::id()));
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir(&staging).map_err(|e| Error::io_at("creating", &staging, e))?;
        // The decompressor of a bzImage takes most of a boot under TCG
        // (10-17 s against 4-6 s): QEMU boots the uncompressed ELF
        // through its PVH entry instead.
        let kernel_bytes = if pvh {
            decompress(&kernel_bytes).map_err(|why| Error::Host {
                problem: format!("{}: {why}", kernel.display()),
            })?
        } else {
            kernel_bytes
        };
        write(&staging.join(kernel_name), &kernel_bytes)?;
        write(&staging.join("initramfs.cpio"), &archive)?;
        write(
            &staging.join("inputs.txt"),
            format!(
                "{FORMAT}\nkernel {}\nbusybox {}\ndropbear {}\nmodules {}\n",
                kernel.display(),
                busybox_path.display(),
                dropbear.display(),
                names.join(" ")
            )
            .as_bytes(),
        )?;
        if let Err(e) = fs::rename(&staging, &entry) {
            let _ = fs::remove_dir_all(&staging);
            if !entry.join("initramfs.cpio").is_file() {
                return Err(Error::io_at("moving the built image to", &entry, e));
            }
        }
        prune(cache, &key);
        Ok(image(true))
    }
}

/// Removes the cache entries other than `keep`: a new entry means an input
/// changed (a kernel or busybox upgrade), and each entry holds a 66 MB
/// kernel. Entries being built (`.`-prefixed) are left alone.
fn prune(cache: &Path, keep: &str) {
    let Ok(entries) = fs::read_dir(cache) else {
        return;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name != keep && !name.starts_with('.') {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// The shared libraries `binary` loads (its ELF interpreter included), as
/// `ldd` resolves them on this host; none for a static binary.
fn libraries(binary: &Path) -> Result<Vec<String>> {
    let out = std::process::Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| Error::Host {
            problem: format!("cannot run ldd on {}: {e}", binary.display()),
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // "not a dynamic executable": a static binary needs nothing.
        return Ok(Vec::new());
    }
    Ok(text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = l.split_once("=> ").map_or(l, |(_, p)| p);
            path.split_whitespace()
                .next()
                .filter(|p| p.starts_with('/'))
                .map(str::to_owned)
        })
        .collect())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::Host {
            problem: format!(
                "{} is missing: the guest image needs linux-image-amd64, busybox-static, dropbear-bin \
                 (scripts/install-deps.sh)",
                path.display()
            ),
        },
        _ => Error::io_at("reading", path, e),
    })
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    fs::write(path, bytes).map_err(|e| Error::io_at("writing", path, e))
}

/// The ELF kernel inside a bzImage compressed with xz (Debian's choice),
/// unpacked by `xz`.
fn decompress(bzimage: &[u8]) -> std::result::Result<Vec<u8>, String> {
    use std::io::Write;
    const XZ_MAGIC: &[u8] = b"\xfd7zXZ\x00";
    let start = bzimage
        .windows(XZ_MAGIC.len())
        .position(|w| w == XZ_MAGIC)
        .ok_or("no xz stream in the bzImage (only xz-compressed kernels are unpacked)")?;
    let mut child = std::process::Command::new("xz")
        .args(["-dc", "--single-stream"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run xz (xz-utils): {e}"))?;
    let mut stdin = child.stdin.take().ok_or("xz has no stdin")?;
    let input = bzimage[start..].to_vec();
    // Fed from a thread: xz writes its output while it reads.
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for xz: {e}"))?;
    let _ = feeder.join();
    if !out.status.success() || !out.stdout.starts_with(b"\x7fELF") {
        return Err(format!(
            "xz did not unpack an ELF kernel ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out.stdout)
}

/// The newest `vmlinuz-<release>` in `boot` whose modules are installed.
fn newest_kernel(boot: &Path, modules: &Path) -> Result<(String, PathBuf)> {
    let entries = fs::read_dir(boot).map_err(|e| Error::io_at("listing", boot, e))?;
    let mut releases: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("vmlinuz-")
                .map(str::to_owned)
        })
        .filter(|r| modules.join(r).join("modules.dep").is_file())
        .collect();
    releases.sort_by_key(|r| version_key(r));
    let release = releases.pop().ok_or_else(|| Error::Host {
        problem: format!(
            "no kernel in {} with its modules in {}: the guest image needs linux-image-amd64 \
             (scripts/install-deps.sh)",
            boot.display(),
            modules.display()
        ),
    })?;
    let kernel = boot.join(format!("vmlinuz-{release}"));
    Ok((release, kernel))
}

/// `6.1.0-57-amd64` as numbers where it has digits, so that `-57` sorts
/// after `-9`.
fn version_key(release: &str) -> Vec<(u64, String)> {
    release
        .split(['.', '-'])
        .map(|part| (part.parse().unwrap_or(0), part.to_owned()))
        .collect()
}

/// Module names are spelt with `_` or `-` alike.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.strip_suffix(".ko").unwrap_or(file).replace('-', "_")
}

/// The modules of `wanted` not built into the kernel of `dir`, with
/// everything they depend on, in an order `insmod` can load them:
/// `(name, path relative to dir)`.
fn load_order(dir: &Path, wanted: &[&str]) -> Result<Vec<(String, String)>> {
    let dep_file = dir.join("modules.dep");
    let deps = fs::read_to_string(&dep_file).map_err(|e| Error::io_at("reading", &dep_file, e))?;
    let builtin = fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
    resolve(&deps, &builtin, wanted).map_err(|why| Error::Host {
        problem: format!("{}: {why}", dep_file.display()),
    })
}

/// [`load_order`] on the text of `modules.dep` and `modules.builtin`.
fn resolve(
    deps: &str,
    builtin: &str,
    wanted: &[&str],
) -> std::result::Result<Vec<(String, String)>, String> {
    let builtin: BTreeSet<String> = builtin.lines().map(module_name).collect();
    let table: Vec<(String, String, Vec<String>)> = deps
        .lines()
        .filter_map(|line| {
            let (path, rest) = line.split_once(':')?;
            let needs = rest.split_whitespace().map(module_name).collect();
            Some((module_name(path), path.to_owned(), needs))
        })
        .collect();
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    fn visit(
        name: &str,
        table: &[(String, String, Vec<String>)],
        builtin: &BTreeSet<String>,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<(String, String)>,
    ) -> std::result::Result<(), String> {
        if builtin.contains(name) || !seen.insert(name.to_owned()) {
            return Ok(());
        }
        let (_, path, needs) = table
            .iter()
            .find(|(n, _, _)| n == name)
            .ok_or_else(|| format!("module {name} is neither built in nor listed"))?;
        if !path.ends_with(".ko") {
            return Err(format!(
                "module {name} is compressed ({path}); busybox's insmod loads plain .ko files"
            ));
        }
        for dep in needs {
            visit(dep, table, builtin, seen, order)?;
        }
        order.push((name.to_owned(), path.clone()));
        Ok(())
    }
    for name in wanted {
        visit(
            &name.replace('-', "_"),
            &table,
            &builtin,
            &mut seen,
            &mut order,
        )?;
    }
    Ok(order)
}

/// The guest's `/init`: busybox applets, the NIC's modules, `eth0` with
/// the address of `iris.ip=` on the kernel command line, dropbear when
/// `iris.ssh=` gives a key (public keys only: `-s`; host key made at the
/// first connection: `-R`), then nothing (the kernel answers ping).
fn init_script(modules: &[String]) -> String {
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
for m in {modules}; do
  insmod /lib/modules/$m.ko || echo "iris-guest: insmod $m failed"
done
ip=
ssh=
for w in $(cat /proc/cmdline); do
  case "$w" in
    iris.ip=*) ip="${{w#iris.ip=}}" ;;
    iris.ssh=*) ssh="${{w#iris.ssh=}}" ;;
  esac
done
ip link set lo up
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 200 ]; do sleep 0.05; n=$((n + 1)); done
if [ -n "$ip" ] && ip link set eth0 up && ip addr add "$ip" dev eth0; then
  echo "{READY_MARK} eth0 $ip"
else
  echo "{FAILED_MARK} to configure eth0 with iris.ip=$ip"
fi
if [ -n "$ssh" ]; then
  mkdir -p /home/{SSH_USER}/.ssh
  echo "$ssh" | base64 -d > /home/{SSH_USER}/.ssh/authorized_keys
  chmod 755 /home/{SSH_USER} /home/{SSH_USER}/.ssh
  chmod 644 /home/{SSH_USER}/.ssh/authorized_keys
  /sbin/dropbear -R -s -g -j -k -p 22 && echo "{SSH_MARK} dropbear started"
fi
s=/sys/class/net/eth0/statistics
while :; do
  dmesg -c
  echo "{ALIVE_MARK} up $(cut -d' ' -f1 /proc/uptime) s, clock $(date +%T), eth0 rx $(cat $s/rx_packets) tx $(cat $s/tx_packets) dropped $(cat $s/rx_dropped)/$(cat $s/tx_dropped); $(ip neigh | tr '\n' ';')"
  sleep 1
done
"#,
        modules = modules.join(" ")
    )
}

/// 64-bit FNV-1a: a stable hash for cache keys (std's hasher may change
/// between Rust releases, and this is no security boundary).
struct Fnv64(u64);

impl Fnv64 {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn add(&mut self, bytes: &[u8]) {
        // The length first, so that ("ab", "c") and ("a", "bc") differ.
        for b in (bytes.len() as u64).to_le_bytes().iter().chain(bytes) {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A cpio archive in the "newc" format the kernel unpacks as initramfs,
/// with fixed owners and times, so that equal inputs give equal bytes.
#[derive(Default)]
struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn dir(&mut self, path: &str) {
        self.entry(path, 0o040_755, 0, 0, &[]);
    }

    fn file(&mut self, path: &str, perm: u32, data: &[u8]) {
        self.entry(path, 0o100_000 | perm, 0, 0, data);
    }

    fn char_device(&mut self, path: &str, perm: u32, major: u32, minor: u32) {
        self.entry(path, 0o020_000 | perm, major, minor, &[]);
    }

    fn entry(&mut self, path: &str, mode: u32, rmajor: u32, rminor: u32, data: &[u8]) {
        self.ino += 1;
        let nlink = if mode & 0o170_000 == 0o040_000 { 2 } else { 1 };
        let size = u32::try_from(data.len()).expect("a guest file under 4 GiB");
        let namesize = u32::try_from(path.len() + 1).expect("a short path");
        let fields = [
            self.ino, mode, 0, 0, nlink, 0, size, 0, 0, rmajor, rminor, namesize, 0,
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(path.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.ino = 0;
        self.entry("TRAILER!!!", 0, 0, 0, &[]);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPS: &str = "\
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
";

    fn names(order: &[(String, String)]) -> Vec<&str> {
        order.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn modules_load_after_what_they_need() {
        let order = resolve(DEPS, "", &["virtio_pci", "virtio-net"]).unwrap();
        assert_eq!(
            names(&order),
            [
                "virtio_pci_legacy_dev",
                "virtio_ring",
                "virtio",
                "virtio_pci",
                "failover",
                "net_failover",
                "virtio_net"
            ]
        );
        assert_eq!(order[3].1, "kernel/drivers/virtio/virtio_pci.ko");
    }

    #[test]
    fn built_in_modules_are_not_loaded_and_unknown_ones_are_an_error() {
        let builtin = "kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_ring.ko\n";
        let order = resolve(DEPS, builtin, &["virtio_pci"]).unwrap();
        assert_eq!(names(&order), ["virtio_pci_legacy_dev", "virtio_pci"]);
        let err = resolve(DEPS, "", &["e1000"]).unwrap_err();
        assert!(err.contains("e1000"), "{err}");
        let xz = "kernel/drivers/net/virtio_net.ko.xz:\n";
        assert!(resolve(xz, "", &["virtio_net"]).is_err());
    }

    #[test]
    fn newc_entries_are_aligned_and_end_with_the_trailer() {
        let mut c = Cpio::default();
        c.dir("bin");
        c.file("init", 0o755, b"#!/bin/sh\n");
        c.char_device("dev/console", 0o600, 5, 1);
        let out = c.finish();
        assert_eq!(out.len() % 4, 0);
        assert!(out.starts_with(b"070701"));
        // The header of "init": mode 100755, size 10, name size 5.
        let at = out.windows(5).position(|w| w == b"init\0").unwrap();
        let header = std::str::from_utf8(&out[at - 110..at]).unwrap();
        assert_eq!(&header[14..22], "000081ed");
        assert_eq!(&header[54..62], "0000000a");
        assert_eq!(&header[94..102], "00000005");
        let console = out.windows(12).position(|w| w == b"dev/console\0").unwrap();
        let header = std::str::from_utf8(&out[console - 110..console]).unwrap();
        assert_eq!(&header[14..22], "00002180");
        assert_eq!(&header[78..86], "00000005");
        assert_eq!(&header[86..94], "00000001");
        let trailer = out.windows(11).rposition(|w| w == b"TRAILER!!!\0");
        assert!(trailer.is_some());
    }

    #[test]
    fn the_key_changes_with_any_byte() {
        let key = |parts: &[&[u8]]| {
            let mut h = Fnv64::new();
            for p in parts {
                h.add(p);
            }
            h.finish()
        };
        assert_eq!(key(&[b"ab", b"c"]), key(&[b"ab", b"c"]));
        assert_ne!(key(&[b"ab", b"c"]), key(&[b"a", b"bc"]));
        assert_ne!(key(&[b"ab", b"c"]), key(&[b"ab", b"d"]));
    }

    fn xz(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut child = std::process::Command::new("xz")
            .args(["-c"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(data).unwrap();
        child.wait_with_output().unwrap().stdout
    }

    #[test]
    fn the_elf_kernel_is_unpacked_from_between_setup_code_and_trailer() {
        let elf = b"\x7fELF and the rest of a kernel".repeat(100);
        let mut bzimage = b"setup code before the payload".to_vec();
        bzimage.extend(xz(&elf));
        bzimage.extend(b"trailing bytes after the payload");
        assert_eq!(decompress(&bzimage).unwrap(), elf);
        let not_elf = [b"head".to_vec(), xz(b"not a kernel")].concat();
        assert!(decompress(&not_elf).unwrap_err().contains("ELF"));
        assert!(decompress(b"no payload")
            .unwrap_err()
            .contains("no xz stream"));
    }

    /// A `/boot` and `/lib/modules` with one made-up kernel (no PVH, so
    /// it is taken as it is) and the NIC's modules.
    fn fake_kernel(root: &Path, module_byte: u8) -> (PathBuf, PathBuf, PathBuf) {
        let boot = root.join("boot");
        let modules = root.join("modules");
        let dir = modules.join("1.0-test");
        fs::create_dir_all(&boot).unwrap();
        fs::create_dir_all(dir.join("kernel")).unwrap();
        fs::write(boot.join("vmlinuz-1.0-test"), b"not really a kernel").unwrap();
        fs::write(boot.join("config-1.0-test"), "CONFIG_PVH=n\n").unwrap();
        fs::write(
            dir.join("modules.dep"),
            "kernel/virtio_pci.ko: kernel/virtio.ko\nkernel/virtio.ko:\n\
             kernel/virtio_net.ko: kernel/virtio.ko\n",
        )
        .unwrap();
        for m in ["virtio_pci", "virtio", "virtio_net"] {
            fs::write(dir.join(format!("kernel/{m}.ko")), [module_byte; 8]).unwrap();
        }
        let busybox = root.join("busybox");
        fs::write(&busybox, b"not really busybox").unwrap();
        fs::write(root.join("dropbear"), b"not really dropbear").unwrap();
        (boot, modules, busybox)
    }

    #[test]
    fn an_image_is_cached_and_rebuilt_when_an_input_changes() {
        let root = tempfile::tempdir().unwrap();
        let cache = root.path().join("cache");
        let (boot, modules, busybox) = fake_kernel(root.path(), 1);
        let dropbear = root.path().join("dropbear");
        let first = GuestImage::ensure_in(&cache, &boot, &modules, &busybox, &dropbear).unwrap();
        assert!(first.built);
        assert_eq!(first.modules, ["virtio", "virtio_pci", "virtio_net"]);
        assert_eq!(fs::read(&first.kernel).unwrap(), b"not really a kernel");
        let cpio = fs::read(&first.initramfs).unwrap();
        assert!(cpio
            .windows(26)
            .any(|w| w == b"lib/modules/virtio_net.ko\0"));
        let again = GuestImage::ensure_in(&cache, &boot, &modules, &busybox, &dropbear).unwrap();
        assert!(!again.built);
        assert_eq!(again.key, first.key);

        fake_kernel(root.path(), 2);
        let changed = GuestImage::ensure_in(&cache, &boot, &modules, &busybox, &dropbear).unwrap();
        assert!(changed.built);
        assert_ne!(changed.key, first.key);
        assert!(!cache.join(&first.key).exists(), "the old entry is pruned");
    }

    #[test]
    fn versions_sort_by_number() {
        let mut r = vec!["6.1.0-9-amd64", "6.1.0-57-amd64", "5.10.0-30-amd64"];
        r.sort_by_key(|r| version_key(r));
        assert_eq!(r, ["5.10.0-30-amd64", "6.1.0-9-amd64", "6.1.0-57-amd64"]);
    }
}
