//! `libvirt-node`: an operator asks the broker (`iris-api`, beside the
//! controller) for one L1 node on a PM that an administrator registered
//! with the `libvirt` driver and the URI of that PM's own libvirtd
//! ([`crate::guest::libvirtd`]); the broker makes a QEMU domain booting
//! Iris's guest image there, attaches it to the VI it created in the
//! controller, and a node of the same VI on another PM (the `netns`
//! driver's) pings it through Iris.
//!
//! Checked: the node is active on the PM asked for, answers ping, and
//! refuses a TCP connection to a closed port (its RST crosses back);
//! `ssh` as the node's SSH user with the VI's key (an ed25519 key
//! generated for the run) runs a command in the guest, while another key
//! and a password are refused; QEMU gives it the flavor's disk; the OVS
//! port the driver made carries the VI's tunnel key in
//! `external_ids:iris-vi`; a request whose domain cannot start (its
//! kernel gone from the PM) fails with libvirt's reason, leaves the node
//! in `error` and no domain, disk, port or tap, and deleting that node
//! removes it; deleting the active node removes domain, disk, port and
//! tap. Measured: from the node request to the operation's success, to
//! the guest's console saying its `eth0` is up, to the first answered
//! ping (the target is 10 s on KVM) and to the first SSH command.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use iris_api::compute::libvirt::{disk_path, domain_name, tap_name, Accel as DriverAccel, Config};
use serde::Serialize;
use serde_json::{json, Value};

use super::broker::{node_namespaces, ping_from, pms_under_controller, start_broker, Broker};
use super::harness::{check, ms, to_json, Harness};
use super::ScenarioError;
use crate::guest::libvirtd::{driver_config, Libvirtd};
use crate::guest::{image, Accel, GuestImage};
use crate::{ssh_login, Error, PmId, INTEGRATION_BRIDGE};

/// A guest boots in 1–2 s under KVM and in 10–20 s under TCG on a busy
/// 2-core host.
const BOOT: Duration = Duration::from_secs(90);

/// What `libvirt-node` measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub accelerator: Accel,
    pub accelerator_why: String,
    pub nested_virtualization: bool,
    /// From the node request to the broker's operation succeeding: domain
    /// defined and started, port plugged, registry seeded.
    pub request_to_active_ms: f64,
    /// From the node request to the guest's `/init` reporting `eth0` up on
    /// its console.
    pub request_to_booted_ms: f64,
    /// From the node request to the first ping the node answered, from a
    /// node of its VI on another PM.
    pub request_to_ping_ms: f64,
    /// From the node request to the first command run in the node over
    /// SSH.
    pub request_to_ssh_ms: f64,
    /// From the delete request to the operation's success.
    pub delete_ms: f64,
    /// Why the request whose kernel was gone failed, as the broker said.
    pub failed_create: String,
    /// How long that failed request took: the first domain of a fresh
    /// libvirtd, which probes QEMU's capabilities first.
    pub failed_create_ms: f64,
}

pub(super) fn run(h: &mut Harness) -> Result<Value, ScenarioError> {
    to_json(&measure(h)?)
}

/// The `[libvirt]` table of the broker's configuration for `config`, with
/// the kernel at `kernel`.
fn libvirt_table(config: &Config, kernel: &Path) -> String {
    let path = |p: &Path| format!("{:?}", p.display().to_string());
    let mut table = format!(
        "[libvirt]\nkernel = {}\ninitrd = {}\ncmdline = {:?}\naccel = \"{}\"\nstate_dir = {}\n",
        path(kernel),
        path(&config.image.initrd),
        config.image.cmdline,
        match config.accel {
            DriverAccel::Kvm => "kvm",
            DriverAccel::Tcg => "tcg",
        },
        path(&config.state_dir),
    );
    if let Some(f) = &config.image.firmware {
        table.push_str(&format!("firmware = {}\n", path(f)));
    }
    if let Some(d) = &config.console_dir {
        table.push_str(&format!("console_dir = {}\n", path(d)));
    }
    table
}

/// The address part of a node's `ip` (`10.1.1.5/24`).
fn node_ip(node: &Value) -> String {
    let ip = node["ip"].as_str().unwrap_or_default();
    ip.split('/').next().unwrap_or_default().to_owned()
}

/// Asks for one node of flavor `l1` on VI `vi` on PM `pm`: the
/// operation's id.
fn request(broker: &Broker, token: &str, vi: &str, pm: &str) -> Result<String, ScenarioError> {
    let op = broker.call(
        token,
        "POST",
        "/v1/nodes",
        Some(json!({"vi": vi, "flavor": "l1", "count": 1, "placement": {"pm": pm}})),
        202,
    )?;
    Ok(op["id"].as_str().unwrap_or_default().to_owned())
}

/// The node operation `op` made.
fn node_of(broker: &Broker, token: &str, op: &Value) -> Result<Value, ScenarioError> {
    let id = op["nodes"][0].as_str().unwrap_or_default();
    broker.call(token, "GET", &format!("/v1/nodes/{id}"), None, 200)
}

/// Runs the scenario on `h` and returns what it measured.
pub fn measure(h: &mut Harness) -> Result<Report, ScenarioError> {
    let (accel, why) = Accel::detect();
    h.note(format!("accelerator {accel:?}: {why}"));
    let image = GuestImage::ensure()?;
    // As in production: OpenFlow over TLS and OVSDB over SSL, each PM
    // certified by the run's CA and reached over a management link.
    h.use_tls()?;
    let (pms, sweep) = pms_under_controller(h, &["pm1", "pm2"])?;
    let pm_ns = &sweep.0;
    let keys = h.file("ssh");
    std::fs::create_dir_all(&keys).map_err(|e| Error::io_at("creating", &keys, e))?;
    let (operator, stranger) = (keys.join("operator"), keys.join("stranger"));
    let public = ssh_login::keygen(&operator)?;
    ssh_login::keygen(&stranger)?;

    let libvirtd = Libvirtd::start(h.tb.pm(pms[0]))?;
    h.note(format!("libvirtd of pm1 at {}", libvirtd.uri()));
    let console_dir = libvirtd.console_dir();
    let state_dir = libvirtd.state_dir();
    std::fs::create_dir_all(&state_dir).map_err(|e| Error::io_at("creating", &state_dir, e))?;
    let driver = driver_config(&image, accel, Some(console_dir.clone()), state_dir);
    // The broker boots the kernel through a link of its own, which the
    // failing request takes away.
    let kernel = h.file("vmlinuz");
    std::os::unix::fs::symlink(&image.kernel, &kernel)
        .map_err(|e| Error::io_at("linking", &kernel, e))?;
    let broker = start_broker(h, &libvirt_table(&driver, &kernel))?;
    h.note(format!("iris-api listening on {}", broker.addr));

    let (pm1, pm2) = (h.tb.pm(pms[0]), h.tb.pm(pms[1]));
    broker.register_pm(pm1, 4, "libvirt", &libvirtd.uri())?;
    broker.register_pm(pm2, 4, "netns", pm2.netns().name())?;
    let t = broker.provider("acme")?;
    let (vi_id, key) = broker.flavor_and_vi(&t, ("l1", 128, 1), Some(public.trim()))?;
    let op = request(&broker, &t, &vi_id, pm2.name())?;
    let pinger = node_of(&broker, &t, &broker.wait(&t, &op)?)?;
    let from = format!(
        "irisn-{}-{}",
        pm_ns[1],
        pinger["id"].as_str().unwrap_or_default()
    );
    check(node_namespaces(&pm_ns[1]).contains(&from), || {
        format!("the netns node {pinger} has no namespace {from}")
    })?;

    let t0 = Instant::now();
    let failed_create = fail_to_start(h, pms[0], &libvirtd, &driver, &broker, &t, &vi_id, &kernel)?;
    let failed_create_took = t0.elapsed();
    std::os::unix::fs::symlink(&image.kernel, &kernel)
        .map_err(|e| Error::io_at("linking", &kernel, e))?;

    let requested = Instant::now();
    let op = request(&broker, &t, &vi_id, pm1.name())?;
    let op = broker.wait(&t, &op)?;
    let active = requested.elapsed();
    let node = node_of(&broker, &t, &op)?;
    let id = node["id"].as_str().unwrap_or_default().to_owned();
    h.note(format!(
        "node active in {:.2} s: {node}",
        active.as_secs_f64()
    ));
    check(
        node["state"] == "active" && node["pm"] == pm1.name(),
        || format!("the node is not active on {}: {node}", pm1.name()),
    )?;
    let console = console_dir.join(format!("{}.console", domain_name(&id)));
    let booted = wait_booted(&console, requested)?;
    let ip = node_ip(&node);
    check(ping_from(&from, &ip, BOOT), || {
        format!("the node {ip} does not answer {from}")
    })?;
    let answered = requested.elapsed();
    h.note(format!(
        "request to answering ping: {:.2} s (active at {:.2} s, booted at {:.2} s)",
        answered.as_secs_f64(),
        active.as_secs_f64(),
        booted.as_secs_f64()
    ));

    // TCP as well as ICMP: a connection to a port nobody listens on is
    // refused by the node's kernel, whose RST crosses back (a timeout,
    // exit 124, would mean its segments are lost or their checksums bad).
    let tcp = Command::new("ip")
        .args(["netns", "exec", &from, "bash", "-c"])
        .arg("timeout 3 bash -c 'exec 3<>/dev/tcp/$0/23' \"$0\" 2>&1; echo exit=$?")
        .arg(&ip)
        .output()
        .map_err(|e| Error::io("connecting to the node's port 23", e))?;
    let tcp = String::from_utf8_lossy(&tcp.stdout);
    check(tcp.contains("Connection refused"), || {
        format!("a TCP connection to the node's port 23 was not refused: {tcp}")
    })?;

    // The operator's login: dropbear starts right after eth0 is up.
    let user = node["ssh_user"].as_str().unwrap_or_default().to_owned();
    check(user == image::SSH_USER, || {
        format!("the node's SSH user is not {}: {node}", image::SSH_USER)
    })?;
    let command = "ip -o -4 addr show dev eth0";
    let want = format!(" {} ", node["ip"].as_str().unwrap_or_default());
    let since = Instant::now();
    let login = loop {
        let out = ssh(&from, &operator, &[], &user, &ip, command)?;
        if out.contains(&want) || since.elapsed() > Duration::from_secs(20) {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    check(login.contains(&want), || {
        let text = std::fs::read_to_string(&console).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(12).collect();
        format!(
            "ssh {user}@{ip} with the VI's key did not run `{command}` there: {login}\n\
             the node's console ends:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    })?;
    let ssh_answered = requested.elapsed();
    let other = ssh(&from, &stranger, &[], &user, &ip, "echo in")?;
    check(other.contains("Permission denied (publickey)."), || {
        format!("another key was not refused: {other}")
    })?;
    let password = ssh(
        &from,
        &operator,
        ssh_login::PASSWORD_ONLY,
        &user,
        &ip,
        "echo in",
    )?;
    check(password.contains("Permission denied (publickey)."), || {
        format!("a password was not refused (the server must offer public keys alone): {password}")
    })?;
    // QEMU gives the node the flavor's disk: a virtio vda of 1 GiB.
    let blk = Command::new("virsh")
        .args([
            "-c",
            &libvirtd.uri(),
            "domblkinfo",
            &domain_name(&id),
            "vda",
        ])
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
    let tap = tap_name(&id);
    let port_vi = pm1.vsctl(&["get", "Interface", &tap, "external_ids:iris-vi"])?;
    check(port_vi.trim().trim_matches('"') == key.to_string(), || {
        format!("port {tap} has iris-vi {port_vi}, not the VI's tunnel key {key}")
    })?;

    let t0 = Instant::now();
    let op = broker.call(&t, "DELETE", &format!("/v1/nodes/{id}"), None, 202)?;
    broker.wait(&t, op["id"].as_str().unwrap_or_default())?;
    let delete_took = t0.elapsed();
    broker.call(&t, "GET", &format!("/v1/nodes/{id}"), None, 404)?;
    nothing_left(h, pms[0], &libvirtd, &driver, &id)?;
    // The pinger goes too (its sshd with it), then the VI.
    let pinger = pinger["id"].as_str().unwrap_or_default();
    let op = broker.call(&t, "DELETE", &format!("/v1/nodes/{pinger}"), None, 202)?;
    broker.wait(&t, op["id"].as_str().unwrap_or_default())?;
    broker.call(&t, "DELETE", &format!("/v1/vis/{vi_id}"), None, 204)?;
    check(node_namespaces(&pm_ns[1]).is_empty(), || {
        format!("node namespaces are left: {:?}", node_namespaces(&pm_ns[1]))
    })?;
    broker.stop()?;

    Ok(Report {
        accelerator: accel,
        accelerator_why: why,
        nested_virtualization: node["nested_virtualization"] == true,
        request_to_active_ms: ms(active),
        request_to_booted_ms: ms(booted),
        request_to_ping_ms: ms(answered),
        request_to_ssh_ms: ms(ssh_answered),
        delete_ms: ms(delete_took),
        failed_create,
        failed_create_ms: ms(failed_create_took),
    })
}

/// `ssh` from namespace `ns` to `user` at `addr`: its stdout and stderr.
fn ssh(
    ns: &str,
    key: &Path,
    extra: &[&str],
    user: &str,
    addr: &str,
    command: &str,
) -> Result<String, ScenarioError> {
    let out = ssh_login::ssh(ns, key, extra, user, addr, command)?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// A node request on `pm` whose kernel is gone (the link `kernel`,
/// removed): the operation fails with libvirt's reason naming it, the
/// node is left in `error` and nothing of it on the PM, and deleting it
/// removes it. Returns that reason.
#[allow(clippy::too_many_arguments)]
fn fail_to_start(
    h: &Harness,
    pm: PmId,
    libvirtd: &Libvirtd,
    config: &Config,
    broker: &Broker,
    token: &str,
    vi: &str,
    kernel: &Path,
) -> Result<String, ScenarioError> {
    std::fs::remove_file(kernel).map_err(|e| Error::io_at("removing", kernel, e))?;
    let op = request(broker, token, vi, h.tb.pm(pm).name())?;
    let op = broker.finish(token, &op)?;
    let err = op["error"].as_str().unwrap_or_default().to_owned();
    check(op["status"] == "failed", || {
        format!("a node with a missing kernel was made: {op}")
    })?;
    let kernel = kernel.display().to_string();
    check(err.contains(&kernel), || {
        format!("the failed request does not name the missing kernel {kernel}: {op}")
    })?;
    let node = node_of(broker, token, &op)?;
    check(node["state"] == "error", || {
        format!("the node of the failed request is not in error: {node}")
    })?;
    let id = node["id"].as_str().unwrap_or_default().to_owned();
    nothing_left(h, pm, libvirtd, config, &id)?;
    let op = broker.call(token, "DELETE", &format!("/v1/nodes/{id}"), None, 202)?;
    broker.wait(token, op["id"].as_str().unwrap_or_default())?;
    broker.call(token, "GET", &format!("/v1/nodes/{id}"), None, 404)?;
    h.note(format!("a request with a missing kernel failed: {err}"));
    Ok(err)
}

/// No domain, disk, OVS port, tap or QEMU of node `id` is left on `pm`.
fn nothing_left(
    h: &Harness,
    pm: PmId,
    libvirtd: &Libvirtd,
    config: &Config,
    id: &str,
) -> Result<(), ScenarioError> {
    let pm = h.tb.pm(pm);
    let domains = Command::new("virsh")
        .args(["-c", &libvirtd.uri(), "list", "--all", "--name"])
        .output()
        .map_err(|e| Error::io("running virsh list", e))?;
    check(domains.status.success(), || {
        format!(
            "virsh list failed: {}",
            String::from_utf8_lossy(&domains.stderr)
        )
    })?;
    let domains = String::from_utf8_lossy(&domains.stdout);
    let name = domain_name(id);
    check(!domains.lines().any(|d| d.trim() == name), || {
        format!("domain {name} of node {id} is left: {domains}")
    })?;
    let disk = disk_path(config, pm.name(), id);
    check(!disk.exists(), || {
        format!("disk {} of node {id} is left", disk.display())
    })?;
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
fn wait_booted(console: &Path, since: Instant) -> Result<Duration, ScenarioError> {
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
