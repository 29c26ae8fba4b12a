//! The `libvirt` compute driver: an L1 node is a KVM domain on the PM's
//! libvirtd, its NIC a tap on the PM's integration bridge with the VI in
//! the OVS port's `external_ids:iris-vi`, the host CPU passed through so
//! the operator's cloud can run its own guests on the node.
//!
//! The NIC is an `<interface type='ethernet'>` with a fixed tap name that
//! libvirt creates when the domain starts and removes when it stops; the
//! driver then adds that tap to the bridge through the PM's OVSDB (not
//! libvirt's `<virtualport type='openvswitch'/>`, which runs `ovs-vsctl`
//! against the host's default socket, which a PM with its OVS elsewhere,
//! as the testbed's emulated PMs have, does not answer on).
//!
//! Every domain the driver makes is named `iris-<node id>` and carries an
//! `<iris:node>` element in its `<metadata>` with the node's spec: `list`
//! reports the domains that have it, and a repeated `create` compares it
//! with what is asked. The tap's name is derived from the node id alone,
//! so that `delete` finds the OVS port even when the domain is gone.
//!
//! libvirt's calls block; they run on tokio's blocking pool, one
//! connection per PM kept open between calls (`test:///default` keeps its
//! state only while a connection to it is open).
//!
//! A node of a flavor with `disk_gib` gets a virtio disk of that size: a
//! sparse raw file `<state_dir>/<PM name>/iris-<id>.img` made before the
//! domain is defined, removed with the node, and removed again when its
//! making fails; `list` reports a disk whose domain is gone, so that the
//! broker's sweep removes it after a crash. The file is made on the
//! broker's host: a PM whose libvirt is elsewhere needs `state_dir` to be
//! the same path there (shared storage).
//!
//! The node boots a kernel and initramfs given to the driver (direct
//! kernel boot, paths on the PM); its address on the VI, when the VI hands
//! out static addresses, is on the kernel command line as `iris.ip=A/P`.
//! Iris's guest image (the testbed's, built from Debian's packages) reads
//! it there.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once};

use async_trait::async_trait;
use ovsdb::{Remote, VmPortSpec, Vswitch};
use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::ErrorNumber;

use super::{ComputeDriver, Created, DriverError, NodeSpec, PmTarget, MAX_SSH_KEY};

/// The driver's name in a PM's record.
pub const KIND: &str = "libvirt";
/// Every domain the driver makes is named this and the node id.
pub const DOMAIN_PREFIX: &str = "iris-";
/// The XML namespace of the driver's `<metadata>` element.
pub const METADATA_NS: &str = "urn:iris:libvirt:node:1";
const METADATA_PREFIX: &str = "iris";
/// Taps are this and 12 hex digits of a hash of the node id: 15
/// characters, the kernel's limit for an interface name.
const TAP_PREFIX: &str = "irv";
/// The connection used when a PM's record names none.
pub const DEFAULT_URI: &str = "qemu:///system";

/// How the PM's hypervisor runs the node's CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// KVM, the host CPU passed through (`<cpu mode='host-passthrough'/>`):
    /// the node sees VMX/SVM and can run guests of its own.
    Kvm,
    /// QEMU's binary translation, for PMs without usable KVM. libvirt
    /// refuses host-passthrough there, so the node gets QEMU's `max` CPU
    /// and no nested virtualisation is promised.
    Tcg,
}

impl Accel {
    fn domain_type(self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Tcg => "qemu",
        }
    }

    fn cpu_mode(self) -> &'static str {
        match self {
            Self::Kvm => "host-passthrough",
            Self::Tcg => "maximum",
        }
    }
}

/// What a node boots, as paths on the PM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootImage {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// A BIOS to use instead of QEMU's default (e.g. qboot, which goes
    /// straight to the kernel).
    pub firmware: Option<PathBuf>,
    /// The kernel command line; the driver appends `iris.ip=`.
    pub cmdline: String,
}

/// The driver's settings, the same for every PM it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub accel: Accel,
    pub image: BootImage,
    /// Where on the PM each node's serial console is written
    /// (`<dir>/iris-<id>.console`); none: a pty.
    pub console_dir: Option<PathBuf>,
    /// Where the nodes' disks are made, one directory per PM.
    pub state_dir: PathBuf,
}

/// The disk of node `id` on PM `pm`.
pub fn disk_path(config: &Config, pm: &str, id: &str) -> PathBuf {
    config
        .state_dir
        .join(pm)
        .join(format!("{DOMAIN_PREFIX}{id}{DISK_SUFFIX}"))
}

const DISK_SUFFIX: &str = ".img";

/// Makes `path` a sparse file of `gib` GiB unless it is one already;
/// whether this call made it.
fn make_disk(path: &Path, gib: u64) -> Result<bool, String> {
    let bytes = gib
        .checked_mul(1 << 30)
        .ok_or_else(|| format!("disk_gib {gib} is too large"))?;
    let what = |e: std::io::Error| format!("making disk {}: {e}", path.display());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(what)?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(file) => match file.set_len(bytes) {
            Ok(()) => Ok(true),
            Err(e) => {
                let _ = std::fs::remove_file(path);
                Err(what(e))
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let have = std::fs::metadata(path).map_err(what)?.len();
            if have == bytes {
                Ok(false)
            } else {
                Err(format!(
                    "disk {} exists with {have} bytes, not the {bytes} asked; delete the node first",
                    path.display()
                ))
            }
        }
        Err(e) => Err(what(e)),
    }
}

/// Removes the disk at `path`; gone already is fine.
fn remove_disk(path: &Path) -> Result<(), String> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("removing disk {}: {e}", path.display())),
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct LibvirtDriver {
    config: Arc<Config>,
    connections: Arc<Mutex<HashMap<String, Connect>>>,
}

impl LibvirtDriver {
    pub fn new(config: Config) -> Self {
        // libvirt prints every error to stderr by default; the driver
        // returns them instead.
        static QUIET: Once = Once::new();
        QUIET.call_once(virt::error::clear_error_callback);
        Self {
            config: Arc::new(config),
            connections: Arc::default(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Runs `work` on the blocking pool with a connection to `pm`'s libvirt.
    async fn blocking<T, F>(&self, pm: &PmTarget, action: &str, work: F) -> Result<T, DriverError>
    where
        T: Send + 'static,
        F: FnOnce(&Connect) -> Result<T, String> + Send + 'static,
    {
        let uri = pm
            .endpoint
            .clone()
            .unwrap_or_else(|| DEFAULT_URI.to_owned());
        let connections = Arc::clone(&self.connections);
        let result = tokio::task::spawn_blocking(move || {
            let mut conn = connection(&connections, &uri)?;
            let result = work(&conn);
            // The crate's `Connect` is a counted reference closed by hand.
            let _ = conn.close();
            result
        })
        .await
        .unwrap_or_else(|e| Err(format!("the libvirt call did not finish: {e}")));
        result.map_err(|reason| failure(action, reason))
    }
}

fn failure(action: &str, reason: String) -> DriverError {
    DriverError {
        driver: KIND,
        action: action.to_owned(),
        reason,
    }
}

/// The open connection to `uri`, opened (again) when there is none or it
/// died (a libvirtd restart).
fn connection(cache: &Mutex<HashMap<String, Connect>>, uri: &str) -> Result<Connect, String> {
    let mut cache = cache
        .lock()
        .map_err(|_| "the libvirt connection cache is poisoned".to_owned())?;
    if let Some(conn) = cache.get_mut(uri) {
        if conn.is_alive().unwrap_or(false) {
            return Ok(conn.clone());
        }
        let _ = conn.close();
        cache.remove(uri);
    }
    let conn =
        Connect::open(Some(uri)).map_err(|e| format!("connecting to {uri}: {}", text(&e)))?;
    cache.insert(uri.to_owned(), conn.clone());
    Ok(conn)
}

fn text(e: &virt::error::Error) -> String {
    e.message().to_owned()
}

fn is(e: &virt::error::Error, code: ErrorNumber) -> bool {
    e.code() == code
}

/// The libvirt domain name of node `id`.
pub fn domain_name(id: &str) -> String {
    format!("{DOMAIN_PREFIX}{id}")
}

/// The tap (and OVS port) of node `id`: stable across broker versions, as
/// a port made by one must be found by the next.
pub fn tap_name(id: &str) -> String {
    // 64-bit FNV-1a, whose constants never change (std's hasher may).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{TAP_PREFIX}{:012x}", h & 0xffff_ffff_ffff)
}

/// Why `node` cannot be made, if it cannot: checked before anything is.
fn check(node: &NodeSpec) -> Result<(), String> {
    let id_ok = !node.id.is_empty()
        && node.id.len() <= 64
        && node
            .id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !id_ok {
        return Err(format!(
            "node id {:?} must be 1 to 64 of A-Z a-z 0-9 - _ .",
            node.id
        ));
    }
    if node.vcpus == 0 {
        return Err("vcpus must be at least 1".into());
    }
    if node.memory_mib < 16 {
        return Err(format!(
            "memory_mib {} is below the 16 MiB a kernel needs",
            node.memory_mib
        ));
    }
    if node.mtu < 68 {
        return Err(format!("mtu {} is below IPv4's minimum of 68", node.mtu));
    }
    if let Some((_, prefix)) = node.ip {
        if prefix > 32 {
            return Err(format!("prefix length {prefix} is over 32"));
        }
    }
    if let Some(key) = &node.ssh_authorized_key {
        if key.trim().is_empty() || key.chars().any(char::is_control) {
            return Err("the SSH key is not a single OpenSSH public key line".into());
        }
        if key.trim().len() > MAX_SSH_KEY {
            return Err(format!(
                "the SSH key is {} bytes; a libvirt node takes it on its kernel command line, \
                 which holds {MAX_SSH_KEY} at most (an ed25519 or RSA-4096 key fits)",
                key.trim().len()
            ));
        }
    }
    Ok(())
}

fn mac_text(mac: &[u8; 6]) -> String {
    let parts: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(":")
}

/// What the domain's `<iris:node>` element records: the node's spec as
/// the broker gave it, compared when a create is repeated.
fn metadata_attributes(node: &NodeSpec) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("id".into(), node.id.clone());
    m.insert("vi".into(), node.vi.to_string());
    m.insert("mac".into(), mac_text(&node.mac));
    if let Some((ip, prefix)) = node.ip {
        m.insert("ip".into(), format!("{ip}/{prefix}"));
    }
    m.insert("vcpus".into(), node.vcpus.to_string());
    m.insert("memory-mib".into(), node.memory_mib.to_string());
    m.insert("disk-gib".into(), node.disk_gib.to_string());
    m.insert("mtu".into(), node.mtu.to_string());
    m.insert("tap".into(), tap_name(&node.id));
    m
}

/// `s` as XML character data or attribute value.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// The domain XML of `node` (see <https://libvirt.org/formatdomain.html>),
/// its disk (when its flavor has one) at `disk`.
pub fn domain_xml(config: &Config, node: &NodeSpec, disk: &Path) -> Result<String, String> {
    check(node)?;
    let name = domain_name(&node.id);
    let image = &config.image;
    let mut cmdline = image.cmdline.trim().to_owned();
    if let Some((ip, prefix)) = node.ip {
        if !cmdline.is_empty() {
            cmdline.push(' ');
        }
        let _ = write!(cmdline, "iris.ip={ip}/{prefix}");
    }
    if let Some(key) = &node.ssh_authorized_key {
        // The guest's /init decodes it into the SSH user's
        // authorized_keys: base64 keeps the key's spaces one argument.
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(key.trim());
        if !cmdline.is_empty() {
            cmdline.push(' ');
        }
        let _ = write!(cmdline, "iris.ssh={b64}");
    }
    let mut x = String::new();
    let _ = writeln!(x, "<domain type='{}'>", config.accel.domain_type());
    let _ = writeln!(x, "  <name>{}</name>", escape(&name));
    let _ = write!(
        x,
        "  <metadata>\n    <{METADATA_PREFIX}:node xmlns:{METADATA_PREFIX}='{METADATA_NS}'"
    );
    for (k, v) in metadata_attributes(node) {
        let _ = write!(x, " {k}='{}'", escape(&v));
    }
    let _ = writeln!(x, "/>\n  </metadata>");
    let _ = writeln!(x, "  <memory unit='MiB'>{}</memory>", node.memory_mib);
    let _ = writeln!(x, "  <vcpu>{}</vcpu>", node.vcpus);
    x.push_str("  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n");
    if let Some(firmware) = &image.firmware {
        let _ = writeln!(
            x,
            "    <loader type='rom'>{}</loader>",
            escape(&firmware.to_string_lossy())
        );
    }
    let _ = writeln!(
        x,
        "    <kernel>{}</kernel>",
        escape(&image.kernel.to_string_lossy())
    );
    let _ = writeln!(
        x,
        "    <initrd>{}</initrd>",
        escape(&image.initrd.to_string_lossy())
    );
    let _ = writeln!(x, "    <cmdline>{}</cmdline>", escape(&cmdline));
    x.push_str("  </os>\n");
    let _ = writeln!(x, "  <cpu mode='{}'/>", config.accel.cpu_mode());
    x.push_str(
        "  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n  \
         <on_crash>destroy</on_crash>\n  <devices>\n",
    );
    if node.disk_gib > 0 {
        let _ = writeln!(
            x,
            "    <disk type='file' device='disk'>\n      <driver name='qemu' type='raw'/>\n      \
             <source file='{}'/>\n      <target dev='vda' bus='virtio'/>\n    </disk>",
            escape(&disk.to_string_lossy())
        );
    }
    // The NIC offers the guest no checksum or segmentation offload: the
    // OVS userspace datapath reads the tap as it comes and drops frames
    // whose checksum was left to a NIC, so a guest's own TCP (its SYN-ACK)
    // never got through while ping and its kernel's RSTs did (the netns
    // driver turns the same offloads off with ethtool).
    let _ = writeln!(
        x,
        "    <interface type='ethernet'>\n      <mac address='{}'/>\n      \
         <target dev='{}' managed='yes'/>\n      <model type='virtio'/>\n      \
         <driver>\n        <host csum='off' gso='off' tso4='off' tso6='off' ecn='off' \
         ufo='off'/>\n      </driver>\n      \
         <mtu size='{}'/>\n    </interface>",
        mac_text(&node.mac),
        tap_name(&node.id),
        node.mtu
    );
    match &config.console_dir {
        Some(dir) => {
            let path = dir.join(format!("{name}.console"));
            let _ = writeln!(
                x,
                "    <serial type='file'>\n      <source path='{}'/>\n    </serial>",
                escape(&path.to_string_lossy())
            );
        }
        None => x.push_str("    <serial type='pty'/>\n"),
    }
    // Nothing the node does not use: a USB controller and a balloon cost
    // boot time and memory.
    x.push_str(
        "    <controller type='usb' model='none'/>\n    <memballoon model='none'/>\n  \
         </devices>\n</domain>\n",
    );
    Ok(x)
}

/// The attributes of `xml`'s `<node>` element in [`METADATA_NS`]: in a
/// whole domain XML, or as libvirt returns the element alone (without its
/// namespace, which the caller named).
fn parse_metadata(xml: &str) -> Result<BTreeMap<String, String>, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("its metadata: {e}"))?;
    let root = doc.root_element();
    let node = doc
        .descendants()
        .find(|n| n.has_tag_name((METADATA_NS, "node")))
        .or_else(|| {
            (root.has_tag_name("node") && root.tag_name().namespace().is_none()).then_some(root)
        })
        .ok_or_else(|| format!("no <node> element of {METADATA_NS} in its metadata"))?;
    Ok(node
        .attributes()
        .map(|a| (a.name().to_owned(), a.value().to_owned()))
        .collect())
}

/// What a domain's metadata says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    /// Iris made it, for the node with this spec.
    Iris(BTreeMap<String, String>),
    /// It has no Iris metadata: someone else's domain.
    Foreign,
    /// It was undefined after it was looked up.
    Gone,
}

fn owner_of(dom: &Domain) -> Result<Owner, String> {
    let kind = virt::sys::VIR_DOMAIN_METADATA_ELEMENT as i32;
    match dom.get_metadata(kind, Some(METADATA_NS), 0) {
        Ok(xml) => parse_metadata(&xml).map(Owner::Iris),
        Err(e) if is(&e, ErrorNumber::NoDomainMetadata) => Ok(Owner::Foreign),
        Err(e) if is(&e, ErrorNumber::NoDomain) => Ok(Owner::Gone),
        Err(e) => Err(format!("reading its metadata: {}", text(&e))),
    }
}

/// Defines and starts the domain, or finds it as asked. A domain that
/// fails to start is undefined again.
fn ensure_domain(
    conn: &Connect,
    name: &str,
    xml: &str,
    want: &BTreeMap<String, String>,
) -> Result<(), String> {
    match Domain::lookup_by_name(conn, name) {
        Ok(dom) => {
            match owner_of(&dom)? {
                Owner::Foreign => {
                    return Err(format!(
                        "a domain named {name} exists that Iris did not make; it is left alone"
                    ))
                }
                Owner::Gone => {
                    return Err(format!(
                        "domain {name} was removed while being created; ask again"
                    ))
                }
                Owner::Iris(have) if &have != want => {
                    return Err(format!(
                        "domain {name} exists with another spec ({}); delete the node first",
                        differences(&have, want)
                    ))
                }
                Owner::Iris(_) => {}
            }
            if !dom.is_active().map_err(|e| text(&e))? {
                dom.create()
                    .map_err(|e| format!("starting domain {name}: {}", text(&e)))?;
            }
            Ok(())
        }
        Err(e) if is(&e, ErrorNumber::NoDomain) => {
            let dom = Domain::define_xml(conn, xml)
                .map_err(|e| format!("defining domain {name}: {}", text(&e)))?;
            if let Err(e) = dom.create() {
                let why = format!("starting domain {name}: {}", text(&e));
                return Err(match dom.undefine() {
                    Ok(()) => why,
                    Err(u) => format!("{why}; undefining it again failed too: {}", text(&u)),
                });
            }
            Ok(())
        }
        Err(e) => Err(format!("looking up domain {name}: {}", text(&e))),
    }
}

fn differences(have: &BTreeMap<String, String>, want: &BTreeMap<String, String>) -> String {
    let keys: std::collections::BTreeSet<&String> = have.keys().chain(want.keys()).collect();
    let diffs: Vec<String> = keys
        .into_iter()
        .filter(|k| have.get(*k) != want.get(*k))
        .map(|k| {
            let show = |v: Option<&String>| v.map_or("none".to_owned(), Clone::clone);
            format!("{k} {} wanted {}", show(have.get(k)), show(want.get(k)))
        })
        .collect();
    diffs.join(", ")
}

/// Stops and undefines the domain of node `name` if it exists and is
/// Iris's.
fn remove_domain(conn: &Connect, name: &str) -> Result<(), String> {
    let dom = match Domain::lookup_by_name(conn, name) {
        Ok(dom) => dom,
        Err(e) if is(&e, ErrorNumber::NoDomain) => return Ok(()),
        Err(e) => return Err(format!("looking up domain {name}: {}", text(&e))),
    };
    match owner_of(&dom)? {
        Owner::Iris(_) => {}
        Owner::Gone => return Ok(()),
        Owner::Foreign => {
            return Err(format!(
                "a domain named {name} exists that Iris did not make; it is left alone"
            ))
        }
    }
    if dom.is_active().map_err(|e| text(&e))? {
        match dom.destroy() {
            Ok(()) => {}
            // It stopped by itself in between.
            Err(e) if is(&e, ErrorNumber::OperationInvalid) => {}
            Err(e) => return Err(format!("stopping domain {name}: {}", text(&e))),
        }
    }
    match dom.undefine() {
        Ok(()) => Ok(()),
        Err(e) if is(&e, ErrorNumber::NoDomain) => Ok(()),
        Err(e) => Err(format!("undefining domain {name}: {}", text(&e))),
    }
}

async fn vswitch(pm: &PmTarget) -> Result<Vswitch, String> {
    let remote: Remote = pm
        .ovsdb
        .parse()
        .map_err(|e| format!("the OVSDB remote of PM {}: {e}", pm.name))?;
    Vswitch::connect(&remote)
        .await
        .map_err(|e| format!("connecting to the OVSDB of PM {} ({remote}): {e}", pm.name))
}

/// Adds the node's tap to the PM's bridge in its VI. On failure no port of
/// the node is left (one an earlier attempt made included).
async fn plug(pm: &PmTarget, node: &NodeSpec, tap: &str) -> Result<(), String> {
    let vs = vswitch(pm).await?;
    let mut port = VmPortSpec::new(tap, node.vi.to_string());
    let ids = [
        ("attached-mac", mac_text(&node.mac)),
        ("iface-id", node.id.clone()),
        ("vm-id", node.id.clone()),
        ("iface-status", "active".to_owned()),
    ];
    for (k, v) in ids {
        port.external_ids.insert(k.to_owned(), v);
    }
    let mut result = vs
        .ensure_vm_port(&pm.bridge, &port)
        .await
        .map(drop)
        .map_err(|e| format!("plugging {tap} into {} of PM {}: {e}", pm.bridge, pm.name));
    if let Err(why) = &mut result {
        if let Err(e) = remove_port(&vs, pm, tap).await {
            let _ = write!(why, "; rolling back, {e}");
        }
    }
    vs.client().close();
    result
}

/// Takes `tap` off the PM's bridge, if it is there (a bridge that is not
/// there has no port of the node either).
async fn remove_port(vs: &Vswitch, pm: &PmTarget, tap: &str) -> Result<(), String> {
    if vs.bridge(&pm.bridge).is_none() {
        return Ok(());
    }
    vs.remove_port(&pm.bridge, tap)
        .await
        .map(drop)
        .map_err(|e| format!("unplugging {tap} from {} of PM {}: {e}", pm.bridge, pm.name))
}

async fn unplug(pm: &PmTarget, tap: &str) -> Result<(), String> {
    let vs = vswitch(pm).await?;
    let result = remove_port(&vs, pm, tap).await;
    vs.client().close();
    result
}

#[async_trait]
impl ComputeDriver for LibvirtDriver {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn port(&self, node_id: &str) -> String {
        tap_name(node_id)
    }

    fn can_migrate(&self) -> Result<(), String> {
        // virDomainMigrate needs the two PMs' libvirtds to reach each other
        // (a migration URI, TLS or SSH between them, shared or copied
        // storage), none of which a PM's record says or Iris sets up.
        Err(
            "the libvirt driver does not migrate domains: a live migration needs the PMs' \
             libvirt daemons to reach each other and share the node's disk, which Iris does not \
             set up; delete the node and request another on the PM you want"
                .into(),
        )
    }

    async fn create(&self, pm: &PmTarget, node: &NodeSpec) -> Result<Created, DriverError> {
        let action = format!("create node {} on PM {}", node.id, pm.name);
        let disk = disk_path(&self.config, &pm.name, &node.id);
        let xml = domain_xml(&self.config, node, &disk).map_err(|r| failure(&action, r))?;
        let name = domain_name(&node.id);
        let tap = tap_name(&node.id);
        let want = metadata_attributes(node);
        let made_disk = if node.disk_gib > 0 {
            make_disk(&disk, node.disk_gib).map_err(|r| failure(&action, r))?
        } else {
            false
        };
        let n = name.clone();
        let defined = self
            .blocking(pm, &action, move |conn| {
                ensure_domain(conn, &n, &xml, &want)
            })
            .await;
        if let Err(mut e) = defined {
            // A disk of a domain that exists (another spec, someone
            // else's) stays; one this call made for nothing goes.
            if made_disk {
                if let Err(r) = remove_disk(&disk) {
                    let _ = write!(e.reason, "; rolling back, {r}");
                }
            }
            return Err(e);
        }
        if let Err(mut reason) = plug(pm, node, &tap).await {
            // Nothing of the node stays: no port (plug saw to that), and
            // not the domain nor its disk, whether this call or an earlier
            // one made them.
            let n = name.clone();
            let undo = self
                .blocking(pm, &action, move |conn| remove_domain(conn, &n))
                .await;
            let undo = undo.map_err(|e| e.reason).and_then(|()| remove_disk(&disk));
            if let Err(e) = undo {
                let _ = write!(reason, "; rolling back, {e}");
            }
            return Err(failure(&action, reason));
        }
        Ok(Created {
            port: tap,
            handle: name,
            nested_virtualization: self.config.accel == Accel::Kvm,
        })
    }

    async fn delete(&self, pm: &PmTarget, node_id: &str) -> Result<(), DriverError> {
        let action = format!("delete node {node_id} on PM {}", pm.name);
        let name = domain_name(node_id);
        self.blocking(pm, &action, move |conn| remove_domain(conn, &name))
            .await?;
        unplug(pm, &tap_name(node_id))
            .await
            .map_err(|r| failure(&action, r))?;
        remove_disk(&disk_path(&self.config, &pm.name, node_id)).map_err(|r| failure(&action, r))
    }

    async fn list(&self, pm: &PmTarget) -> Result<Vec<String>, DriverError> {
        let action = format!("list nodes on PM {}", pm.name);
        let ids = self
            .blocking(pm, &action, |conn| {
                let domains = conn
                    .list_all_domains(0)
                    .map_err(|e| format!("listing domains: {}", text(&e)))?;
                let mut ids = Vec::new();
                for dom in domains {
                    let name = dom.get_name().map_err(|e| text(&e))?;
                    if !name.starts_with(DOMAIN_PREFIX) {
                        continue;
                    }
                    match owner_of(&dom).map_err(|e| format!("domain {name}: {e}"))? {
                        Owner::Iris(m) => ids.extend(m.get("id").cloned()),
                        Owner::Foreign | Owner::Gone => {}
                    }
                }
                ids.sort();
                Ok(ids)
            })
            .await?;
        // A disk whose domain was never defined (a crash in between).
        let dir = self.config.state_dir.join(&pm.name);
        let mut ids = ids;
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name();
                let id = name
                    .to_str()
                    .and_then(|n| n.strip_prefix(DOMAIN_PREFIX))
                    .and_then(|n| n.strip_suffix(DISK_SUFFIX));
                if let Some(id) = id {
                    if !ids.iter().any(|i| i == id) {
                        ids.push(id.to_owned());
                    }
                }
            }
        }
        ids.sort();
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn node() -> NodeSpec {
        NodeSpec {
            id: "n-3f2a".into(),
            vi: 7,
            mac: [0x52, 0x54, 0x00, 0x12, 0x34, 0x56],
            ip: Some((Ipv4Addr::new(10, 0, 0, 5), 24)),
            vcpus: 2,
            memory_mib: 512,
            disk_gib: 1,
            mtu: 1450,
            ssh_authorized_key: None,
        }
    }

    fn config(accel: Accel) -> Config {
        Config {
            accel,
            image: BootImage {
                kernel: "/var/cache/k & <v>".into(),
                initrd: "/var/cache/initramfs.cpio".into(),
                firmware: Some("/usr/share/qemu/qboot.rom".into()),
                cmdline: "console=ttyS0 quiet".into(),
            },
            console_dir: Some("/run/iris".into()),
            state_dir: "/var/lib/iris".into(),
        }
    }

    const DISK: &str = "/var/lib/iris/pm1/iris-n-3f2a.img";

    fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, tag: &str) -> roxmltree::Node<'a, 'i> {
        n.children()
            .find(|c| c.has_tag_name(tag))
            .unwrap_or_else(|| panic!("no <{tag}> in <{}>", n.tag_name().name()))
    }

    #[test]
    fn the_domain_xml_has_the_nic_on_a_named_tap_the_cpu_passed_through_and_the_spec() {
        let xml = domain_xml(&config(Accel::Kvm), &node(), Path::new(DISK)).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let dom = doc.root_element();
        assert_eq!(dom.attribute("type"), Some("kvm"));
        assert_eq!(child(dom, "name").text(), Some("iris-n-3f2a"));
        let memory = child(dom, "memory");
        assert_eq!(
            (memory.attribute("unit"), memory.text()),
            (Some("MiB"), Some("512"))
        );
        assert_eq!(child(dom, "vcpu").text(), Some("2"));
        assert_eq!(
            child(dom, "cpu").attribute("mode"),
            Some("host-passthrough")
        );

        let os = child(dom, "os");
        assert_eq!(child(os, "kernel").text(), Some("/var/cache/k & <v>"));
        assert_eq!(
            child(os, "cmdline").text(),
            Some("console=ttyS0 quiet iris.ip=10.0.0.5/24")
        );
        assert_eq!(
            child(os, "loader").text(),
            Some("/usr/share/qemu/qboot.rom")
        );

        let devices = child(dom, "devices");
        let nics: Vec<_> = devices
            .children()
            .filter(|c| c.has_tag_name("interface"))
            .collect();
        assert_eq!(nics.len(), 1);
        let nic = nics[0];
        assert_eq!(nic.attribute("type"), Some("ethernet"));
        assert_eq!(
            child(nic, "mac").attribute("address"),
            Some("52:54:00:12:34:56")
        );
        let target = child(nic, "target");
        assert_eq!(target.attribute("dev"), Some(tap_name("n-3f2a").as_str()));
        assert_eq!(target.attribute("managed"), Some("yes"));
        assert_eq!(child(nic, "model").attribute("type"), Some("virtio"));
        assert_eq!(child(nic, "mtu").attribute("size"), Some("1450"));
        assert!(
            !nic.children().any(|c| c.has_tag_name("virtualport")),
            "the port is plugged through OVSDB, not by libvirt: {xml}"
        );
        let disk = child(devices, "disk");
        assert_eq!(
            (disk.attribute("type"), disk.attribute("device")),
            (Some("file"), Some("disk"))
        );
        assert_eq!(child(disk, "source").attribute("file"), Some(DISK));
        let target = child(disk, "target");
        assert_eq!(
            (target.attribute("dev"), target.attribute("bus")),
            (Some("vda"), Some("virtio"))
        );
        assert_eq!(child(disk, "driver").attribute("type"), Some("raw"));
        assert_eq!(
            disk_path(&config(Accel::Kvm), "pm1", "n-3f2a"),
            Path::new(DISK)
        );
        let serial = child(child(devices, "serial"), "source");
        assert_eq!(
            serial.attribute("path"),
            Some("/run/iris/iris-n-3f2a.console")
        );

        let meta = parse_metadata(&xml).unwrap();
        assert_eq!(meta, metadata_attributes(&node()));
        assert_eq!(meta["vi"], "7");
        assert_eq!(meta["id"], "n-3f2a");
    }

    #[test]
    fn under_tcg_the_domain_is_qemu_with_its_max_cpu_and_no_address_means_no_iris_ip() {
        let mut n = node();
        n.ip = None;
        n.disk_gib = 0;
        let xml = domain_xml(&config(Accel::Tcg), &n, Path::new(DISK)).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let dom = doc.root_element();
        assert_eq!(dom.attribute("type"), Some("qemu"));
        assert_eq!(child(dom, "cpu").attribute("mode"), Some("maximum"));
        let cmdline = child(child(dom, "os"), "cmdline").text().unwrap();
        assert_eq!(cmdline, "console=ttyS0 quiet");
        assert!(!parse_metadata(&xml).unwrap().contains_key("ip"));
        assert!(
            !xml.contains("<disk"),
            "a flavor without disk gets none: {xml}"
        );
    }

    #[test]
    fn the_ssh_key_is_on_the_kernel_command_line_in_base64() {
        use base64::Engine;
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB op@iaas";
        let n = NodeSpec {
            ssh_authorized_key: Some(key.into()),
            ..node()
        };
        let xml = domain_xml(&config(Accel::Kvm), &n, Path::new(DISK)).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let cmdline = child(child(doc.root_element(), "os"), "cmdline")
            .text()
            .unwrap();
        let b64 = cmdline
            .split(' ')
            .find_map(|w| w.strip_prefix("iris.ssh="))
            .unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(decoded, key.as_bytes());
    }

    #[test]
    fn bad_specs_are_refused_before_anything_is_made() {
        let bad = [
            NodeSpec {
                id: "a/b".into(),
                ..node()
            },
            NodeSpec {
                id: String::new(),
                ..node()
            },
            NodeSpec {
                id: "x".repeat(65),
                ..node()
            },
            NodeSpec { vcpus: 0, ..node() },
            NodeSpec {
                memory_mib: 8,
                ..node()
            },
            NodeSpec { mtu: 60, ..node() },
            NodeSpec {
                ip: Some((Ipv4Addr::new(10, 0, 0, 5), 33)),
                ..node()
            },
            NodeSpec {
                ssh_authorized_key: Some("ssh-ed25519 AAAA a@b\nssh-rsa AAAA x@y".into()),
                ..node()
            },
            NodeSpec {
                ssh_authorized_key: Some(format!("ssh-rsa {}", "A".repeat(1200))),
                ..node()
            },
        ];
        for n in bad {
            let err = domain_xml(&config(Accel::Kvm), &n, Path::new(DISK)).unwrap_err();
            assert!(!err.is_empty(), "{n:?}");
        }
    }

    #[test]
    fn taps_are_short_stable_and_differ_by_node() {
        let t = tap_name("n-3f2a");
        assert_eq!(t.len(), 15);
        assert!(t.starts_with(TAP_PREFIX));
        assert_eq!(t, tap_name("n-3f2a"));
        assert_ne!(t, tap_name("n-3f2b"));
        // Pinned: a broker upgrade must find the ports an older one made.
        assert_eq!(tap_name(""), "irv9ce484222325");
    }

    #[test]
    fn metadata_is_read_as_libvirt_returns_it_and_other_elements_are_not_taken_for_it() {
        let alone = "<node id='n1' vi='7' mac='52:54:00:00:00:01'/>";
        let m = parse_metadata(alone).unwrap();
        assert_eq!((m["id"].as_str(), m["vi"].as_str()), ("n1", "7"));
        assert!(parse_metadata("<other id='n1'/>").is_err());
        assert!(parse_metadata("<node xmlns='urn:elsewhere' id='n1'/>").is_err());
    }

    #[test]
    fn a_spec_difference_is_named() {
        let want = metadata_attributes(&node());
        let mut have = want.clone();
        have.insert("vcpus".into(), "4".into());
        have.remove("ip");
        let d = differences(&have, &want);
        assert!(d.contains("vcpus 4 wanted 2"), "{d}");
        assert!(d.contains("ip none wanted 10.0.0.5/24"), "{d}");
    }
}
