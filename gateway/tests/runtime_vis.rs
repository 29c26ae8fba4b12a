//! VIs added at run time through the haas gateway's API, against real
//! Open vSwitch: two emulated nodes of the testbed library on one underlay
//! that stands for the WAN, the haas gateway (datapath and API, as
//! `iris-gateway run` starts them) on the first. A VI PUT through the API
//! gets its WAN port on `br-int` and a frame from the data center crosses
//! the WAN in its tunnel, read off the far node's wire; a restart finds it
//! again from the state file (and rebuilds the port deleted meanwhile);
//! DELETE takes the port away and nothing crosses any more. The
//! controller's flows on `br-int` stand in as one `NORMAL` flow the test
//! installs. Needs root and Open vSwitch; fails (never skips) without them.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use iris_gateway::config::Config;
use iris_gateway::run::{start, start_datapath, Running};
use iris_testbed::frames::{contains, gre_payload, Capture, FrameSender};
use iris_testbed::{Netns, PmId, Testbed, VethPair};
use ofp::packet::{EtherType, EthernetRepr, MacAddr, VlanTag};
use serde_json::{json, Value};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);
const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const VI: u32 = 7;
const KEY: u32 = 7007;
const PORT: &str = "w7-r";

/// The haas gateway, running: its API and the tasks to stop.
struct Gateway {
    running: Running,
    datapath: Vec<JoinHandle<()>>,
    shutdown: CancellationToken,
}

impl Gateway {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.addr)
    }

    async fn stop(self) {
        self.running.stop().await;
        self.shutdown.cancel();
        for t in self.datapath {
            let _ = t.await;
        }
    }
}

struct World {
    lan_pair: VethPair,
    lan: Netns,
    tb: Testbed,
    gw: PmId,
    far: PmId,
    dir: tempfile::TempDir,
    rt: Runtime,
}

impl World {
    fn new() -> Self {
        let common::TwoNodes {
            tb,
            gw,
            far,
            lan,
            trunk: lan_pair,
        } = common::TwoNodes::new("gw-rtvi");
        // The DC side's port on br-int, and forwarding as the controller's
        // flows would do it for the VI.
        let port = lan_pair.a().name.clone();
        tb.pm(gw).vsctl(&["add-port", "br-int", &port]).unwrap();
        tb.pm(gw)
            .ofctl(&["add-flow", "br-int", "priority=0,actions=NORMAL"])
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
        Self {
            lan_pair,
            lan,
            tb,
            gw,
            far,
            dir,
            rt: Runtime::new().unwrap(),
        }
    }

    fn config(&self) -> Config {
        let gw = self.tb.pm(self.gw);
        Config::parse(&format!(
            r#"
[gateway]
name = "gw-haas"
kind = "haas"
dc = "haas-dc"
wan_ip = "{}"
ovsdb = "{}"
listen = "127.0.0.1:0"

[controller]
url = "http://127.0.0.1:9"

[vi_api]
token_file = "{}"
state_dir = "{}"
"#,
            gw.underlay_addr().addr(),
            gw.ovsdb_unix_target(),
            self.dir.path().join("token").display(),
            self.dir.path().join("state").display(),
        ))
        .unwrap()
    }

    /// Starts the gateway as `iris-gateway run` does.
    fn start(&self) -> Gateway {
        let config = Arc::new(iris_gateway::runtime_vis::restore(self.config()).unwrap());
        let shutdown = CancellationToken::new();
        self.rt.block_on(async {
            let dp = start_datapath(&config, &shutdown).unwrap();
            let running = start(config, dp.link, shutdown.clone()).await.unwrap();
            Gateway {
                running,
                datapath: dp.tasks,
                shutdown,
            }
        })
    }

    fn vsctl(&self, args: &[&str]) -> Option<String> {
        self.tb
            .pm(self.gw)
            .vsctl(args)
            .ok()
            .map(|s| s.trim().to_owned())
    }

    fn has_port(&self) -> bool {
        self.vsctl(&["list-ports", "br-int"])
            .is_some_and(|p| p.lines().any(|l| l == PORT))
    }

    /// Whether a frame sent from the DC side crosses the WAN in the VI's
    /// tunnel, as the far node's wire shows.
    fn crosses(&self, marker: &[u8]) -> bool {
        let far = self.tb.pm(self.far);
        let capture = Capture::start(far.netns(), far.underlay_interface()).unwrap();
        let mut frame = Vec::new();
        EthernetRepr {
            dst: MacAddr([0x52, 0x54, 0, 0, 7, 2]),
            src: MacAddr([0x52, 0x54, 0, 0, 7, 1]),
            tags: vec![VlanTag {
                tpid: 0x8100,
                tci: 150,
            }],
            ethertype: EtherType::Ipv4,
        }
        .emit(&mut frame);
        frame.extend_from_slice(marker);
        frame.resize(100, 0);
        let mut lan = FrameSender::open(&self.lan, &self.lan_pair.b().name).unwrap();
        lan.send(&[(Duration::ZERO, frame.clone()), (Duration::ZERO, frame)])
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        capture
            .finish()
            .unwrap()
            .iter()
            .filter_map(|c| gre_payload(&c.data))
            .any(|g| g.key == Some(KEY) && contains(g.payload, marker))
    }

    fn finish(self) {
        drop(self.rt);
        drop(self.lan_pair);
        drop(self.lan);
        self.tb.teardown().unwrap();
    }
}

fn wait_for<T>(what: &str, probe: impl FnMut() -> Option<T>) -> T {
    common::wait_for(what, WAIT, probe)
}

/// Sends `method path` with the token (or `token`), JSON body optional.
fn call(
    w: &World,
    gw: &Gateway,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    w.rt.block_on(async {
        let mut req = reqwest::Client::new().request(method, gw.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    })
}

#[test]
fn a_vi_put_at_run_time_carries_traffic_survives_a_restart_and_goes_on_delete() {
    let w = World::new();
    let far_ip = w.tb.pm(w.far).underlay_addr().addr().to_string();
    let body = json!({
        "gre_key": KEY,
        "peer": {"name": "gw-far", "wan_ip": far_ip, "api": "http://127.0.0.1:9",
            "token_hash": common::token_hash(common::ACME_TOKEN_FILE)},
        "vlans": ["100-199"]
    });
    let put = reqwest::Method::PUT;
    let gw = w.start();

    // Never open: no token, or another one, changes nothing.
    let (status, p) = call(&w, &gw, put.clone(), "/v1/vis/7", None, Some(body.clone()));
    assert_eq!(status, 401, "{p}");
    let (status, _) = call(
        &w,
        &gw,
        put.clone(),
        "/v1/vis/7",
        Some("not-the-token-at-all"),
        Some(body.clone()),
    );
    assert_eq!(status, 401);
    assert!(!w.has_port());
    assert!(!w.crosses(b"before-put"), "a frame crossed with no VI");

    let (status, vi) = call(
        &w,
        &gw,
        put.clone(),
        "/v1/vis/7",
        Some(TOKEN),
        Some(body.clone()),
    );
    assert_eq!(status, 201, "{vi}");
    assert_eq!(vi["origin"], "api");
    let (status, _) = call(
        &w,
        &gw,
        put.clone(),
        "/v1/vis/7",
        Some(TOKEN),
        Some(body.clone()),
    );
    assert_eq!(status, 200, "a repeated PUT is a success");
    wait_for("the runtime VI's WAN port on br-int", || {
        w.has_port().then_some(())
    });
    let options = w
        .vsctl(&["get", "Interface", PORT, "options"])
        .unwrap_or_default();
    for want in [format!("key=\"{KEY}\""), format!("remote_ip=\"{far_ip}\"")] {
        assert!(options.contains(&want), "{options} lacks {want}");
    }
    assert_eq!(
        w.vsctl(&["get", "Interface", PORT, "external_ids:iris-vi"]),
        Some(format!("\"{VI}\""))
    );
    wait_for("a frame across the WAN in the VI's tunnel", || {
        w.crosses(b"runtime-vi").then_some(())
    });

    // Restarted, with its port deleted while it was down: the state file
    // gives the VI back and the port is rebuilt.
    w.rt.block_on(gw.stop());
    w.vsctl(&["del-port", "br-int", PORT]).unwrap();
    let gw = w.start();
    let (status, list) = call(&w, &gw, reqwest::Method::GET, "/v1/vis", Some(TOKEN), None);
    assert_eq!(status, 200);
    assert_eq!(list[0]["id"], VI, "{list}");
    assert_eq!(list[0]["gre_key"], KEY, "{list}");
    wait_for("the port rebuilt after the restart", || {
        w.has_port().then_some(())
    });
    wait_for("a frame across the WAN after the restart", || {
        w.crosses(b"after-restart").then_some(())
    });

    // Deleted: the port goes, nothing crosses, and it stays gone.
    let (status, _) = call(
        &w,
        &gw,
        reqwest::Method::DELETE,
        "/v1/vis/7",
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 204);
    wait_for("the WAN port gone", || (!w.has_port()).then_some(()));
    assert!(!w.crosses(b"after-delete"), "a frame crossed after DELETE");
    let (status, _) = call(
        &w,
        &gw,
        reqwest::Method::DELETE,
        "/v1/vis/7",
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 204, "deleting what is gone is a success");
    w.rt.block_on(gw.stop());
    let gw = w.start();
    let (_, list) = call(&w, &gw, reqwest::Method::GET, "/v1/vis", Some(TOKEN), None);
    assert_eq!(list, json!([]));
    std::thread::sleep(Duration::from_millis(500));
    assert!(!w.has_port(), "the deleted VI came back after a restart");
    w.rt.block_on(gw.stop());
    w.finish();
}
