//! A small world for unit tests: compute hosts `a`, `b`, `c`, a gateway
//! host `gw`, VI 1 (GRE key 1001, behind `gw`) and VI 2 (GRE key 1002, no
//! gateway), a full tunnel mesh where the tunnel from X to the i-th host is
//! ofport 100 + i.

use crate::model::{Host, HostName, HostRole, Topology, Vi, ViId, VmPort};
use std::net::Ipv4Addr;

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
    let mut t = Topology::default();
    for (i, n) in HOSTS.iter().enumerate() {
        t.hosts.insert(
            host(n),
            Host {
                name: host(n),
                underlay_ip: Ipv4Addr::new(192, 0, 2, i as u8 + 1),
                role: if *n == "gw" {
                    HostRole::Gateway
                } else {
                    HostRole::Compute
                },
                ovsdb_remote: format!("unix:/run/{n}/db.sock"),
                datapath_id: i as u64 + 1,
            },
        );
        for m in HOSTS.iter().filter(|m| *m != n) {
            t.tunnels.insert((host(n), host(m)), tunnel_ofport(m));
        }
    }
    t.vis.insert(
        ViId(1),
        Vi {
            id: ViId(1),
            name: "one".into(),
            gre_key: 1001,
            gateways: vec![host("gw")],
        },
    );
    t.vis.insert(
        ViId(2),
        Vi {
            id: ViId(2),
            name: "two".into(),
            gre_key: 1002,
            gateways: Vec::new(),
        },
    );
    for (h, ofport, vi) in PORTS {
        t.vm_ports.insert(
            (host(h), ofport),
            VmPort {
                host: host(h),
                name: format!("{h}-vm{ofport}"),
                ofport,
                vi: ViId(vi),
            },
        );
    }
    t
}

pub fn port(t: &Topology, h: &str, ofport: u32) -> VmPort {
    t.vm_port(&host(h), ofport).expect("fixture port").clone()
}
