//! A small world for unit tests: compute hosts `a`, `b`, `c`, a gateway
//! host `gw`, VI 1 (GRE key 1001, behind `gw`) and VI 2 (GRE key 1002, no
//! gateway), a full tunnel mesh where the tunnel from X to the i-th host is
//! ofport 100 + i.

use crate::model::{HostName, Topology, ViId, VmPort};

pub const HOSTS: [&str; 4] = ["a", "b", "c", "gw"];

pub fn host(n: &str) -> HostName {
    HostName(n.to_owned())
}

pub fn tunnel_ofport(to: &str) -> u32 {
    100 + HOSTS.iter().position(|h| *h == to).expect("fixture host") as u32
}

/// VM ports: (host, ofport, vi).
pub const PORTS: [(&str, u32, u32); 6] = [
    ("a", 1, 1),
    ("a", 2, 2),
    ("b", 1, 1),
    ("b", 2, 2),
    ("c", 3, 1),
    ("gw", 7, 1),
];

pub fn world() -> Topology {
    let mut t = Topology::full_mesh(&HOSTS, &["gw"], 100);
    t.add_vi(ViId(1), 1001, &["gw"]);
    t.add_vi(ViId(2), 1002, &[]);
    for (h, ofport, vi) in PORTS {
        t.add_vm_port(h, ofport, ViId(vi));
    }
    t
}

pub fn port(t: &Topology, h: &str, ofport: u32) -> VmPort {
    t.vm_port(&host(h), ofport).expect("fixture port").clone()
}
