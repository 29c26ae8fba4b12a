//! What the gateway's integration tests share: the two gateways'
//! configurations (a haas gateway and its iaas peer) and a metrics reader.

#![allow(dead_code)]

use iris_gateway::config::Config;
use std::net::SocketAddr;
use std::sync::OnceLock;

/// The file of the token gw-acme presents to gw-haas with its reports.
pub const ACME_TOKEN_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/gw-acme.token");
/// The file of gw-globex's token, another peer's.
pub const GLOBEX_TOKEN_FILE: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/gw-globex.token");

/// The token in `file` (its first line).
pub fn token(file: &str) -> String {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned()
}

/// The hash of the token in `file`, as `iris-gateway hash-token` makes it
/// (made once per file and test binary: argon2 is slow on purpose).
pub fn token_hash(file: &'static str) -> String {
    static HASHES: OnceLock<std::sync::Mutex<std::collections::HashMap<&str, String>>> =
        OnceLock::new();
    let mut hashes = HASHES.get_or_init(Default::default).lock().unwrap();
    hashes
        .entry(file)
        .or_insert_with(|| iris_controller::api_auth::hash_token(&token(file)).unwrap())
        .clone()
}

/// A haas gateway on 127.0.0.1:0 writing to the controller at `controller`;
/// its peer gw-acme carries VIs 1 and 2 and reports with the token of
/// [`ACME_TOKEN_FILE`].
pub fn haas_config(controller: SocketAddr) -> Config {
    haas_config_with_token(controller, None)
}

/// [`haas_config`], sending the token in `token_file` to the controller.
pub fn haas_config_with_token(
    controller: SocketAddr,
    token_file: Option<&std::path::Path>,
) -> Config {
    let token = token_file.map_or_else(String::new, |f| {
        format!("token_file = \"{}\"\n", f.display())
    });
    Config::parse(&haas_text(controller, &token)).unwrap()
}

/// [`haas_config`]'s text, `extra` at the end of `[controller]`.
pub fn haas_text(controller: SocketAddr, extra: &str) -> String {
    let token = extra;
    let acme = token_hash(ACME_TOKEN_FILE);
    format!(
        r#"
[gateway]
name = "gw-haas"
kind = "haas"
dc = "haas-dc"
wan_ip = "203.0.113.1"
ovsdb = "unix:/nonexistent/db.sock"
listen = "127.0.0.1:0"

[controller]
url = "http://{controller}"
{token}
[[peer]]
name = "gw-acme"
wan_ip = "203.0.113.2"
token_hash = "{acme}"
api = "http://127.0.0.1:9"

[[vi]]
id = 1
gre_key = 1001
peer = "gw-acme"
vlans = ["100-199", "untagged"]

[[vi]]
id = 2
gre_key = 1002
peer = "gw-acme"
vlans = ["200-299"]
"#
    )
}

/// An iaas gateway on 127.0.0.1:0 reporting to the haas gateway at `haas`
/// with the token of [`ACME_TOKEN_FILE`].
pub fn iaas_config(haas: SocketAddr) -> Config {
    Config::parse(&iaas_text(haas)).unwrap()
}

/// [`iaas_config`]'s text.
pub fn iaas_text(haas: SocketAddr) -> String {
    format!(
        r#"
[gateway]
name = "gw-acme"
kind = "iaas"
dc = "acme-dc"
wan_ip = "203.0.113.2"
ovsdb = "unix:/nonexistent/db.sock"
openflow = "unix:/nonexistent/br-gw.mgmt"
trunk = "trunk0"
listen = "127.0.0.1:0"

[[peer]]
name = "gw-haas"
wan_ip = "203.0.113.1"
token_file = "{ACME_TOKEN_FILE}"
api = "http://{haas}"

[[vi]]
id = 1
gre_key = 1001
peer = "gw-haas"
vlans = ["100-199", "untagged"]
"#
    )
}

/// The gateway's `/metrics` text.
pub async fn metrics(gw: SocketAddr) -> String {
    reqwest::get(format!("http://{gw}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Polls `probe` every 50 ms until it gives a value, or fails the test
/// saying `what` once `timeout` has passed.
pub fn wait_for<T>(
    what: &str,
    timeout: std::time::Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Two emulated gateway nodes, `gw` and `far`, on one underlay that stands
/// for the WAN, with a LAN namespace whose veth's other end is in `gw`'s
/// namespace (not yet on any bridge); each node has resolved the other's
/// underlay address, so the first frame into a tunnel is not lost.
pub struct TwoNodes {
    pub tb: iris_testbed::Testbed,
    pub gw: iris_testbed::PmId,
    pub far: iris_testbed::PmId,
    pub lan: iris_testbed::Netns,
    /// `a()` in `gw`'s namespace, `b()` in `lan`.
    pub trunk: iris_testbed::VethPair,
}

impl TwoNodes {
    pub fn new(label: &str) -> Self {
        use iris_testbed::{Iface, Netns, NodeName, PmSpec, Testbed, UnderlaySpec, VethPair};
        use std::time::Duration;
        let mut tb = Testbed::new(label).unwrap_or_else(|e| panic!("cannot build a testbed: {e}"));
        let wan = tb
            .add_underlay(UnderlaySpec::new("wan", "198.51.100.0/24".parse().unwrap()))
            .unwrap();
        let gw = tb.add_pm(PmSpec::new("gw", wan)).unwrap();
        let far = tb.add_pm(PmSpec::new("far", wan)).unwrap();
        let node = NodeName::new("lan").unwrap();
        let lan = Netns::create(tb.prefix().netns(&node)).unwrap();
        let trunk = VethPair::create(
            Iface::new(
                tb.prefix().link(&node, "g").unwrap(),
                tb.pm(gw).netns().place(),
            ),
            Iface::new(tb.prefix().link(&node, "l").unwrap(), lan.place()),
            1500,
        )
        .unwrap();
        // OVS learns the peer's MAC on the underlay from this exchange;
        // without it the first frame into the tunnel is lost.
        let (a, b) = (
            tb.pm(gw).underlay_addr().addr(),
            tb.pm(far).underlay_addr().addr(),
        );
        tb.pm(gw)
            .ping_underlay(b, 1, Duration::from_millis(100))
            .unwrap();
        tb.pm(far)
            .ping_underlay(a, 1, Duration::from_millis(100))
            .unwrap();
        Self {
            tb,
            gw,
            far,
            lan,
            trunk,
        }
    }
}
