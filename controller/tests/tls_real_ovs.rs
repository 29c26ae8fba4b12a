//! OpenFlow over TLS between the `iris-controller` process and real Open
//! vSwitch, with a throwaway CA (`iris_testbed::pki`): the host's switch
//! is accepted with its certificate, and impostors claiming its datapath
//! id (one certified by another CA, one with a valid certificate for
//! another host) are refused while the real switch keeps its session and
//! its flows. And in passive mode, the controller dialling listening
//! switches (`pssl:`) with the same checks.
//!
//! OVS reaches an `ssl:` target over TCP only, so the two Open vSwitch
//! instances run in this process's network namespace, each in its own
//! directory, on the loopback address; their bridges are named after the
//! process id so that parallel runs do not meet. Needs root and Open
//! vSwitch; fails (never skips) without them.

#![allow(clippy::unwrap_used)]

mod local_ovs;

use iris_testbed::controller::ControllerProcess;
use iris_testbed::pki::{CertFiles, Pki};
use local_ovs::{free_port, free_ports, Ovs};
use std::path::Path;
use std::time::{Duration, Instant};

/// Polls `what` every 100 ms until it holds, for at most `secs`; the
/// controller's log is in the failure.
fn wait_for(c: &ControllerProcess, secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            Instant::now() < until,
            "waited {secs} s for {what}; the controller's log ends:\n{}",
            c.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn refused(c: &ControllerProcess, why: &str) -> f64 {
    let m = c.metrics().unwrap();
    m.by_label("iris_switches_refused_total", "why")
        .get(why)
        .copied()
        .unwrap_or(0.0)
}

/// The controller over TLS on `port` with the `controller` certificate of
/// `pki`, managing `bridge` on `hosts` (TOML tables), logging to
/// `dir/controller.log`.
fn start_controller(
    dir: &Path,
    port: u16,
    pki: &Pki,
    bridge: &str,
    hosts: &str,
) -> ControllerProcess {
    let ours = pki.issue("controller").unwrap();
    let config = dir.join("iris.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"ssl:127.0.0.1:{port}\"\napi = \"127.0.0.1:0\"\nstore = \"store\"\n\n\
             [tls]\nprivate_key = {:?}\ncertificate = {:?}\nca_certificate = {:?}\n\n\
             [bridge]\nname = \"{bridge}\"\ndatapath_type = \"netdev\"\n\n{hosts}",
            ours.private_key, ours.certificate, pki.ca_certificate,
        ),
    )
    .unwrap();
    ControllerProcess::start(
        Path::new(env!("CARGO_BIN_EXE_iris-controller")),
        &config,
        &dir.join("controller.log"),
    )
    .unwrap()
}

/// In `dir`: our CA with pm1's and pm2's certificates, and another CA.
fn pkis(dir: &Path) -> (Pki, CertFiles, CertFiles, Pki) {
    let pki = Pki::new(dir, "iris").unwrap();
    let (pm1, pm2) = (pki.issue("pm1").unwrap(), pki.issue("pm2").unwrap());
    (pki, pm1, pm2, Pki::new(dir, "rogue").unwrap())
}

/// Open vSwitch in `dir` (with `dummy` datapaths), whose `bridge` is
/// deleted when it stops, with `me`'s key and certificate and `pki`'s CA.
fn ovs_with(dir: &Path, dummy: bool, bridge: &str, me: &CertFiles, pki: &Pki) -> Ovs {
    let mut ovs = Ovs::start(dir, dummy);
    ovs.bridges.push(bridge.to_owned());
    ovs.set_ssl(me, &pki.ca_certificate);
    ovs
}

fn pm1_peer(c: &ControllerProcess) -> Option<String> {
    let host = c.get_json("/v1/hosts/pm1").unwrap();
    host["openflow_peer"].as_str().map(str::to_owned)
}

#[test]
fn over_tls_real_ovs_is_accepted_and_impostors_claiming_its_dpid_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (pki, pm1_cert, pm2_cert, rogue) = pkis(dir);
    let rogue_pm1 = rogue.issue("pm1").unwrap();

    let tag = std::process::id() % 100_000;
    let bridge = format!("irt{tag}");
    let evil = format!("irx{tag}");
    let dpid = "00000000000000a1";
    let port = free_port();

    let real = ovs_with(&dir.join("pm1"), false, &bridge, &pm1_cert, &pki);

    let c = start_controller(
        dir,
        port,
        &pki,
        &bridge,
        &format!(
            "[[host]]\nname = \"pm1\"\nunderlay_ip = \"192.168.77.1\"\nrole = \"compute\"\n\
             ovsdb = \"{}\"\ndatapath_id = \"{dpid}\"\n",
            real.db()
        ),
    );
    // The OVSDB manager writes the ssl: target into the bridge; OVS
    // connects with pm1's certificate and gets pm1's tables.
    wait_for(&c, 20, "pm1's switch over TLS with its flows", || {
        pm1_peer(&c).is_some() && !real.flows(&bridge).is_empty()
    });
    assert_eq!(
        real.vsctl(&["get", "Controller", &bridge, "target"]).trim(),
        format!("\"ssl:127.0.0.1:{port}\"")
    );
    let peer = pm1_peer(&c);
    let flows = real.flows(&bridge);

    // Impostors: a bridge of a second Open vSwitch claiming pm1's dpid,
    // first with another CA's certificate for pm1, then with our CA's
    // certificate for pm2.
    let mut fake = Ovs::start(&dir.join("impostor"), true);
    fake.bridges.push(evil.clone());
    fake.set_ssl(&rogue_pm1, &pki.ca_certificate);
    fake.vsctl(&[
        "add-br",
        &evil,
        "--",
        "set",
        "Bridge",
        &evil,
        "datapath_type=netdev",
        "protocols=OpenFlow13",
        "fail_mode=secure",
        &format!("other_config:datapath-id={dpid}"),
        "--",
        "set-controller",
        &evil,
        &format!("ssl:127.0.0.1:{port}"),
    ]);
    wait_for(&c, 20, "another CA's pm1 to be refused", || {
        refused(&c, "tls_handshake") >= 1.0
    });
    fake.set_ssl(&pm2_cert, &pki.ca_certificate);
    wait_for(
        &c,
        30,
        "pm2's certificate claiming pm1 to be refused",
        || refused(&c, "certificate_not_this_host") >= 1.0,
    );

    assert_eq!(pm1_peer(&c), peer, "the real switch keeps its session");
    assert_eq!(real.flows(&bridge), flows, "and its flows");
    assert!(
        fake.flows(&evil).is_empty(),
        "the impostor got none of pm1's flows"
    );
    let health = c.get_json("/healthz").unwrap();
    assert_eq!(health["switches_ready"], 1, "{health}");
    c.stop(Duration::from_secs(5)).unwrap();
}

fn host(c: &ControllerProcess, name: &str) -> serde_json::Value {
    c.get_json(&format!("/v1/hosts/{name}")).unwrap()
}

#[test]
fn ovsdb_over_ssl_configures_the_bridge_and_servers_that_cannot_prove_their_host_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (pki, pm1_cert, pm2_cert, rogue) = pkis(dir);
    let rogue_pm2 = rogue.issue("pm2").unwrap();

    let tag = std::process::id() % 100_000;
    let bridge = format!("irs{tag}");
    let port = free_port();

    let pm1 = ovs_with(&dir.join("pm1"), false, &bridge, &pm1_cert, &pki);
    pm1.vsctl(&["set-manager", "pssl:0:127.0.0.1"]);
    // pm2's server first shows pm1's certificate: our CA's, another host's.
    let pm2 = ovs_with(&dir.join("pm2"), true, &bridge, &pm1_cert, &pki);
    pm2.vsctl(&["set-manager", "pssl:0:127.0.0.1"]);
    let (p1, p2) = (pm1.pssl_port(), pm2.pssl_port());

    let c = start_controller(
        dir,
        port,
        &pki,
        &bridge,
        &format!(
            "[[host]]\nname = \"pm1\"\nunderlay_ip = \"192.168.78.1\"\nrole = \"compute\"\n\
             ovsdb = \"ssl:127.0.0.1:{p1}\"\n\n\
             [[host]]\nname = \"pm2\"\nunderlay_ip = \"192.168.78.2\"\nrole = \"compute\"\n\
             ovsdb = \"ssl:127.0.0.1:{p2}\"\n"
        ),
    );
    let log = || std::fs::read_to_string(dir.join("controller.log")).unwrap_or_default();

    // pm1 over ssl:, its bridge made through it, its switch over TLS.
    wait_for(&c, 20, "pm1's OVSDB over SSL and its switch", || {
        host(&c, "pm1")["ovsdb_connected"] == true
            && pm1_peer(&c).is_some()
            && !pm1.flows(&bridge).is_empty()
    });
    assert_eq!(
        pm1.vsctl(&["get", "Controller", &bridge, "target"]).trim(),
        format!("\"ssl:127.0.0.1:{port}\"")
    );

    // pm2's server cannot prove it is pm2: refused for the name, then for
    // the CA, and nothing is written to its database meanwhile.
    wait_for(&c, 20, "pm1's certificate on pm2 to be refused", || {
        log().contains(&format!("TLS with OVSDB at ssl:127.0.0.1:{p2} failed"))
            && log().contains("not valid for name \"pm2\"")
    });
    pm2.set_ssl(&rogue_pm2, &pki.ca_certificate);
    wait_for(&c, 20, "another CA's pm2 to be refused", || {
        log().contains("UnknownIssuer")
    });
    assert_eq!(host(&c, "pm2")["ovsdb_connected"], false);
    assert_eq!(pm2.vsctl(&["list-br"]).trim(), "", "nothing was written");

    // With its own certificate it is taken.
    pm2.set_ssl(&pm2_cert, &pki.ca_certificate);
    wait_for(&c, 40, "pm2 with its own certificate", || {
        host(&c, "pm2")["ovsdb_connected"] == true
    });
    assert_eq!(pm2.vsctl(&["list-br"]).trim(), bridge);
    c.stop(Duration::from_secs(5)).unwrap();
}

#[test]
fn in_passive_mode_over_tls_the_controller_dials_real_ovs_and_refuses_switches_that_cannot_prove_their_host(
) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (pki, pm1_cert, pm2_cert, rogue) = pkis(dir);
    let rogue_pm2 = rogue.issue("pm2").unwrap();

    let tag = std::process::id() % 100_000;
    let bridge = format!("irp{tag}");
    let [port, of1, of2] = free_ports();

    let pm1 = ovs_with(&dir.join("pm1"), false, &bridge, &pm1_cert, &pki);
    // pm2's switch first shows another CA's certificate for pm2.
    let pm2 = ovs_with(&dir.join("pm2"), true, &bridge, &rogue_pm2, &pki);

    // `openflow` lands in the [bridge] table start_controller opens.
    let c = start_controller(
        dir,
        port,
        &pki,
        &bridge,
        &format!(
            "openflow = \"passive\"\n\n\
             [[host]]\nname = \"pm1\"\nunderlay_ip = \"192.168.76.1\"\nrole = \"compute\"\n\
             ovsdb = \"{}\"\ndatapath_id = \"00000000000000c1\"\n\
             controller = \"pssl:{of1}:127.0.0.1\"\n\n\
             [[host]]\nname = \"pm2\"\nunderlay_ip = \"192.168.76.2\"\nrole = \"compute\"\n\
             ovsdb = \"{}\"\ndatapath_id = \"00000000000000c2\"\n\
             controller = \"pssl:{of2}:127.0.0.1\"\n",
            pm1.db(),
            pm2.db()
        ),
    );
    // The bridge listens with pssl:; the controller dials it over TLS and
    // pm1's certificate proves pm1.
    wait_for(
        &c,
        20,
        "pm1's listening switch over TLS with its flows",
        || pm1_peer(&c).is_some() && !pm1.flows(&bridge).is_empty(),
    );
    assert_eq!(
        pm1.vsctl(&["get", "Controller", &bridge, "target"]).trim(),
        format!("\"pssl:{of1}:127.0.0.1\"")
    );
    assert_eq!(
        pm1_peer(&c).as_deref(),
        Some(format!("tcp:127.0.0.1:{of1}").as_str())
    );
    let flows = pm1.flows(&bridge);

    // pm2's switch cannot prove it is pm2: refused for the CA, then for
    // the name, and it gets no flow.
    wait_for(&c, 30, "another CA's pm2 to be refused", || {
        refused(&c, "tls_handshake") >= 1.0
    });
    pm2.set_ssl(&pm1_cert, &pki.ca_certificate);
    wait_for(&c, 30, "pm1's certificate on pm2 to be refused", || {
        refused(&c, "certificate_not_this_host") >= 1.0
    });
    assert!(
        host(&c, "pm2")["openflow_peer"].is_null(),
        "{}",
        host(&c, "pm2")
    );
    assert!(pm2.flows(&bridge).is_empty(), "pm2's impostor got flows");
    assert_eq!(pm1.flows(&bridge), flows, "pm1 kept its flows");

    // With its own certificate it is taken.
    pm2.set_ssl(&pm2_cert, &pki.ca_certificate);
    wait_for(&c, 30, "pm2 with its own certificate", || {
        !host(&c, "pm2")["openflow_peer"].is_null() && !pm2.flows(&bridge).is_empty()
    });
    c.stop(Duration::from_secs(5)).unwrap();
}
