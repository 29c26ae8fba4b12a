//! The `iris-controller` process against real Open vSwitch: emulated PMs
//! from the testbed library (one ovsdb-server and ovs-vswitchd each, in
//! their own namespace, userspace datapath), the controller reaching them
//! over a unix socket linked into each PM's run directory and over OVSDB.
//! Needs root and Open vSwitch; fails (never skips) without them.

#![allow(clippy::unwrap_used)]

use iris_testbed::{MacAddr, PmId, PmSpec, Testbed, UnderlaySpec, VmSpec};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The VI every VM of these tests belongs to.
const VI: u32 = 1;

/// A running `iris-controller` process.
struct Controller {
    child: Child,
    api: SocketAddr,
    log: PathBuf,
}

impl Controller {
    /// Starts the binary on `config` and waits until it listens.
    fn start(config: &Path, log: &Path) -> Self {
        let err = std::fs::File::create(log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_iris-controller"))
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info,iris_controller=debug")
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        let mut c = Self {
            child,
            api: "0.0.0.0:0".parse().unwrap(),
            log: log.to_owned(),
        };
        let line = c.wait_log("iris-controller listening", Duration::from_secs(20));
        let api = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("api="))
            .unwrap();
        c.api = api.parse().unwrap();
        c
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The first log line containing `needle`, waiting up to `timeout`.
    fn wait_log(&mut self, needle: &str, timeout: Duration) -> String {
        let until = Instant::now() + timeout;
        loop {
            let text = self.log_text();
            if let Some(l) = text.lines().find(|l| l.contains(needle)) {
                return l.to_owned();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("controller exited ({status}) before logging {needle:?}:\n{text}");
            }
            assert!(
                Instant::now() < until,
                "no {needle:?} in the controller's log:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One HTTP/1.1 request; returns (status, body).
    fn http(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let mut s = TcpStream::connect(self.api).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let body = body.unwrap_or("");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: iris\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut reader = BufReader::new(s);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        let code = status.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut rest = String::new();
        reader.read_to_string(&mut rest).unwrap();
        let body = rest.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        (code, dechunk(body))
    }

    fn get_json(&self, path: &str) -> serde_json::Value {
        let (code, body) = self.http("GET", path, None);
        assert_eq!(code, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// A metric's value from `/metrics`.
    fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.http("GET", "/metrics", None);
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    }

    /// Waits until `/healthz` reports `switches` ready switches and
    /// `ovsdb` connected OVSDB sessions.
    fn wait_ready(&self, switches: u64, ovsdb: u64) {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let h = self.get_json("/healthz");
            if h["switches_ready"] == switches && h["ovsdb_connected"] == ovsdb {
                return;
            }
            assert!(
                Instant::now() < until,
                "not ready: {h}\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, and wait for a clean exit.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exit {status}:\n{}", self.log_text());
                return;
            }
            assert!(Instant::now() < until, "controller did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The body of a chunked HTTP response (axum chunks what it streams).
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_owned();
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    if out.is_empty() {
        body.to_owned()
    } else {
        out
    }
}

/// A testbed with `pms` PMs on one underlay that have pinged each other (so
/// OVS knows the tunnel endpoints' MACs), and one VM of [`VI`] per PM
/// listed in `vms`, at 10.0.0.<n>.
struct World {
    tb: Testbed,
    pms: Vec<PmId>,
    socket: PathBuf,
}

fn world(label: &str, pms: usize, vms: &[usize]) -> World {
    let mut tb = Testbed::new(label).unwrap_or_else(|e| panic!("cannot build a testbed: {e}"));
    let dc = tb
        .add_underlay(UnderlaySpec::new("dc", "192.168.60.0/24".parse().unwrap()))
        .unwrap();
    let pms: Vec<PmId> = (1..=pms)
        .map(|i| tb.add_pm(PmSpec::new(&format!("pm{i}"), dc)).unwrap())
        .collect();
    for (n, &pm) in vms.iter().enumerate() {
        let n = u32::try_from(n + 1).unwrap();
        tb.add_vm(VmSpec::new(
            &format!("vm{n}"),
            pms[pm],
            VI,
            MacAddr::local(n),
            format!("10.0.0.{n}/24").parse().unwrap(),
        ))
        .unwrap();
    }
    for &a in &pms {
        for &b in &pms {
            if a != b {
                let to = tb.pm(b).underlay_addr().addr();
                let r = tb
                    .pm(a)
                    .ping_underlay(to, 1, Duration::from_millis(100))
                    .unwrap();
                assert!(r.all_replied(), "underlay {to}: {r:?}");
            }
        }
    }
    let socket = tb.state_dir().join("iris-of.sock");
    World { tb, pms, socket }
}

impl World {
    /// The `[[host]]` table of PM `i` (0-based).
    fn host_toml(&self, i: usize) -> String {
        let pm = self.tb.pm(self.pms[i]);
        let controller = pm.link_controller_socket(&self.socket).unwrap();
        format!(
            "[[host]]\nname = \"{}\"\nunderlay_ip = \"{}\"\nrole = \"compute\"\n\
             ovsdb = \"{}\"\ncontroller = \"{controller}\"\n",
            pm.name(),
            pm.underlay_addr().addr(),
            pm.ovsdb_unix_target()
        )
    }

    /// A configuration managing the first `managed` PMs; returns its path.
    fn config(&self, managed: usize) -> PathBuf {
        let mut text = format!(
            "listen = \"unix:{}\"\napi = \"127.0.0.1:0\"\nstore = \"{}\"\n\n\
             [bridge]\nname = \"br-int\"\ndatapath_type = \"netdev\"\n\n\
             [keepalive]\necho_interval_secs = 1\necho_timeout_secs = 3\n\n",
            self.socket.display(),
            self.tb.state_dir().join("store").display()
        );
        for i in 0..managed {
            text.push_str(&self.host_toml(i));
            text.push('\n');
        }
        text.push_str(&format!(
            "[[vi]]\nid = {VI}\nname = \"acme\"\ngre_key = 1001\n"
        ));
        let path = self.tb.state_dir().join("controller.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn log(&self, name: &str) -> PathBuf {
        self.tb.state_dir().join(name)
    }

    fn vsctl(&self, pm: usize, args: &[&str]) -> String {
        self.tb.pm(self.pms[pm]).vsctl(args).unwrap()
    }

    /// `ovs-ofctl dump-flows br-int` of PM `pm`: each flow (without its
    /// counters) and its duration in seconds.
    fn flows(&self, pm: usize) -> BTreeMap<String, f64> {
        let out = self
            .tb
            .pm(self.pms[pm])
            .ofctl(&["dump-flows", "br-int"])
            .unwrap();
        out.lines()
            .filter(|l| l.trim_start().starts_with("cookie="))
            .map(|l| {
                let mut duration = 0.0;
                let key: Vec<&str> = l
                    .split_whitespace()
                    .filter(|w| {
                        if let Some(d) = w.strip_prefix("duration=") {
                            duration = d.trim_end_matches("s,").parse().unwrap();
                            return false;
                        }
                        !["n_packets=", "n_bytes=", "idle_age=", "hard_age="]
                            .iter()
                            .any(|p| w.starts_with(p))
                    })
                    .collect();
                (key.join(" "), duration)
            })
            .collect()
    }

    /// Waits until `pm`'s bridge holds Iris flows that classify its VM ports.
    fn wait_programmed(&self, pm: usize) {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let flows = self.flows(pm);
            let classify = flows
                .keys()
                .filter(|f| f.contains("table=0") && f.contains("write_metadata"))
                .count();
            if classify > 0 {
                return;
            }
            assert!(
                Instant::now() < until,
                "pm{} never got its classification flows: {flows:#?}",
                pm + 1
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn tunnel_ports(&self, pm: usize) -> Vec<String> {
        self.vsctl(pm, &["list-ports", "br-int"])
            .lines()
            .filter(|p| p.starts_with("gre-"))
            .map(str::to_owned)
            .collect()
    }
}

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n)
}

#[test]
fn the_controller_configures_real_ovs_and_a_restart_changes_no_flow() {
    let w = world("ctl-restart", 2, &[0, 1]);
    let config = w.config(2);
    let c = Controller::start(&config, &w.log("controller-1.log"));
    c.wait_ready(2, 2);

    // OVSDB made each bridge right.
    for pm in 0..2 {
        let get = |what: &str| w.vsctl(pm, &["get", "Bridge", "br-int", what]);
        assert_eq!(get("fail_mode").trim(), "secure");
        assert_eq!(get("protocols").trim(), "[OpenFlow13]");
        assert_eq!(get("datapath_type").trim(), "netdev");
        assert_eq!(
            get("other_config:datapath-id")
                .trim()
                .trim_matches('"')
                .len(),
            16
        );
        let target = w.vsctl(pm, &["get-controller", "br-int"]);
        assert!(target.trim().ends_with("iris-controller.sock"), "{target}");
        let peer = w.tb.pm(w.pms[1 - pm]).underlay_addr().addr();
        let gre = format!("gre-{:08x}", u32::from(peer));
        assert_eq!(w.tunnel_ports(pm), vec![gre.clone()]);
        let options = w.vsctl(pm, &["get", "Interface", &gre, "options"]);
        assert!(options.contains("key=flow"), "{options}");
    }
    // The handshake completed on both switches and flows were sent.
    let hosts = c.get_json("/v1/hosts");
    assert!(
        hosts
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["openflow_connected"] == true),
        "{hosts}"
    );
    w.wait_programmed(0);
    w.wait_programmed(1);
    assert!(c.metric("iris_flow_mods_sent_total") > 0.0);
    let ports = c.get_json("/v1/vm-ports");
    assert_eq!(ports.as_array().unwrap().len(), 2, "{ports}");

    // The VMs reach each other across the GRE mesh.
    let vm1 = w.tb.vms().next().unwrap().0;
    w.tb.vm(vm1)
        .wait_reachable(ip(2), Duration::from_secs(20))
        .unwrap();

    let before: Vec<BTreeMap<String, f64>> = (0..2).map(|pm| w.flows(pm)).collect();
    assert!(before[0].keys().any(|f| f.contains("cookie=0x4952")));
    c.stop();

    // With the controller gone, the switches keep forwarding.
    let r =
        w.tb.vm(vm1)
            .ping(ip(2), 3, Duration::from_millis(200))
            .unwrap();
    assert!(r.all_replied(), "{r:?}");

    let c = Controller::start(&config, &w.log("controller-2.log"));
    c.wait_ready(2, 2);
    // Give a reconciliation that should not happen the time to happen.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.metric("iris_flow_mods_sent_total"), 0.0);
    assert_eq!(c.metric("iris_group_mods_sent_total"), 0.0);
    for (pm, old) in before.iter().enumerate() {
        let now = w.flows(pm);
        assert_eq!(
            now.keys().collect::<Vec<_>>(),
            old.keys().collect::<Vec<_>>(),
            "pm{}'s flows changed across the restart",
            pm + 1
        );
        for (flow, d) in old {
            assert!(
                now[flow] >= *d,
                "pm{}: {flow} restarted its duration ({} < {d})",
                pm + 1,
                now[flow]
            );
        }
    }
    let r =
        w.tb.vm(vm1)
            .ping(ip(2), 3, Duration::from_millis(200))
            .unwrap();
    assert!(r.all_replied(), "{r:?}");
    c.stop();
}

#[test]
fn hosts_join_and_leave_a_running_mesh() {
    let w = world("ctl-churn", 3, &[0, 1]);
    let c = Controller::start(&w.config(2), &w.log("controller.log"));
    c.wait_ready(2, 2);
    assert_eq!(w.tunnel_ports(0).len(), 1);

    // pm3 joins through the API: every host gets a tunnel to it, and pm3 one
    // to every host, without a restart.
    let spec = w.host_toml(2);
    let field = |k: &str| {
        spec.lines()
            .find_map(|l| l.strip_prefix(&format!("{k} = ")))
            .unwrap()
            .trim_matches('"')
            .to_owned()
    };
    let body = serde_json::json!({
        "name": "pm3",
        "underlay_ip": field("underlay_ip"),
        "role": "compute",
        "ovsdb": field("ovsdb"),
        "controller": field("controller"),
    })
    .to_string();
    let (code, reply) = c.http("PUT", "/v1/hosts/pm3", Some(&body));
    assert_eq!(code, 201, "{reply}");
    c.wait_ready(3, 3);
    let until = Instant::now() + Duration::from_secs(20);
    while (0..3).any(|pm| w.tunnel_ports(pm).len() != 2) {
        assert!(Instant::now() < until, "the mesh did not grow");
        std::thread::sleep(Duration::from_millis(100));
    }

    // pm3 leaves: the tunnels to it disappear everywhere; the others stay.
    let pm3_gre = format!(
        "gre-{:08x}",
        u32::from(w.tb.pm(w.pms[2]).underlay_addr().addr())
    );
    let (code, reply) = c.http("DELETE", "/v1/hosts/pm3", None);
    assert_eq!(code, 204, "{reply}");
    let until = Instant::now() + Duration::from_secs(20);
    while (0..2).any(|pm| w.tunnel_ports(pm).contains(&pm3_gre)) {
        assert!(Instant::now() < until, "the mesh did not shrink");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(w.tunnel_ports(0).len(), 1);
    let vm1 = w.tb.vms().next().unwrap().0;
    w.tb.vm(vm1)
        .wait_reachable(ip(2), Duration::from_secs(20))
        .unwrap();
    c.stop();
}

#[test]
fn a_switch_without_openflow13_is_refused_with_hello_failed() {
    let w = world("ctl-of10", 1, &[]);
    // The controller manages no host, so nothing rewrites the bridge's
    // protocols: the switch offers OpenFlow 1.0 only.
    let mut c = Controller::start(&w.config(0), &w.log("controller.log"));
    let pm = w.tb.pm(w.pms[0]);
    let target = pm.link_controller_socket(&w.socket).unwrap();
    pm.vsctl(&["set", "Bridge", "br-int", "protocols=OpenFlow10"])
        .unwrap();
    pm.set_controller(&[&target]).unwrap();
    let line = c.wait_log("does not speak OpenFlow 1.3", Duration::from_secs(20));
    assert!(line.contains("protocols=OpenFlow13"), "{line}");
    assert_eq!(c.get_json("/healthz")["switches_ready"], 0);
    // OVS saw the refusal too (it logs it a moment later).
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(pm.ovs().dir().join("ovs-vswitchd.log")).unwrap();
        if log.contains("version negotiation failed") {
            break;
        }
        assert!(Instant::now() < until, "{log}");
        std::thread::sleep(Duration::from_millis(100));
    }
    c.stop();
}
