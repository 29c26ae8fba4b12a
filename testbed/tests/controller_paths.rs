//! The ways a controller in the root namespace reaches emulated PMs, which
//! live in namespaces of their own (their 127.0.0.1 is not the host's):
//! OpenFlow over a unix socket linked into each PM's run directory, OpenFlow
//! over TCP on a management link, and OVSDB over TCP on the underlay.
//! Needs root and Open vSwitch.

#![allow(clippy::unwrap_used)]

mod topology;

use std::io::{self, Read};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::thread;
use std::time::{Duration, Instant};

use iris_testbed::{FailMode, Ipv4Cidr, PmSpec, Testbed, UnderlaySpec};

/// Accepts one connection (the listener is non-blocking; accepted streams
/// are blocking) within a few seconds and returns the first 8 bytes it sends:
/// an OpenFlow header.
fn first_header<S: Read>(mut accept: impl FnMut() -> io::Result<S>) -> [u8; 8] {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match accept() {
            Ok(stream) => break stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "vswitchd never connected");
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).unwrap();
    header
}

/// OpenFlow 1.3 (wire version 4) OFPT_HELLO (type 0).
fn assert_hello_1_3(header: [u8; 8]) {
    assert_eq!((header[0], header[1]), (4, 0), "{header:?}");
}

#[test]
fn one_unix_socket_in_the_root_namespace_serves_every_pm() {
    let t = topology::two_pms("ctl-unix", FailMode::Secure);
    let socket = t.tb.state_dir().join("controller.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    listener.set_nonblocking(true).unwrap();
    for pm in [t.pm1, t.pm2] {
        let pm = t.tb.pm(pm);
        let target = pm.link_controller_socket(&socket).unwrap();
        assert!(target.starts_with("unix:"), "{target}");
        pm.set_controller(&[&target]).unwrap();
        assert_hello_1_3(first_header(|| listener.accept().map(|(s, _)| s)));
    }
}

#[test]
fn tcp_controller_on_a_management_link() {
    let mut tb = Testbed::new("ctl-tcp").unwrap_or_else(|e| panic!("cannot build a testbed: {e}"));
    let cidr = |s: &str| s.parse::<Ipv4Cidr>().unwrap();
    let dc = tb
        .add_underlay(UnderlaySpec::new("dc", cidr("192.168.50.0/24")))
        .unwrap();
    let (root, pm_side) = (cidr("198.18.202.1/30"), cidr("198.18.202.2/30"));
    let pm = tb
        .add_pm(PmSpec::new("pm1", dc).management(root, pm_side))
        .unwrap();
    // Bound to the root end of the management link only.
    let listener = TcpListener::bind((root.addr(), 0)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    tb.pm(pm)
        .set_controller(&[&format!("tcp:{}:{port}", root.addr())])
        .unwrap();
    assert_hello_1_3(first_header(|| listener.accept().map(|(s, _)| s)));
}

#[test]
fn ovsdb_is_served_on_the_underlay() {
    let mut tb =
        Testbed::new("ovsdb-tcp").unwrap_or_else(|e| panic!("cannot build a testbed: {e}"));
    let dc = tb
        .add_underlay(UnderlaySpec::new("dc", "192.168.50.0/24".parse().unwrap()))
        .unwrap();
    let pm1 = tb
        .add_pm(PmSpec::new("pm1", dc).ovsdb_tcp_port(6640))
        .unwrap();
    let pm2 = tb.add_pm(PmSpec::new("pm2", dc)).unwrap();
    let target = tb.pm(pm1).ovsdb_tcp_target().unwrap();
    assert_eq!(
        target,
        format!("tcp:{}:6640", tb.pm(pm1).underlay_addr().addr())
    );
    // From pm2's namespace, across the underlay switch.
    let db = format!("--db={target}");
    let bridges = tb
        .pm(pm2)
        .exec(&["ovs-vsctl", "--timeout=10", &db, "list-br"])
        .unwrap();
    assert_eq!(bridges.lines().collect::<Vec<_>>(), ["br-int", "br-ul"]);
}
