//! The OVSDB manager against a real ovsdb-server that goes away and comes
//! back. No ovs-vswitchd is needed: the manager's job here is the database.
//! Needs Open vSwitch installed; fails (never skips) without it.

#![allow(clippy::unwrap_used)]

use iris_controller::control::{ManagedHost, TopologyEvent};
use iris_controller::model::{Host, HostName, HostRole};
use iris_controller::ovs_manager::{self, ManagerConfig};
use ovsdb::vswitch::DatapathType;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manager_reconnects_when_ovsdb_server_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let created = Command::new("ovsdb-tool")
        .arg("create")
        .arg(dir.join("conf.db"))
        .arg("/usr/share/openvswitch/vswitch.ovsschema")
        .status()
        .unwrap();
    assert!(created.success());
    let mut server = ovsdb_server(dir);

    let host = ManagedHost {
        host: Host {
            name: HostName("pm1".into()),
            underlay_ip: [192, 0, 2, 1].into(),
            role: HostRole::Compute,
            ovsdb_remote: format!("unix:{}", dir.join("db.sock").display()),
            datapath_id: 0x2a,
        },
        controller: None,
    };
    let peer = ManagedHost {
        host: Host {
            name: HostName("pm2".into()),
            underlay_ip: [192, 0, 2, 2].into(),
            role: HostRole::Compute,
            // Never reachable: its task keeps retrying without disturbing pm1's.
            ovsdb_remote: format!("unix:{}", dir.join("nobody.sock").display()),
            datapath_id: 0x2b,
        },
        controller: None,
    };
    let (_hosts_tx, hosts) = watch::channel(vec![host, peer]);
    let (tx, mut events) = mpsc::channel(64);
    let shutdown = CancellationToken::new();
    let config = ManagerConfig {
        bridge: "br-int".into(),
        datapath_type: DatapathType::Netdev,
        default_controller: "tcp:127.0.0.1:6653".into(),
        openflow: Default::default(),
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_millis(800),
    };
    let manager = tokio::spawn(ovs_manager::run(config, hosts, tx, shutdown.clone()));

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
