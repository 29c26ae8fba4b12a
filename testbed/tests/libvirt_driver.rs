//! The broker's `libvirt` compute driver against libvirt's test driver
//! (`test:///default`: libvirt's own in-process hypervisor, no daemon, no
//! QEMU) and the real Open vSwitch of a testbed PM: nodes are made, found
//! again, made again without change, refused when they clash, rolled back
//! when their port cannot be plugged, and removed. libvirt's state is
//! checked through a connection of the test's own, OVS's with `ovs-vsctl`.
//! Needs root and Open vSwitch. The same driver on real QEMU is the
//! `libvirt-node` scenario.

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;

use iris_api::compute::libvirt::{disk_path, tap_name, Accel, BootImage, Config, LibvirtDriver};
use iris_api::compute::{ComputeDriver, Created, NodeSpec, PmTarget};
use iris_testbed::{Pm, PmSpec, Testbed, UnderlaySpec, INTEGRATION_BRIDGE};
use virt::connect::Connect;
use virt::domain::Domain;

const TEST_URI: &str = "test:///default";

fn node(id: &str, n: u8) -> NodeSpec {
    NodeSpec {
        id: id.into(),
        vi: 7,
        mac: [0x52, 0x54, 0, 0, 0, n],
        ip: Some((Ipv4Addr::new(10, 0, 0, n), 24)),
        vcpus: 2,
        memory_mib: 256,
        disk_gib: 1,
        mtu: 1450,
        ssh_authorized_key: None,
    }
}

fn vsctl(pm: &Pm, args: &[&str]) -> String {
    pm.vsctl(args).unwrap().trim().to_owned()
}

fn ports(pm: &Pm) -> Vec<String> {
    vsctl(pm, &["list-ports", INTEGRATION_BRIDGE])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Whether the test driver has a domain of that name, and its XML.
fn domain(conn: &Connect, name: &str) -> Option<String> {
    let dom = Domain::lookup_by_name(conn, name).ok()?;
    assert!(
        dom.is_active().unwrap(),
        "{name} is defined but not running"
    );
    Some(dom.get_xml_desc(0).unwrap())
}

#[test]
fn nodes_are_made_found_again_refused_on_a_clash_rolled_back_and_removed() {
    let mut tb = Testbed::new("libvirt-driver").unwrap_or_else(|e| panic!("{e}"));
    let dc = tb
        .add_underlay(UnderlaySpec::new("dc", "192.168.52.0/24".parse().unwrap()))
        .unwrap();
    let pm_id = tb.add_pm(PmSpec::new("pm1", dc)).unwrap();
    let pm = tb.pm(pm_id);
    let target = PmTarget {
        name: pm.name().to_owned(),
        underlay_ip: pm.underlay_addr().addr(),
        ovsdb: pm.ovsdb_unix_target(),
        bridge: INTEGRATION_BRIDGE.to_owned(),
        endpoint: Some(TEST_URI.to_owned()),
    };
    let disks = tempfile::tempdir().unwrap();
    let driver = LibvirtDriver::new(Config {
        accel: Accel::Kvm,
        image: BootImage {
            kernel: "/boot/vmlinuz-iris".into(),
            initrd: "/boot/initrd-iris".into(),
            firmware: None,
            cmdline: "console=ttyS0".into(),
        },
        console_dir: None,
        state_dir: disks.path().to_owned(),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The test driver's state lives while a connection to it is open, and
    // is shared by every connection of the process: this one is the test's
    // own view.
    let conn = Connect::open(Some(TEST_URI)).unwrap();
    // The test driver's own example domain is not Iris's.
    assert!(Domain::lookup_by_name(&conn, "test").is_ok());
    assert_eq!(
        rt.block_on(driver.list(&target)).unwrap(),
        Vec::<String>::new()
    );

    // Made: a running domain with the CPU passed through and the NIC on
    // the tap, the tap on br-int in VI 7.
    let n1 = node("n1", 1);
    let tap = tap_name("n1");
    let created = rt.block_on(driver.create(&target, &n1)).unwrap();
    assert_eq!(
        created,
        Created {
            port: tap.clone(),
            handle: "iris-n1".into(),
            nested_virtualization: true,
        }
    );
    let xml = domain(&conn, "iris-n1").expect("domain iris-n1");
    for needle in [
        "host-passthrough",
        &format!("dev='{tap}'"),
        "52:54:00:00:00:01",
        "iris.ip=10.0.0.1/24",
    ] {
        assert!(xml.contains(needle), "{needle} not in {xml}");
    }
    let iface = |key: &str| {
        vsctl(
            pm,
            &["get", "Interface", &tap, &format!("external_ids:{key}")],
        )
    };
    // Its disk: a sparse file of the flavor's size, the domain's virtio vda.
    let disk = disk_path(driver.config(), pm.name(), "n1");
    assert_eq!(std::fs::metadata(&disk).unwrap().len(), 1 << 30);
    for needle in [
        format!("<source file='{}'", disk.display()),
        "<target dev='vda' bus='virtio'/>".to_owned(),
        "<driver name='qemu' type='raw'/>".to_owned(),
    ] {
        assert!(xml.contains(&needle), "{needle} not in {xml}");
    }
    assert_eq!(iface("iris-vi"), "\"7\"");
    assert_eq!(iface("attached-mac"), "\"52:54:00:00:00:01\"");
    assert_eq!(iface("iface-id"), "n1");
    assert_eq!(rt.block_on(driver.list(&target)).unwrap(), ["n1"]);

    // Made again: the same answer, nothing new.
    let again = rt.block_on(driver.create(&target, &n1)).unwrap();
    assert_eq!(again, created);
    assert_eq!(rt.block_on(driver.list(&target)).unwrap(), ["n1"]);
    assert_eq!(ports(pm).iter().filter(|p| **p == tap).count(), 1);

    // The same id with another spec is refused, and what exists stays.
    let bigger = NodeSpec {
        vcpus: 4,
        ..n1.clone()
    };
    let err = rt
        .block_on(driver.create(&target, &bigger))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("another spec") && err.contains("vcpus 2 wanted 4"),
        "{err}"
    );
    assert!(domain(&conn, "iris-n1").is_some());
    assert!(ports(pm).contains(&tap));

    // A port that cannot be plugged (no such bridge, no OVSDB there) rolls
    // the domain back.
    let no_bridge = PmTarget {
        bridge: "br-nope".into(),
        ..target.clone()
    };
    let err = rt
        .block_on(driver.create(&no_bridge, &node("n2", 2)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("br-nope"), "{err}");
    assert!(!err.contains("rolling back"), "the rollback failed: {err}");
    assert!(domain(&conn, "iris-n2").is_none(), "iris-n2 was left");
    let n2_disk = disk_path(driver.config(), &no_bridge.name, "n2");
    assert!(!n2_disk.exists(), "{} was left", n2_disk.display());
    let no_ovsdb = PmTarget {
        ovsdb: "unix:/nonexistent/db.sock".into(),
        ..target.clone()
    };
    let err = rt
        .block_on(driver.create(&no_ovsdb, &node("n3", 3)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/db.sock"), "{err}");
    assert!(domain(&conn, "iris-n3").is_none(), "iris-n3 was left");
    assert!(!disk_path(driver.config(), pm.name(), "n3").exists());
    // A refused spec left n1's disk as it was.
    assert_eq!(std::fs::metadata(&disk).unwrap().len(), 1 << 30);
    assert_eq!(rt.block_on(driver.list(&target)).unwrap(), ["n1"]);

    // A bad spec is refused before anything is made.
    let err = rt
        .block_on(driver.create(&target, &node("bad/id", 4)))
        .unwrap_err();
    assert_eq!(err.driver, "libvirt");
    assert!(err.reason.contains("bad/id"), "{err}");

    // A domain named like a node that Iris did not make is neither listed
    // nor deleted.
    let foreign = "<domain type='test'><name>iris-foreign</name><memory>8192</memory>\
                   <os><type>hvm</type></os></domain>";
    let dom = Domain::define_xml(&conn, foreign).unwrap();
    assert_eq!(rt.block_on(driver.list(&target)).unwrap(), ["n1"]);
    let err = rt
        .block_on(driver.delete(&target, "foreign"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("did not make"), "{err}");
    dom.undefine().unwrap();

    // A disk whose domain was never defined (a crash in between) is
    // listed, so that the broker's sweep deletes it.
    let orphan = disk_path(driver.config(), pm.name(), "n4");
    std::fs::write(&orphan, b"").unwrap();
    assert_eq!(rt.block_on(driver.list(&target)).unwrap(), ["n1", "n4"]);
    rt.block_on(driver.delete(&target, "n4")).unwrap();
    assert!(!orphan.exists());

    // Deleted: no domain, no port, no disk; deleting again is no error.
    rt.block_on(driver.delete(&target, "n1")).unwrap();
    assert!(!disk.exists(), "{} was left", disk.display());
    assert!(Domain::lookup_by_name(&conn, "iris-n1").is_err());
    assert!(!ports(pm).contains(&tap), "{tap} left on br-int");
    assert_eq!(
        rt.block_on(driver.list(&target)).unwrap(),
        Vec::<String>::new()
    );
    rt.block_on(driver.delete(&target, "n1")).unwrap();
}
