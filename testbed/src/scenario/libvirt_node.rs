//! `libvirt-node`: the broker's `libvirt` compute driver makes an L1 node
//! (a QEMU domain booting Iris's guest image) on an emulated PM through
//! that PM's own libvirtd ([`crate::guest::libvirtd`]), and a VM of the
//! same VI on another PM pings it through Iris.
//!
//! Checked: the node answers ping, and refuses a TCP connection to a
//! closed port (its RST crosses back); `ssh iris@<node>` from the VM with
//! the key the node was made with (an ed25519 key generated for the run)
//! runs a command in the guest, while another key and a password are
//! refused; the OVS port the driver made carries
//! the VI in `external_ids:iris-vi`; `list` names the node; a repeated
//! create changes nothing; a create whose domain cannot start (a kernel
//! that is not there) fails with libvirt's reason and leaves no domain,
//! port or tap; delete removes domain, port and tap, and a second delete
//! succeeds. Measured: from the create request to the first answered
//! ping (the target is 10 s on KVM), and the driver's own time.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use iris_api::compute::libvirt::{tap_name, LibvirtDriver};
use iris_api::compute::{ComputeDriver, DriverError, NodeSpec, PmTarget};
use serde::Serialize;
use serde_json::Value;

use super::harness::{check, ms, seed_guest, to_json, Harness};
use super::ScenarioError;
use crate::controller::ViEntry;
use crate::guest::libvirtd::{driver_config, Libvirtd};
use crate::guest::{image, Accel, GuestImage};
use crate::{ssh_login, Error, MacAddr, PmId, INTEGRATION_BRIDGE, VM_MTU};

const VI: u32 = 1;
const GRE_KEY: u32 = 1001;
const NODE: &str = "l1-0";
/// A guest boots in 1–2 s under KVM and in 10–20 s under TCG on a busy
/// 2-core host.
const BOOT: Duration = Duration::from_secs(90);

/// What `libvirt-node` measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub accelerator: Accel,
    pub accelerator_why: String,
    pub nested_virtualization: bool,
    /// The driver's `create`: domain defined and started, port plugged.
    pub create_ms: f64,
    /// From the create request to the guest's `/init` reporting `eth0`
    /// up on its console.
    pub request_to_booted_ms: f64,
    /// From the create request to the first ping the node answered, from
    /// a VM of its VI on another PM.
    pub request_to_ping_ms: f64,
    /// From the create request to the first command the VM ran in the
    /// node over SSH.
    pub request_to_ssh_ms: f64,
    pub delete_ms: f64,
    /// Why the create with a missing kernel failed, as the driver said.
    pub failed_create: String,
    /// How long that failed create took: the first domain of a fresh
    /// libvirtd, which probes QEMU's capabilities first.
    pub failed_create_ms: f64,
}

pub(super) fn run(h: &mut Harness) -> Result<Value, ScenarioError> {
    to_json(&measure(h)?)
}

fn driver_failed(e: DriverError) -> ScenarioError {
    ScenarioError::Failed(e.to_string())
}

/// Runs the scenario on `h` and returns what it measured.
pub fn measure(h: &mut Harness) -> Result<Report, ScenarioError> {
    let (accel, why) = Accel::detect();
    h.note(format!("accelerator {accel:?}: {why}"));
    let image = GuestImage::ensure()?;
    let pms = h.add_pms(&["pm1", "pm2"])?;
    let mut vi = ViEntry::new(VI, "acme", GRE_KEY);
    let pinger = h.add_vms(&mut vi, &[pms[1]])?[0];
    let (mac, ip) = seed_guest(&mut vi, 5)?;
    let keys = h.file("ssh");
    std::fs::create_dir_all(&keys).map_err(|e| Error::io_at("creating", &keys, e))?;
    let (operator, stranger) = (keys.join("operator"), keys.join("stranger"));
    let public = ssh_login::keygen(&operator)?;
    ssh_login::keygen(&stranger)?;
    h.bring_up(&pms, vec![vi], &[pinger])?;

    let libvirtd = Libvirtd::start(h.tb.pm(pms[0]))?;
    h.note(format!("libvirtd of pm1 at {}", libvirtd.uri()));
    let console_dir = libvirtd.console_dir();
    let driver = LibvirtDriver::new(driver_config(
        &image,
        accel,
        Some(console_dir.clone()),
        libvirtd.state_dir(),
    ));
    let target = target(h, pms[0], &libvirtd);
    let node = NodeSpec {
        id: NODE.into(),
        vi: VI,
        mac: mac.0,
        ip: Some((ip.addr(), ip.prefix_len())),
        vcpus: 1,
        memory_mib: 128,
        disk_gib: 1,
        mtu: u16::try_from(VM_MTU).unwrap_or(1500),
        ssh_authorized_key: Some(public),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting a tokio runtime", e))?;

    let t = Instant::now();
    let failed_create = fail_to_start(h, pms[0], &rt, &image, accel, &target, &libvirtd)?;
    let failed_create_took = t.elapsed();

    let requested = Instant::now();
    let created = rt
        .block_on(driver.create(&target, &node))
        .map_err(driver_failed)?;
    let create_took = requested.elapsed();
    h.note(format!(
        "driver create took {:.1} s: {created:?}",
        create_took.as_secs_f64()
    ));
    let console = console_dir.join(format!("{}.console", created.handle));
    let booted = wait_booted(&console, requested)?;
    h.wait_reachable(pinger, ip.addr())?;
    let answered = requested.elapsed();
    h.note(format!(
        "request to answering ping: {:.2} s (booted at {:.2} s)",
        answered.as_secs_f64(),
        booted.as_secs_f64()
    ));

    // TCP as well as ICMP: a connection to a port nobody listens on is
    // refused by the node's kernel, whose RST crosses back (a timeout,
    // exit 124, would mean its segments are lost or their checksums bad).
    let tcp = h.tb.vm(pinger).exec(&[
        "bash",
        "-c",
        "timeout 3 bash -c 'exec 3<>/dev/tcp/$0/23' \"$0\" 2>&1; echo exit=$?",
        &ip.addr().to_string(),
    ])?;
    check(tcp.contains("Connection refused"), || {
        format!("a TCP connection to the node's port 23 was not refused: {tcp}")
    })?;

    // The operator's login: dropbear starts right after eth0 is up.
    let addr = ip.addr().to_string();
    let command = "ip -o -4 addr show dev eth0";
    let since = Instant::now();
    let login = loop {
        let out = ssh(h, pinger, &operator, &[], &addr, command)?;
        if out.contains(&format!(" {ip} ")) || since.elapsed() > Duration::from_secs(20) {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    check(login.contains(&format!(" {ip} ")), || {
        let text = std::fs::read_to_string(&console).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(12).collect();
        format!(
            "ssh iris@{addr} with the node's key did not run `{command}` there: {login}\n\
             the node's console ends:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    })?;
    let ssh_answered = requested.elapsed();
    let other = ssh(h, pinger, &stranger, &[], &addr, "echo in")?;
    check(other.contains("Permission denied (publickey)."), || {
        format!("another key was not refused: {other}")
    })?;
    let password = ssh(
        h,
        pinger,
        &operator,
        ssh_login::PASSWORD_ONLY,
        &addr,
        "echo in",
    )?;
    check(password.contains("Permission denied (publickey)."), || {
        format!("a password was not refused (the server must offer public keys alone): {password}")
    })?;
    // QEMU gives the node the flavor's disk: a virtio vda of 1 GiB.
    let blk = std::process::Command::new("virsh")
        .args(["-c", &libvirtd.uri(), "domblkinfo", &created.handle, "vda"])
        .output()
        .map_err(|e| Error::io("running virsh domblkinfo", e))?;
    let blk =
        String::from_utf8_lossy(&blk.stdout).into_owned() + &String::from_utf8_lossy(&blk.stderr);
    let capacity = blk
        .lines()
        .find_map(|l| l.strip_prefix("Capacity:"))
        .and_then(|c| c.trim().parse::<u64>().ok());
    check(capacity == Some(1 << 30), || {
        format!("QEMU's vda of the node is not 1 GiB: {blk}")
    })?;
    let pm = h.tb.pm(pms[0]);
    let port_vi = pm.vsctl(&["get", "Interface", &created.port, "external_ids:iris-vi"])?;
    check(port_vi.trim().trim_matches('"') == VI.to_string(), || {
        format!("port {} has iris-vi {port_vi}, not {VI}", created.port)
    })?;
    let listed = rt.block_on(driver.list(&target)).map_err(driver_failed)?;
    check(listed == [NODE], || {
        format!("list says {listed:?}, not [{NODE}]")
    })?;
    let again = rt
        .block_on(driver.create(&target, &node))
        .map_err(driver_failed)?;
    check(again == created, || {
        format!("a repeated create gave {again:?}, not {created:?}")
    })?;
    let report =
        h.tb.vm(pinger)
            .ping(ip.addr(), 3, Duration::from_millis(100))?;
    check(report.all_replied(), || {
        format!("after the repeated create: {report:?}")
    })?;

    let t = Instant::now();
    rt.block_on(driver.delete(&target, NODE))
        .map_err(driver_failed)?;
    let delete_took = t.elapsed();
    nothing_left(h, pms[0], &libvirtd, &rt, &driver, &target, NODE)?;
    rt.block_on(driver.delete(&target, NODE))
        .map_err(driver_failed)?;

    Ok(Report {
        accelerator: accel,
        accelerator_why: why,
        nested_virtualization: created.nested_virtualization,
        create_ms: ms(create_took),
        request_to_booted_ms: ms(booted),
        request_to_ping_ms: ms(answered),
        request_to_ssh_ms: ms(ssh_answered),
        delete_ms: ms(delete_took),
        failed_create,
        failed_create_ms: ms(failed_create_took),
    })
}

/// `ssh` from `vm` to the node's user at `addr`: its stdout and stderr.
fn ssh(
    h: &Harness,
    vm: crate::VmId,
    key: &std::path::Path,
    extra: &[&str],
    addr: &str,
    command: &str,
) -> Result<String, ScenarioError> {
    let out = ssh_login::ssh(
        h.tb.vm(vm).netns().name(),
        key,
        extra,
        image::SSH_USER,
        addr,
        command,
    )?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// `pm` as the broker would describe it to the driver.
fn target(h: &Harness, pm: PmId, libvirtd: &Libvirtd) -> PmTarget {
    let pm = h.tb.pm(pm);
    PmTarget {
        name: pm.name().to_owned(),
        underlay_ip: pm.underlay_addr().addr(),
        ovsdb: pm.ovsdb_unix_target(),
        bridge: INTEGRATION_BRIDGE.to_owned(),
        endpoint: Some(libvirtd.uri()),
    }
}

/// A node whose kernel is not on the PM: the create fails with libvirt's
/// reason and leaves nothing. Returns that reason.
fn fail_to_start(
    h: &Harness,
    pm: PmId,
    rt: &tokio::runtime::Runtime,
    image: &GuestImage,
    accel: Accel,
    target: &PmTarget,
    libvirtd: &Libvirtd,
) -> Result<String, ScenarioError> {
    let mut broken = image.clone();
    broken.kernel = "/nonexistent/vmlinuz".into();
    let driver = LibvirtDriver::new(driver_config(&broken, accel, None, libvirtd.state_dir()));
    let node = NodeSpec {
        id: "l1-broken".into(),
        vi: VI,
        mac: MacAddr::local(9).0,
        ip: Some((Ipv4Addr::new(10, 0, 0, 9), 24)),
        vcpus: 1,
        memory_mib: 128,
        disk_gib: 1,
        mtu: 1500,
        ssh_authorized_key: None,
    };
    let err = match rt.block_on(driver.create(target, &node)) {
        Ok(created) => {
            return Err(ScenarioError::Failed(format!(
                "a node with a missing kernel was created: {created:?}"
            )))
        }
        Err(e) => e.to_string(),
    };
    check(err.contains("/nonexistent/vmlinuz"), || {
        format!("the failed create does not name the missing kernel: {err}")
    })?;
    nothing_left(h, pm, libvirtd, rt, &driver, target, &node.id)?;
    h.note(format!("a create with a missing kernel failed: {err}"));
    Ok(err)
}

/// No domain, disk (the driver lists those too), OVS port, tap or QEMU of
/// node `id` is left on `pm`.
fn nothing_left(
    h: &Harness,
    pm: PmId,
    libvirtd: &Libvirtd,
    rt: &tokio::runtime::Runtime,
    driver: &LibvirtDriver,
    target: &PmTarget,
    id: &str,
) -> Result<(), ScenarioError> {
    let listed = rt.block_on(driver.list(target)).map_err(driver_failed)?;
    check(!listed.iter().any(|n| n == id), || {
        format!("node {id} is still listed: {listed:?}")
    })?;
    let pm = h.tb.pm(pm);
    let tap = tap_name(id);
    let ports = pm.vsctl(&["list-ports", INTEGRATION_BRIDGE])?;
    check(!ports.lines().any(|p| p == tap), || {
        format!("port {tap} of node {id} is left on {INTEGRATION_BRIDGE}: {ports}")
    })?;
    let links = pm.exec(&["ip", "-o", "link"])?;
    check(!links.contains(&tap), || {
        format!("tap {tap} of node {id} is left in the PM: {links}")
    })?;
    let qemus = libvirtd.qemu_pids();
    check(qemus.is_empty(), || {
        format!("QEMU processes are left: {qemus:?}")
    })
}

/// Waits until the guest's console says `eth0` is configured; how long
/// since `since`.
fn wait_booted(console: &std::path::Path, since: Instant) -> Result<Duration, ScenarioError> {
    let what = format!("the console {}", console.display());
    crate::readiness::poll_until(&what, BOOT, || {
        let text = std::fs::read_to_string(console).unwrap_or_default();
        Ok(if text.contains(image::READY_MARK) {
            crate::readiness::Probe::Ready(since.elapsed())
        } else {
            crate::readiness::Probe::NotYet(text.lines().last().unwrap_or("").to_owned())
        })
    })
    .map_err(ScenarioError::from)
}
