//! The world the flow-behaviour tests run in: three compute hosts `h1`,
//! `h2`, `h3` and a gateway host `gw`, in a full GRE mesh; two VIs that use
//! the very same MACs, IPs and VLANs. VI 1 reaches its operator's data
//! center through `gw` (uplink port 7) and knows one MAC there; VI 2 has no
//! gateway.

#![allow(dead_code)]

use iris_controller::flowsim::{Fabric, Trip};
use iris_controller::model::{HostName, Location, Topology, ViId, Vlan};
use iris_controller::registry::{Registry, SeedEntry, Timestamp};
use ofp::packet::{ArpRepr, MacAddr, VlanTag};
use std::net::Ipv4Addr;

pub const HOSTS: [&str; 4] = ["h1", "h2", "h3", "gw"];
pub const GATEWAY_UPLINK: u32 = 7;

pub fn host(n: &str) -> HostName {
    HostName(n.to_owned())
}

/// On every host, the tunnel to the i-th host of [`HOSTS`] is port 100 + i.
pub fn tunnel(to: &str) -> u32 {
    100 + HOSTS.iter().position(|h| *h == to).expect("a test host") as u32
}

pub fn gre_key(vi: u32) -> u32 {
    0x1000 + vi
}

/// A VM: the same in both VIs but for its port (VI 2's are 10 higher).
#[derive(Debug, Clone, Copy)]
pub struct Vm {
    pub name: &'static str,
    pub mac: &'static str,
    pub ip: &'static str,
    pub vlan: Option<u16>,
    pub host: &'static str,
    pub port: u32,
}

/// VLAN 20 reuses VLAN 10's addresses; E is untagged.
pub const VMS: [Vm; 5] = [
    Vm {
        name: "A",
        mac: "52:54:00:00:00:01",
        ip: "10.0.0.1",
        vlan: Some(10),
        host: "h1",
        port: 1,
    },
    Vm {
        name: "B",
        mac: "52:54:00:00:00:02",
        ip: "10.0.0.2",
        vlan: Some(10),
        host: "h2",
        port: 2,
    },
    Vm {
        name: "C",
        mac: "52:54:00:00:00:03",
        ip: "10.0.0.1",
        vlan: Some(20),
        host: "h3",
        port: 3,
    },
    Vm {
        name: "D",
        mac: "52:54:00:00:00:05",
        ip: "10.0.0.2",
        vlan: Some(20),
        host: "h1",
        port: 5,
    },
    Vm {
        name: "E",
        mac: "52:54:00:00:00:04",
        ip: "10.0.0.4",
        vlan: None,
        host: "h3",
        port: 4,
    },
];

/// VI 1's MAC in the operator's data center, behind `gw`.
pub const REMOTE_MAC: &str = "52:54:00:00:00:09";
pub const REMOTE_IP: &str = "10.0.0.9";

pub fn vm(name: &str) -> Vm {
    *VMS.iter().find(|v| v.name == name).expect("a test VM")
}

impl Vm {
    pub fn port_in(&self, vi: u32) -> u32 {
        self.port + 10 * (vi - 1)
    }
    pub fn mac(&self) -> MacAddr {
        mac(self.mac)
    }
    pub fn ip(&self) -> Ipv4Addr {
        self.ip.parse().expect("a test IP")
    }
    pub fn vlan(&self) -> Vlan {
        self.vlan.map_or(Vlan::Untagged, Vlan::Tagged)
    }
    pub fn host(&self) -> HostName {
        host(self.host)
    }
}

pub fn mac(s: &str) -> MacAddr {
    s.parse().expect("a test MAC")
}

pub fn topology() -> Topology {
    let mut t = Topology::full_mesh(&HOSTS, &["gw"], 100);
    for vi in [1, 2] {
        let gateways: &[&str] = if vi == 1 { &["gw"] } else { &[] };
        t.add_vi(ViId(vi), gre_key(vi), gateways);
        for v in VMS {
            t.add_vm_port(v.host, v.port_in(vi), ViId(vi));
        }
    }
    t.add_vm_port("gw", GATEWAY_UPLINK, ViId(1));
    t
}

/// Every VM seeded at its port, in both VIs; VI 1 also knows its remote MAC.
pub fn registry(t: &Topology) -> Registry {
    let mut r = Registry::new();
    for vi in [1, 2] {
        let mut seeds: Vec<SeedEntry> = VMS
            .iter()
            .map(|v| SeedEntry {
                mac: v.mac(),
                ip: Some(v.ip()),
                vlan: v.vlan(),
                location: Some(Location::Port {
                    host: v.host(),
                    ofport: v.port_in(vi),
                }),
            })
            .collect();
        if vi == 1 {
            seeds.push(SeedEntry {
                mac: mac(REMOTE_MAC),
                ip: Some(REMOTE_IP.parse().expect("an IP")),
                vlan: Vlan::Tagged(10),
                location: Some(Location::BehindGateway {
                    gateway: host("gw"),
                }),
            });
        }
        r.seed(Timestamp(0), t, ViId(vi), &seeds)
            .expect("valid seeds");
    }
    r
}

/// The world with every switch programmed.
pub fn fabric() -> (Fabric, Registry) {
    let t = topology();
    let r = registry(&t);
    let mut f = Fabric::new(t);
    f.converge(&r).expect("the compiled flows install");
    (f, r)
}

/// An Ethernet frame with an optional 802.1Q tag and a small IPv4-looking
/// payload.
pub fn frame(dst: MacAddr, src: MacAddr, vlan: Option<u16>, ethertype: u16) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(dst.0);
    b.extend(src.0);
    if let Some(v) = vlan {
        b.extend([0x81, 0x00]);
        b.extend(v.to_be_bytes());
    }
    b.extend(ethertype.to_be_bytes());
    b.extend([0x45; 28]);
    b
}

pub fn arp_bytes(a: &ArpRepr) -> Vec<u8> {
    let mut b = Vec::new();
    a.emit(&mut b);
    b
}

pub fn with_vlan(mut a: ArpRepr, vlan: Option<u16>) -> ArpRepr {
    if let Some(v) = vlan {
        a.tags.push(VlanTag {
            tpid: 0x8100,
            tci: v,
        });
    }
    a
}

/// Where a trip delivered frames, as sorted (host, port) pairs.
pub fn places(t: &Trip) -> Vec<(String, u32)> {
    let mut p: Vec<(String, u32)> = t
        .delivered
        .iter()
        .map(|d| (d.host.0.clone(), d.port))
        .collect();
    p.sort();
    p
}

/// Every VM port of `vi` but `except`, as sorted (host, port) pairs.
pub fn vi_ports_except(t: &Topology, vi: u32, except: (&str, u32)) -> Vec<(String, u32)> {
    let mut p: Vec<(String, u32)> = t
        .vm_ports
        .values()
        .filter(|p| p.vi == ViId(vi) && (p.host.0.as_str(), p.ofport) != except)
        .map(|p| (p.host.0.clone(), p.ofport))
        .collect();
    p.sort();
    p
}
