//! Questions the compiler and the PacketIn logic ask of a [`Topology`]: which
//! ports a VI has on a host, which hosts take part in a VI, which tunnel leads
//! where.

use crate::model::{Host, HostName, HostRole, MacKey, Topology, Vi, ViId, VmPort};
use crate::registry::Sighting;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

impl Topology {
    /// Hosts named `names` in a full tunnel mesh, for tests, benchmarks and
    /// the simulator: on every host the tunnel to the i-th host is ofport
    /// `first_tunnel + i`; host i has underlay address 10.255.x.y and
    /// datapath id i + 1; the hosts in `gateways` have the gateway role.
    pub fn full_mesh(names: &[&str], gateways: &[&str], first_tunnel: u32) -> Self {
        let mut t = Self::default();
        for (i, n) in names.iter().enumerate() {
            let name = HostName((*n).to_owned());
            let [_, _, x, y] = u32::try_from(i + 1).unwrap_or(u32::MAX).to_be_bytes();
            let role = if gateways.contains(n) {
                HostRole::Gateway
            } else {
                HostRole::Compute
            };
            let host = Host {
                name: name.clone(),
                underlay_ip: Ipv4Addr::new(10, 255, x, y),
                role,
                ovsdb_remote: format!("unix:/run/iris/{n}/db.sock"),
                datapath_id: i as u64 + 1,
            };
            t.hosts.insert(name.clone(), host);
            for (j, m) in names.iter().enumerate().filter(|(j, _)| *j != i) {
                let port = first_tunnel + u32::try_from(j).unwrap_or(u32::MAX);
                t.tunnels
                    .insert((name.clone(), HostName((*m).to_owned())), port);
            }
        }
        t
    }

    /// Adds (or replaces) a VM port of `vi` at `ofport` on `host`.
    pub fn add_vm_port(&mut self, host: &str, ofport: u32, vi: ViId) {
        let h = HostName(host.to_owned());
        let port = VmPort {
            host: h.clone(),
            name: format!("{host}-p{ofport}"),
            ofport,
            vi,
            attached_mac: None,
        };
        self.vm_ports.insert((h, ofport), port);
    }

    /// Adds (or replaces) a VI.
    pub fn add_vi(&mut self, id: ViId, gre_key: u32, gateways: &[&str]) {
        let vi = Vi {
            id,
            name: format!("operator-{}", id.0),
            gre_key,
            gateways: gateways.iter().map(|g| HostName((*g).to_owned())).collect(),
        };
        self.vis.insert(id, vi);
    }

    /// The VM port at `ofport` on `host`'s bridge, if it is one.
    pub fn vm_port(&self, host: &HostName, ofport: u32) -> Option<&VmPort> {
        self.vm_ports.get(&(host.clone(), ofport))
    }

    /// `port` as a place frames are seen at: behind the gateway when its
    /// host is one of its VI's gateways.
    pub fn sighting<'a>(&self, port: &'a VmPort) -> Sighting<'a> {
        Sighting {
            port,
            behind_gateway: self.is_gateway_of(&port.host, port.vi),
        }
    }

    /// Every VM port on `host`, in ofport order.
    pub fn vm_ports_on<'a>(&'a self, host: &HostName) -> impl Iterator<Item = &'a VmPort> + 'a {
        self.vm_ports
            .range((host.clone(), 0)..=(host.clone(), u32::MAX))
            .map(|(_, p)| p)
    }

    /// The ofport on `from`'s bridge of the tunnel toward `to`.
    pub fn tunnel_port(&self, from: &HostName, to: &HostName) -> Option<u32> {
        self.tunnels.get(&(from.clone(), to.clone())).copied()
    }

    /// The peer a tunnel port on `host` leads to.
    pub fn tunnel_peer(&self, host: &HostName, ofport: u32) -> Option<&HostName> {
        self.tunnels
            .range((host.clone(), HostName(String::new()))..)
            .take_while(|((h, _), _)| h == host)
            .find(|(_, p)| **p == ofport)
            .map(|((_, peer), _)| peer)
    }

    /// The VI whose traffic carries GRE key `key`.
    pub fn vi_by_key(&self, key: u32) -> Option<&Vi> {
        self.vis.values().find(|v| v.gre_key == key)
    }

    /// For every VI, the hosts that take part in it: those with a VM port in
    /// it (or one that left it a moment ago) and its gateways (which must
    /// see its broadcasts to reach the operator's data center). One pass
    /// over the ports.
    pub fn vi_members(&self) -> BTreeMap<ViId, BTreeSet<&HostName>> {
        let mut members: BTreeMap<ViId, BTreeSet<&HostName>> = BTreeMap::new();
        for p in self.vm_ports.values() {
            members.entry(p.vi).or_default().insert(&p.host);
        }
        for ((host, _), d) in &self.departed {
            members.entry(d.vi).or_default().insert(host);
        }
        for (host, keys) in &self.moved_from {
            for k in keys {
                members.entry(k.vi).or_default().insert(host);
            }
        }
        for vi in self.vis.values() {
            let m = members.entry(vi.id).or_default();
            m.extend(vi.gateways.iter());
        }
        members
    }

    /// Whether `key` was on VM port `ofport` of `host` when the port left
    /// a moment ago.
    pub fn departed_from(&self, host: &HostName, ofport: u32, key: &MacKey) -> bool {
        // Asked for every MAC whose port is not on its bridge, while
        // compiling: no key is built when nothing departed.
        !self.departed.is_empty()
            && self
                .departed
                .get(&(host.clone(), ofport))
                .is_some_and(|d| d.macs.contains(key))
    }

    /// Whether `key` left `host` a moment ago.
    pub fn moved_from(&self, host: &HostName, key: &MacKey) -> bool {
        self.moved_from
            .get(host)
            .is_some_and(|keys| keys.contains(key))
    }

    /// Whether `host` is one of `vi`'s gateways.
    pub fn is_gateway_of(&self, host: &HostName, vi: ViId) -> bool {
        self.vis
            .get(&vi)
            .is_some_and(|v| v.gateways.iter().any(|g| g == host))
    }
}

#[cfg(test)]
mod tests {
    use crate::fixtures::{host, tunnel_ofport, world};
    use crate::model::ViId;

    #[test]
    fn members_are_port_owners_and_gateways() {
        let t = world();
        let m = t.vi_members();
        let names = |vi| {
            m[&ViId(vi)]
                .iter()
                .map(|h| h.0.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(1), ["a", "b", "c", "gw"]);
        assert_eq!(names(2), ["a", "b"]);
        assert!(t.is_gateway_of(&host("gw"), ViId(1)));
        assert!(!t.is_gateway_of(&host("a"), ViId(1)));
        assert!(!t.is_gateway_of(&host("gw"), ViId(2)));
    }

    #[test]
    fn ports_and_tunnels_are_found_per_host() {
        let t = world();
        let on_a: Vec<u32> = t.vm_ports_on(&host("a")).map(|p| p.ofport).collect();
        assert_eq!(on_a, [1, 2]);
        assert_eq!(t.vm_ports_on(&host("zz")).count(), 0);
        let to_gw = tunnel_ofport("gw");
        assert_eq!(t.tunnel_port(&host("a"), &host("gw")), Some(to_gw));
        assert_eq!(t.tunnel_peer(&host("a"), to_gw), Some(&host("gw")));
        assert_eq!(t.tunnel_peer(&host("a"), tunnel_ofport("a")), None);
        assert_eq!(
            t.tunnel_peer(&host("c"), tunnel_ofport("b")),
            Some(&host("b"))
        );
        assert_eq!(t.vi_by_key(1002).map(|v| v.id), Some(ViId(2)));
        assert_eq!(t.vm_port(&host("b"), 2).map(|p| p.vi), Some(ViId(2)));
    }
}
