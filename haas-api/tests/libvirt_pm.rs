//! A PM registered with `driver = "libvirt"` through the broker's API: the
//! broker configured with a `[libvirt]` table, libvirt's test driver
//! (`test:///default`, in this process, so the test sees the domains the
//! broker's driver made), the real controller and a testbed PM's Open
//! vSwitch. An operator's node request makes a domain, its disk and an OVS
//! port carrying the VI; deleting the node removes all three. Needs root
//! and Open vSwitch. Real QEMU is the `libvirt-node` scenario.

#![cfg(feature = "libvirt")]
#![allow(clippy::unwrap_used)]

mod common;

use common::{call, controller_binary, provider, start_broker, wait_operation, ADMIN};
use iris_api::compute::libvirt::{disk_path, domain_name, tap_name};
use iris_api::config::Config;
use iris_testbed::scenario::{Harness, Options};
use iris_testbed::INTEGRATION_BRIDGE;
use serde_json::json;
use std::time::Duration;
use virt::connect::Connect;
use virt::domain::Domain;

const TEST_URI: &str = "test:///default";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_libvirt_pm_registered_over_the_api_gets_nodes_and_loses_them_whole() {
    let options = Options {
        controller: controller_binary(),
        gateway: None,
        testbed: iris_testbed::Config::default(),
    };
    let mut h = Harness::new("libvirt-pm", &options).unwrap();
    let pms = h.add_pms(&["pm1"]).unwrap();
    let config = h.config(&pms, Vec::new()).unwrap();
    h.start_controller(&config).unwrap();
    h.wait_ready(1, 1).unwrap();
    let controller = h.controller().unwrap().api_addr();
    let pm = h.tb.pm(pms[0]);

    let dir = h.file("broker");
    std::fs::create_dir_all(dir.join("disks")).unwrap();
    std::fs::write(dir.join("admin-token"), ADMIN).unwrap();
    // The test driver never reads the image; the broker checks it exists.
    std::fs::write(dir.join("vmlinuz"), "kernel").unwrap();
    std::fs::write(dir.join("initrd"), "initrd").unwrap();
    let text = format!(
        "listen = \"127.0.0.1:0\"\nstore = \"store\"\nadmin_token_file = \"admin-token\"\n\
         [controller]\nurl = \"http://{controller}\"\ntoken_file = \"{}\"\n\
         [libvirt]\nkernel = \"vmlinuz\"\ninitrd = \"initrd\"\ncmdline = \"console=ttyS0\"\n\
         accel = \"kvm\"\nstate_dir = \"disks\"\n",
        h.file(iris_testbed::controller::API_TOKEN_FILE).display()
    );
    let broker_config = Config::parse(&text, &dir).unwrap();
    let libvirt = broker_config.libvirt.clone().unwrap();
    let broker = start_broker(&broker_config).await;
    let b = broker.base.clone();

    let (s, _, p) = call(
        &b,
        Some(ADMIN),
        "POST",
        "/v1/pms",
        Some(json!({"name": pm.name(),
            "capacity": {"vcpus": 8, "memory_mib": 8192, "disk_gib": 100},
            "underlay_ip": pm.underlay_addr().addr().to_string(),
            "ovsdb": pm.ovsdb_unix_target(), "driver": "libvirt", "endpoint": TEST_URI})),
    )
    .await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(p["driver"], "libvirt", "{p}");

    let (_, t) = provider(&b, "acme").await;
    let (s, _, f) = call(
        &b,
        Some(&t),
        "POST",
        "/v1/flavors",
        Some(json!({"name": "c1", "vcpus": 1, "memory_mib": 256, "disk_gib": 2})),
    )
    .await;
    assert_eq!(s, 201, "{f}");
    let (s, _, vi) = call(
        &b,
        Some(&t),
        "POST",
        "/v1/vis",
        Some(
            json!({"name": "net", "gateway": "203.0.113.7", "vlans": {"first": 100, "last": 199},
            "addressing": {"mode": "static_pool", "cidr": "10.77.0.0/24"}}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{vi}");
    let vi_id = vi["id"].as_str().unwrap().to_owned();
    let key = vi["tunnel_key"].as_u64().unwrap();

    let (s, hdr, op) = call(
        &b,
        Some(&t),
        "POST",
        "/v1/nodes",
        Some(json!({"vi": vi_id, "flavor": "c1", "count": 1})),
    )
    .await;
    assert_eq!(s, 202, "{op}");
    let at = hdr[reqwest::header::LOCATION].to_str().unwrap().to_owned();
    let op = wait_operation(&b, &t, &at, Duration::from_secs(60)).await;
    assert_eq!(op["status"], "succeeded", "{op}");
    let id = op["nodes"][0].as_str().unwrap().to_owned();
    let (s, _, node) = call(&b, Some(&t), "GET", &format!("/v1/nodes/{id}"), None).await;
    assert_eq!(s, 200, "{node}");
    assert_eq!(
        (node["state"].as_str(), node["pm"].as_str()),
        (Some("active"), Some(pm.name())),
        "{node}"
    );
    assert_eq!(node["nested_virtualization"], true, "{node}");

    let conn = Connect::open(Some(TEST_URI)).unwrap();
    let dom = Domain::lookup_by_name(&conn, &domain_name(&id)).unwrap();
    assert!(dom.is_active().unwrap());
    let xml = dom.get_xml_desc(0).unwrap();
    let mac = node["mac"].as_str().unwrap().to_lowercase();
    assert!(xml.contains(&mac), "{mac} not in {xml}");
    let disk = disk_path(&libvirt, pm.name(), &id);
    assert_eq!(
        std::fs::metadata(&disk).unwrap().len(),
        2 << 30,
        "{}",
        disk.display()
    );
    let tap = tap_name(&id);
    let ports = pm.vsctl(&["list-ports", INTEGRATION_BRIDGE]).unwrap();
    assert!(ports.lines().any(|l| l == tap), "{tap} not in {ports}");
    let vi_of_port = pm
        .vsctl(&["get", "Interface", &tap, "external_ids:iris-vi"])
        .unwrap();
    assert_eq!(vi_of_port.trim().trim_matches('"'), key.to_string());

    let (s, hdr, op) = call(&b, Some(&t), "DELETE", &format!("/v1/nodes/{id}"), None).await;
    assert_eq!(s, 202, "{op}");
    let at = hdr[reqwest::header::LOCATION].to_str().unwrap().to_owned();
    let op = wait_operation(&b, &t, &at, Duration::from_secs(60)).await;
    assert_eq!(op["status"], "succeeded", "{op}");
    assert!(
        Domain::lookup_by_name(&conn, &domain_name(&id)).is_err(),
        "the domain of {id} remains"
    );
    assert!(!disk.exists(), "{} remains", disk.display());
    let ports = pm.vsctl(&["list-ports", INTEGRATION_BRIDGE]).unwrap();
    assert!(!ports.lines().any(|l| l == tap), "{tap} remains in {ports}");
    broker.shut().await;
}
