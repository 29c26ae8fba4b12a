//! `broker`: the HaaS broker (`iris-api`, the binary beside the
//! controller's) on three PMs under the controller. An operator asks for
//! 12 L1 nodes in one call through the broker's API; the `netns` driver
//! makes them on the PMs, the broker seeds the controller's registry, and
//! every node becomes active and answers ping on the VI from one of them,
//! across the GRE mesh. From one node, nothing of the provider's network
//! answers and the operator's peer node does (`node_isolation`), with
//! OpenFlow and OVSDB over TLS on management links as in production, so
//! that they are TCP ports a node could try. Scaling in to nothing leaves
//! no node namespace, veth or OVS port on any PM, and the VI goes from the
//! controller.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use iris_api::compute::netns::sshd;
use serde::Serialize;
use serde_json::{json, Value};

use super::harness::{check, ms, to_json, Harness};
use super::node_isolation;
use super::ScenarioError;
use crate::controller::{http_request, API_TOKEN_FILE};
use crate::{Error, Pm, PmId, Process};

/// The broker's binary, looked for beside the controller's.
const BROKER_BINARY: &str = "iris-api";
const NODES: u32 = 12;
pub(super) const ADMIN_TOKEN: &str = "iris-scenario-broker-admin-token";

/// What `broker` measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub nodes: u32,
    /// Nodes per PM, as best fit and the PMs' capacity placed them.
    pub per_pm: Vec<usize>,
    /// From the request to the operation's success.
    pub request_to_active_ms: f64,
    /// From the request until every node answered a ping from the first.
    pub request_to_pingable_ms: f64,
    /// From the first delete to the last node gone.
    pub scale_in_ms: f64,
    /// Every probe from one node into the provider's network and the
    /// operator's.
    pub isolation: node_isolation::Report,
}

/// The broker's process and how to call it.
pub(super) struct Broker {
    process: Process,
    pub(super) addr: SocketAddr,
}

impl Broker {
    /// `method path` with `token`; fails unless the broker answers
    /// `want`. The body the broker answered, `null` when it is not JSON.
    pub(super) fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
        want: u16,
    ) -> Result<Value, ScenarioError> {
        let (status, text) = http_request(self.addr, Some(token), method, path, body.as_ref())?;
        check(status == want, || {
            format!("{method} {path}: the broker answered {status}, not {want}: {text}")
        })?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Polls operation `id` until it ends; fails unless it succeeded.
    pub(super) fn wait(&self, token: &str, id: &str) -> Result<Value, ScenarioError> {
        let op = self.finish(token, id)?;
        check(op["status"] == "succeeded", || {
            format!("operation {id} failed: {op}")
        })?;
        Ok(op)
    }

    /// Polls operation `id` until it ends, succeeded or failed.
    pub(super) fn finish(&self, token: &str, id: &str) -> Result<Value, ScenarioError> {
        let start = Instant::now();
        loop {
            let op = self.call(token, "GET", &format!("/v1/operations/{id}"), None, 200)?;
            if op["status"] != "running" {
                return Ok(op);
            }
            check(start.elapsed() < super::CONVERGE, || {
                format!(
                    "operation {id} still running after {:?}: {op}",
                    super::CONVERGE
                )
            })?;
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The admin makes provider `name` and a token for it: the token.
    pub(super) fn provider(&self, name: &str) -> Result<String, ScenarioError> {
        let provider = self.call(
            ADMIN_TOKEN,
            "POST",
            "/v1/providers",
            Some(json!({ "name": name })),
            201,
        )?;
        let id = provider["id"].as_str().unwrap_or_default();
        let token = self.call(
            ADMIN_TOKEN,
            "POST",
            &format!("/v1/providers/{id}/tokens"),
            None,
            201,
        )?;
        Ok(token["token"].as_str().unwrap_or_default().to_owned())
    }

    /// The admin registers `pm` with room for `vcpus` nodes of one vCPU,
    /// its compute `driver` reached at `endpoint`.
    pub(super) fn register_pm(
        &self,
        pm: &Pm,
        vcpus: u32,
        driver: &str,
        endpoint: &str,
    ) -> Result<(), ScenarioError> {
        let body = json!({"name": pm.name(),
            "capacity": {"vcpus": vcpus, "memory_mib": 16384, "disk_gib": 100},
            "underlay_ip": pm.underlay_addr().addr().to_string(),
            "ovsdb": pm.ovsdb_unix_target(), "driver": driver, "endpoint": endpoint});
        self.call(ADMIN_TOKEN, "POST", "/v1/pms", Some(body), 201)
            .map(drop)
    }

    /// The operator defines `flavor` (one vCPU) and creates VI `net` on
    /// 10.88.0.0/24, with `ssh_public_key` for its nodes: the VI's id and
    /// the tunnel key the broker gave it.
    pub(super) fn flavor_and_vi(
        &self,
        token: &str,
        (flavor, memory_mib, disk_gib): (&str, u32, u32),
        ssh_public_key: Option<&str>,
    ) -> Result<(String, u64), ScenarioError> {
        self.call(
            token,
            "POST",
            "/v1/flavors",
            Some(
                json!({"name": flavor, "vcpus": 1, "memory_mib": memory_mib, "disk_gib": disk_gib}),
            ),
            201,
        )?;
        let mut body = json!({"name": "net", "gateway": "203.0.113.7",
            "vlans": {"first": 100, "last": 199},
            "addressing": {"mode": "static_pool", "cidr": "10.88.0.0/24"}});
        if let Some(key) = ssh_public_key {
            body["ssh_public_key"] = key.into();
        }
        let vi = self.call(token, "POST", "/v1/vis", Some(body), 201)?;
        Ok((
            vi["id"].as_str().unwrap_or_default().to_owned(),
            vi["tunnel_key"].as_u64().unwrap_or_default(),
        ))
    }

    pub(super) fn stop(mut self) -> Result<(), ScenarioError> {
        self.process.stop(Duration::from_secs(5))?;
        Ok(())
    }
}

/// Removes whatever node namespaces a failing run left on the PMs (the
/// PMs' namespace names).
pub(super) struct Sweep(pub(super) Vec<String>);

impl Drop for Sweep {
    fn drop(&mut self) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        for ns in self.0.iter().flat_map(|p| node_namespaces(p)) {
            // A node of a VI with an SSH key runs an sshd, which would
            // outlive its namespace.
            if let Ok(rt) = &rt {
                let _ = rt.block_on(sshd::stop(&ns, true));
            }
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
    }
}

/// The `netns` driver's namespaces on the PM whose namespace is `pm`
/// (`irisn-<PM namespace>-<node id>`, docs/broker.md).
pub(super) fn node_namespaces(pm: &str) -> Vec<String> {
    let prefix = format!("irisn-{pm}-");
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Starts `iris-api` (beside the controller's binary) on the harness's
/// controller, with `extra` appended to the top of its configuration.
pub(super) fn start_broker(h: &Harness, extra: &str) -> Result<Broker, ScenarioError> {
    let binary = h.controller_binary().with_file_name(BROKER_BINARY);
    let dir = h.file("broker");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io_at("creating", &dir, e))?;
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| Error::io_at("writing", &path, e))
    };
    let controller = h.controller()?.api_addr();
    write("admin-token", ADMIN_TOKEN)?;
    write(
        "iris-api.toml",
        &format!(
            "listen = \"127.0.0.1:0\"\nstore = \"store\"\nadmin_token_file = \"admin-token\"\n{extra}\
             [controller]\nurl = \"http://{controller}\"\ntoken_file = {:?}\n",
            h.file(API_TOKEN_FILE).display().to_string()
        ),
    )?;
    let mut command = Command::new(&binary);
    command
        .args(["run", "--config"])
        .arg(dir.join("iris-api.toml"));
    let log = dir.join("iris-api.log");
    let mut process = Process::spawn("iris-api", command, Some(&log))?;
    let start = Instant::now();
    loop {
        process.ensure_running()?;
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        // A line counts once it is whole: "127.0.0.1:4" of
        // "127.0.0.1:46227" would parse.
        let addr = text
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .find_map(|l| l.strip_prefix("iris-api: listening on "))
            .and_then(|a| a.trim().parse().ok());
        if let Some(addr) = addr {
            return Ok(Broker { process, addr });
        }
        check(start.elapsed() < super::CONVERGE, || {
            format!("iris-api did not say where it listens:\n{text}")
        })?;
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `ip` answers a ping from namespace `ns` within `within`: one
/// echo request every 100 ms until the first reply, so that the moment it
/// answers is known to 100 ms.
pub(super) fn ping_from(ns: &str, ip: &str, within: Duration) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-c", "1", "-i", "0.1", "-w"])
        .arg(within.as_secs().max(1).to_string())
        .arg(ip)
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// PMs `names` under a controller that knows no VI (the broker makes
/// them), in a full mesh; the sweep of their node namespaces, which holds
/// the PMs' namespace names.
pub(super) fn pms_under_controller(
    h: &mut Harness,
    names: &[&str],
) -> Result<(Vec<PmId>, Sweep), ScenarioError> {
    let pms = h.add_pms(names)?;
    let sweep = Sweep(
        pms.iter()
            .map(|&p| h.tb.pm(p).netns().name().to_owned())
            .collect(),
    );
    let config = h.config(&pms, Vec::new())?;
    h.start_controller(&config)?;
    h.wait_ready(pms.len() as u64, pms.len() as u64)?;
    h.wait_full_mesh(&pms)?;
    h.check_tls(&pms)?;
    Ok((pms, sweep))
}

pub fn run(h: &mut Harness) -> Result<Value, ScenarioError> {
    h.use_tls()?;
    let (pms, sweep) = pms_under_controller(h, &["pm1", "pm2", "pm3"])?;
    let pm_ns = &sweep.0;
    let broker = start_broker(h, "")?;
    h.note(format!("iris-api listening on {}", broker.addr));

    let t = broker.provider("acme")?;
    for &pm in &pms {
        let pm = h.tb.pm(pm);
        // Room for 5 nodes each: best fit fills the PMs one after another.
        broker.register_pm(pm, 5, "netns", pm.netns().name())?;
    }
    let (vi_id, key) = broker.flavor_and_vi(&t, ("c1", 1024, 10), None)?;

    let asked = Instant::now();
    let op = broker.call(
        &t,
        "POST",
        "/v1/nodes",
        Some(json!({"vi": vi_id, "flavor": "c1", "count": NODES})),
        202,
    )?;
    broker.wait(&t, op["id"].as_str().unwrap_or_default())?;
    let active = asked.elapsed();
    let page = broker.call(&t, "GET", "/v1/nodes", None, 200)?;
    let nodes = page["items"].as_array().cloned().unwrap_or_default();
    check(
        nodes.len() == NODES as usize && nodes.iter().all(|n| n["state"] == "active"),
        || format!("not {NODES} active nodes: {page}"),
    )?;
    let names: Vec<String> = pms.iter().map(|&p| h.tb.pm(p).name().to_owned()).collect();
    let per_pm: Vec<usize> = names
        .iter()
        .map(|pm| nodes.iter().filter(|n| n["pm"] == pm.as_str()).count())
        .collect();
    check(per_pm.iter().all(|&n| n <= 5), || {
        format!("a PM holds more than its 5 vCPUs: {per_pm:?}")
    })?;
    let ns_of = |n: &Value| {
        let at = names
            .iter()
            .position(|p| n["pm"] == p.as_str())
            .unwrap_or(0);
        format!(
            "irisn-{}-{}",
            pm_ns[at],
            n["id"].as_str().unwrap_or_default()
        )
    };
    let from = ns_of(&nodes[0]);
    for n in &nodes[1..] {
        let ip = n["ip"]
            .as_str()
            .unwrap_or_default()
            .split('/')
            .next()
            .unwrap_or_default();
        check(ping_from(&from, ip, Duration::from_secs(10)), || {
            format!("{ip} ({}) does not answer {from}", n["pm"])
        })?;
    }
    let pingable = asked.elapsed();
    h.note(format!(
        "{NODES} nodes active in {active:?}, all answering ping in {pingable:?}"
    ));
    let peer = nodes[1..]
        .iter()
        .find(|n| n["pm"] != nodes[0]["pm"])
        .unwrap_or(&nodes[1]);
    let peer_ip = peer["ip"]
        .as_str()
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap_or_default()
        .parse()
        .map_err(|e| Error::Usage(format!("the broker gave node address {peer}: {e}")))?;
    let apis = [
        ("the controller's API", h.controller()?.api_addr().port()),
        ("the broker's API", broker.addr.port()),
    ];
    let isolation = node_isolation::check_node(h, &pms, &from, (&ns_of(peer), peer_ip), &apis)?;
    h.note(format!(
        "{} probes into the provider's network from {from}: no answer; the operator's peer {peer_ip} answers ({} ms)",
        isolation.provider.len(),
        isolation.took_ms
    ));

    let scale_in = Instant::now();
    let mut ops = Vec::new();
    for n in &nodes {
        let op = broker.call(
            &t,
            "DELETE",
            &format!("/v1/nodes/{}", n["id"].as_str().unwrap_or_default()),
            None,
            202,
        )?;
        ops.push(op["id"].as_str().unwrap_or_default().to_owned());
    }
    for op in ops {
        broker.wait(&t, &op)?;
    }
    let scale_in = scale_in.elapsed();
    for (&pm, ns) in pms.iter().zip(pm_ns) {
        let pm = h.tb.pm(pm);
        let ports = pm.vsctl(&[
            "--bare",
            "--columns=name",
            "find",
            "Interface",
            "external_ids:iris-node!=\"\"",
        ])?;
        let links = Command::new("ip")
            .args(["-n", ns, "-o", "link"])
            .output()
            .map_err(|e| Error::io("listing the PM's links", e))?;
        let veths = String::from_utf8_lossy(&links.stdout)
            .lines()
            .filter(|l| l.contains(": vn"))
            .count();
        check(
            node_namespaces(ns).is_empty() && ports.trim().is_empty() && veths == 0,
            || {
                format!(
                    "{} still holds node parts: namespaces {:?}, ports {ports:?}, {veths} veths",
                    pm.name(),
                    node_namespaces(ns)
                )
            },
        )?;
    }
    broker.call(&t, "DELETE", &format!("/v1/vis/{vi_id}"), None, 204)?;
    let (status, _) = h
        .controller()?
        .request("GET", &format!("/v1/vis/{key}"), None)?;
    check(status == 404, || {
        format!("the controller still has VI {key}")
    })?;
    broker.stop()?;
    to_json(&Report {
        nodes: NODES,
        per_pm,
        request_to_active_ms: ms(active),
        request_to_pingable_ms: ms(pingable),
        scale_in_ms: ms(scale_in),
        isolation,
    })
}
