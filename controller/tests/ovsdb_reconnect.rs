//! The OVSDB manager against a real ovsdb-server that goes away and comes
//! back. No ovs-vswitchd is needed: the manager's job here is the database.
//! Needs Open vSwitch installed; fails (never skips) without it.

#![allow(clippy::unwrap_used)]

use iris_controller::control::{ManagedHost, TopologyEvent};
use iris_controller::model::{Host, HostName, HostRole};
use iris_controller::ovs_manager::{self, ManagerConfig, OpenFlowMode};
use iris_controller::server::ListenAddr;
use ovsdb::vswitch::DatapathType;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

fn ovsdb_server(dir: &Path) -> Child {
    Command::new("ovsdb-server")
        .arg(dir.join("conf.db"))
        .arg(format!("--remote=punix:{}", dir.join("db.sock").display()))
        .arg(format!("--unixctl={}", dir.join("ovsdb.ctl").display()))
        .arg(format!("--log-file={}", dir.join("ovsdb.log").display()))
        .arg("-vconsole:off")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ovsdb-server (Open vSwitch) must be installed")
}

fn vsctl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("ovs-vsctl")
        .arg(format!("--db=unix:{}", dir.join("db.sock").display()))
        .args(["--no-wait", "--timeout=5"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The next OVSDB up/down report, skipping port reports.
async fn next_ovsdb(events: &mut mpsc::Receiver<TopologyEvent>) -> bool {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(15), events.recv())
            .await
            .expect("a report in time")
            .expect("the manager runs");
        if let TopologyEvent::Ovsdb { connected, .. } = e {
            return connected;
        }
    }
}

/// Compute host `pm<n>` at 192.0.2.n, datapath id 0x29 + n, its OVSDB on
/// the unix socket `ovsdb`.
fn compute(n: u8, ovsdb: &Path) -> ManagedHost {
    ManagedHost {
        host: Host {
            name: HostName(format!("pm{n}")),
            underlay_ip: [192, 0, 2, n].into(),
            role: HostRole::Compute,
            ovsdb_remote: format!("unix:{}", ovsdb.display()),
            datapath_id: 0x29 + u64::from(n),
        },
        controller: None,
    }
}

/// A `br-int` on the userspace datapath in `openflow` mode, OVSDB retried
/// every 100 to 800 ms.
fn manager(openflow: OpenFlowMode) -> ManagerConfig {
    ManagerConfig {
        bridge: "br-int".into(),
        datapath_type: DatapathType::Netdev,
        default_controller: "tcp:127.0.0.1:6653".into(),
        replicas: Vec::new(),
        openflow,
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_millis(800),
        tls: None,
    }
}

/// An empty Open vSwitch database in `dir`.
fn create_db(dir: &Path) {
    let created = Command::new("ovsdb-tool")
        .arg("create")
        .arg(dir.join("conf.db"))
        .arg("/usr/share/openvswitch/vswitch.ovsschema")
        .status()
        .unwrap();
    assert!(created.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manager_reconnects_when_ovsdb_server_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    create_db(dir);
    let mut server = ovsdb_server(dir);

    let host = compute(1, &dir.join("db.sock"));
    // Never reachable: its task keeps retrying without disturbing pm1's.
    let peer = compute(2, &dir.join("nobody.sock"));
    let (_hosts_tx, hosts) = watch::channel(vec![host, peer]);
    let (tx, mut events) = mpsc::channel(64);
    let shutdown = CancellationToken::new();
    let config = manager(OpenFlowMode::Active);
    let (switches, _) = watch::channel(Default::default());
    let manager = tokio::spawn(ovs_manager::run(
        config,
        hosts,
        tx,
        switches,
        shutdown.clone(),
    ));

    assert!(next_ovsdb(&mut events).await, "connects");
    let get = |what: &str| vsctl(dir, &["get", "Bridge", "br-int", what]);
    assert_eq!(get("fail_mode").trim(), "secure");
    assert_eq!(get("datapath_type").trim(), "netdev");
    assert_eq!(get("protocols").trim(), "[OpenFlow13]");
    assert_eq!(
        get("other_config:datapath-id").trim(),
        "\"000000000000002a\""
    );
    assert_eq!(
        vsctl(dir, &["get-controller", "br-int"]).trim(),
        "tcp:127.0.0.1:6653"
    );
    assert!(vsctl(dir, &["list-ports", "br-int"]).contains("gre-c0000202"));

    // The server goes away: the manager says so, then keeps trying.
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(!next_ovsdb(&mut events).await, "notices the loss");
    let mut server = ovsdb_server(dir);
    assert!(next_ovsdb(&mut events).await, "reconnects");
    // Someone changes the bridge by hand; the next session puts it right.
    vsctl(dir, &["set", "Bridge", "br-int", "fail_mode=standalone"]);
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(!next_ovsdb(&mut events).await);
    let mut server = ovsdb_server(dir);
    assert!(next_ovsdb(&mut events).await);
    assert_eq!(get("fail_mode").trim(), "secure");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), manager)
        .await
        .expect("the manager stops on shutdown")
        .unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listening_switch_is_offered_to_the_connector_once_its_ports_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    create_db(dir);
    let (hosts_tx, hosts) = watch::channel(vec![compute(1, &dir.join("db.sock"))]);
    let (tx, mut events) = mpsc::channel(64);
    let shutdown = CancellationToken::new();
    let config = manager(OpenFlowMode::Passive);
    let (switches_tx, mut switches) = watch::channel(BTreeSet::new());
    let manager = tokio::spawn(ovs_manager::run(
        config,
        hosts,
        tx,
        switches_tx,
        shutdown.clone(),
    ));
    // No OVSDB yet, so no ports: the switch is not offered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(switches.borrow_and_update().is_empty());

    let mut server = ovsdb_server(dir);
    // It is offered once the ports report has been taken (here, by the
    // test, as the control loop would).
    let offered = async {
        let mut taken_ports = false;
        loop {
            tokio::select! {
                e = events.recv() => {
                    taken_ports |= matches!(e, Some(TopologyEvent::Ports { .. }));
                }
                changed = switches.changed() => {
                    changed.unwrap();
                    return taken_ports;
                }
            }
        }
    };
    let taken_ports = tokio::time::timeout(Duration::from_secs(15), offered)
        .await
        .expect("offered");
    assert!(taken_ports, "offered before its ports report was taken");
    let socket = dir.join("br-int.iris.sock");
    assert_eq!(
        *switches.borrow_and_update(),
        BTreeSet::from([ListenAddr::Unix(socket.clone())])
    );
    assert_eq!(
        vsctl(dir, &["get-controller", "br-int"]).trim(),
        format!("punix:{}", socket.display())
    );
    assert_eq!(
        vsctl(dir, &["--columns=type", "--bare", "list", "Controller"]).trim(),
        "primary"
    );

    // A target added by hand would give the switch a second connection
    // (and the two would supersede each other in turn): it is taken away.
    let passive = format!("punix:{}", socket.display());
    vsctl(
        dir,
        &["set-controller", "br-int", &passive, "tcp:127.0.0.1:6653"],
    );
    let repaired = async {
        while vsctl(dir, &["get-controller", "br-int"]).trim() != passive {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), repaired)
        .await
        .expect("the bridge is put right");

    // The host goes: so does its switch, for the connector.
    hosts_tx.send_replace(Vec::new());
    tokio::time::timeout(Duration::from_secs(5), switches.changed())
        .await
        .unwrap()
        .unwrap();
    assert!(switches.borrow().is_empty());

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), manager)
        .await
        .unwrap()
        .unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
}
