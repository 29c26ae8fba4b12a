//! An emulated WAN between two sites: each site is a namespace with one
//! interface, cabled by a veth pair to a relay namespace in the middle, where
//! the two cables are joined with the WAN's impairment (delay, jitter, loss,
//! rate) applied in each direction.
//!
//! ```text
//!  <p>-<name>a           <p>-<name>            <p>-<name>b
//!  [<p><name>a] ---- [<p><name>ra]  join  [<p><name>rb] ---- [<p><name>b]
//! ```
//!
//! The sites may instead be two existing nodes, the gateway nodes of two
//! data centers ([`WanSpec::between`]): each cable's site end is then
//! created in that node's namespace (and becomes a port of its `br-wan`,
//! see [`crate::gateway_node`]), and the WAN deletes only its cables and
//! the relay namespace.
//!
//! The join is one of three [`Backend`]s: the userspace [`relay`] (any
//! kernel), a Linux bridge with `netem` on both relay-side interfaces (a
//! kernel with `sch_netem`), or a plain bridge (no impairment: the same
//! path, for comparisons). [`Backend::detect`] picks netem where the kernel
//! has it and the relay otherwise.

pub mod bench;
pub mod impairment;
mod packet_stats;
pub mod relay;

use crate::error::{Error, Result};
use crate::link::{Iface, VethPair};
use crate::naming::{NodeName, Prefix};
use crate::netns::Netns;

pub use impairment::{Impairment, Model, Verdict};
pub use relay::{DirectionStats, Relay};

/// MTU of the WAN's cables: room for a 1500-byte guest frame inside GRE and
/// VLAN tags, as on the underlays.
pub const WAN_MTU: u32 = crate::underlay::DEFAULT_UNDERLAY_MTU;

/// The UDP port `iris-gateway` runs WireGuard on by default
/// (`[wan.encryption] listen_port`): all an encrypted WAN carries.
pub const WIREGUARD_PORT: u16 = 51820;

/// Name of the bridge in the relay namespace of the bridge backends.
const JOIN_BRIDGE: &str = "join0";

/// How the relay namespace joins the two cables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Backend {
    /// The userspace relay of this module.
    Relay,
    /// A Linux bridge with `tc netem` on each relay-side interface.
    Netem,
    /// A Linux bridge, no impairment.
    Bridge,
}

impl Backend {
    /// [`Backend::Netem`] when the kernel can add a netem qdisc (tried on the
    /// loopback of `netns`, then removed), else [`Backend::Relay`].
    pub fn detect(netns: &Netns) -> Self {
        let added = netns.run(&[
            "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "0ms",
        ]);
        match added {
            Ok(_) => {
                // Best effort: the namespace is the WAN's own.
                let _ = netns.run(&["tc", "qdisc", "del", "dev", "lo", "root"]);
                Self::Netem
            }
            Err(_) => Self::Relay,
        }
    }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct WanSpec {
    /// Node name of the relay namespace; the sites are `<name>a` and
    /// `<name>b`, so at most [`NodeName::MAX_LEN`] - 1 characters.
    pub name: String,
    /// The same impairment applies in each direction.
    pub impairment: Impairment,
    /// `None` detects ([`Backend::detect`]).
    pub backend: Option<Backend>,
    /// The gateway nodes to cable together, if not two namespaces of the
    /// WAN's own.
    pub sites: Option<[crate::Node; 2]>,
}

impl WanSpec {
    pub fn new(name: &str, impairment: Impairment) -> Self {
        Self {
            name: name.to_owned(),
            impairment,
            backend: None,
            sites: None,
        }
    }

    /// Cables gateway node `a` to gateway node `b` (a PM built with
    /// [`crate::PmSpec::wan_uplink`], or an [`crate::IaasGateway`]) instead
    /// of two site namespaces.
    pub fn between(mut self, a: impl Into<crate::Node>, b: impl Into<crate::Node>) -> Self {
        self.sites = Some([a.into(), b.into()]);
        self
    }
}

/// One end of a WAN: a site namespace (the WAN's own, or a gateway node's)
/// and its interface.
#[derive(Debug)]
pub struct Site {
    pub netns: Netns,
    pub iface: Iface,
}

impl Site {
    /// Pings `dst` from this site: `count` requests `interval` apart, each
    /// reply awaited up to `reply_timeout`; lost replies are not an error.
    pub fn ping(
        &self,
        dst: std::net::Ipv4Addr,
        count: u32,
        interval: std::time::Duration,
        reply_timeout: std::time::Duration,
    ) -> Result<crate::PingReport> {
        crate::ping::ping_from(&self.netns, dst, count, interval, reply_timeout)
    }
}

/// A built WAN. Its relay stops, and its links and namespaces go, when it
/// is dropped or the owning testbed tears down.
#[derive(Debug)]
pub struct Wan {
    name: NodeName,
    relay_netns: Netns,
    sites: [Site; 2],
    cables: Vec<VethPair>,
    inner: [Iface; 2],
    backend: Backend,
    impairment: Impairment,
    relay: Option<Relay>,
    /// Cut by [`Wan::cut`]: nothing joins the cables until [`Wan::repair`].
    cut: bool,
}

impl Wan {
    /// Builds the relay namespace, the site namespaces unless `ends` are
    /// given (named by `prefix`), and both cables, and joins them with
    /// `spec`'s backend.
    pub(crate) fn create(
        prefix: &Prefix,
        spec: &WanSpec,
        ends: Option<[&Netns; 2]>,
    ) -> Result<Self> {
        let name = NodeName::new(&spec.name)?;
        let site_names = [
            NodeName::new(&format!("{}a", spec.name))?,
            NodeName::new(&format!("{}b", spec.name))?,
        ];
        spec.impairment
            .validate()
            .map_err(|e| Error::Usage(format!("WAN {name}: {e}")))?;
        let relay_netns = Netns::create(prefix.netns(&name))?;
        let mut sites = Vec::new();
        let mut cables = Vec::new();
        let mut inner = Vec::new();
        for (i, (site, role)) in site_names.iter().zip(["ra", "rb"]).enumerate() {
            let netns = match ends {
                Some(ends) => ends[i].borrowed(),
                None => Netns::create(prefix.netns(site))?,
            };
            let outer = Iface::new(prefix.link(&name, &role[1..])?, netns.place());
            let relay_end = Iface::new(prefix.link(&name, role)?, relay_netns.place());
            cables.push(VethPair::create(outer.clone(), relay_end.clone(), WAN_MTU)?);
            inner.push(relay_end);
            sites.push(Site {
                netns,
                iface: outer,
            });
        }
        let backend = spec
            .backend
            .unwrap_or_else(|| Backend::detect(&relay_netns));
        let mut wan = Self {
            name,
            relay_netns,
            sites: sites
                .try_into()
                .map_err(|_| Error::Usage("a WAN has two sites".into()))?,
            cables,
            inner: inner
                .try_into()
                .map_err(|_| Error::Usage("a WAN has two cables".into()))?,
            backend: Backend::Bridge,
            impairment: spec.impairment.clone(),
            relay: None,
            cut: false,
        };
        wan.set_backend(backend)?;
        Ok(wan)
    }

    pub fn name(&self) -> &NodeName {
        &self.name
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn impairment(&self) -> &Impairment {
        &self.impairment
    }

    /// Site `a` (0) or `b` (1).
    pub fn site(&self, index: usize) -> &Site {
        &self.sites[index]
    }

    /// The relay's counters (A→B, B→A) while the relay backend runs.
    pub fn relay_stats(&self) -> Option<(DirectionStats, DirectionStats)> {
        self.relay.as_ref().map(|r| (r.a_to_b(), r.b_to_a()))
    }

    /// Applies `impairment` from now on, rejoining the cables with the
    /// current backend (a cut WAN keeps it for its repair).
    pub fn set_impairment(&mut self, impairment: Impairment) -> Result<()> {
        impairment
            .validate()
            .map_err(|e| Error::Usage(format!("WAN {}: {e}", self.name)))?;
        self.impairment = impairment;
        self.set_backend(self.backend)
    }

    /// Cuts the WAN in the middle: the relay stops (or the bridge goes) and
    /// nothing crosses, while both sites' cables stay up, as when a
    /// carrier's link fails beyond the sites' own equipment. Frames on
    /// their way are lost.
    pub fn cut(&mut self) -> Result<()> {
        self.unjoin()?;
        self.cut = true;
        Ok(())
    }

    /// Joins the cables again after [`Wan::cut`], with the same backend and
    /// impairment.
    pub fn repair(&mut self) -> Result<()> {
        self.cut = false;
        self.set_backend(self.backend)
    }

    /// Whether the WAN is cut.
    pub fn is_cut(&self) -> bool {
        self.cut
    }

    /// Rejoins the cables with `backend`, keeping the impairment: a bench
    /// compares the relay with a plain bridge on the very same cables. A
    /// cut WAN stays cut and is joined so at its repair.
    pub fn set_backend(&mut self, backend: Backend) -> Result<()> {
        self.unjoin()?;
        if self.cut {
            // Joined so at the repair.
            self.backend = backend;
            return Ok(());
        }
        let [a, b] = &self.inner;
        match backend {
            Backend::Relay => {
                self.relay = Some(Relay::start(
                    &self.relay_netns,
                    &a.name,
                    &b.name,
                    &self.impairment,
                )?);
            }
            Backend::Bridge | Backend::Netem => {
                let mtu = WAN_MTU.to_string();
                self.relay_netns.ip(&[
                    "link",
                    "add",
                    JOIN_BRIDGE,
                    "mtu",
                    &mtu,
                    "type",
                    "bridge",
                ])?;
                // Forward at once: no STP listening delay on a fresh port.
                self.relay_netns.ip(&[
                    "link",
                    "set",
                    JOIN_BRIDGE,
                    "type",
                    "bridge",
                    "forward_delay",
                    "0",
                ])?;
                for end in [a, b] {
                    end.set_master(JOIN_BRIDGE)?;
                    if backend == Backend::Netem {
                        let mut tc = self.relay_netns.command("tc");
                        tc.args(["qdisc", "add", "dev", &end.name, "root", "netem"]);
                        tc.args(netem_params(&self.impairment));
                        crate::command::run(&mut tc)?;
                    }
                }
                self.relay_netns.ip(&["link", "set", JOIN_BRIDGE, "up"])?;
            }
        }
        self.backend = backend;
        Ok(())
    }

    /// Undoes whatever joins the cables now.
    fn unjoin(&mut self) -> Result<()> {
        if let Some(mut relay) = self.relay.take() {
            relay.stop()?;
        }
        if self.backend != Backend::Relay {
            for end in &self.inner {
                if self.backend == Backend::Netem {
                    // Gone already when the bridge was never joined.
                    let _ = self
                        .relay_netns
                        .run(&["tc", "qdisc", "del", "dev", &end.name, "root"]);
                }
            }
            let _ = self.relay_netns.ip(&["link", "del", JOIN_BRIDGE]);
        }
        Ok(())
    }

    /// Stops the relay, deletes the cables and the namespaces; reports
    /// every step that failed.
    pub(crate) fn delete(&mut self) -> Vec<Error> {
        let mut failures = Vec::new();
        if let Some(mut relay) = self.relay.take() {
            failures.extend(relay.stop().err());
        }
        for cable in &mut self.cables {
            failures.extend(cable.delete().err());
        }
        // A gateway node's namespace is its node's to empty and delete.
        for netns in self.namespaces_mut().filter(|ns| ns.is_owned()) {
            failures.extend(
                netns
                    .pids()
                    .and_then(|pids| crate::process::terminate_pids(&pids, crate::STOP_GRACE))
                    .err(),
            );
            failures.extend(netns.delete().err());
        }
        failures
    }

    fn namespaces_mut(&mut self) -> impl Iterator<Item = &mut Netns> {
        let [a, b] = &mut self.sites;
        [&mut a.netns, &mut b.netns, &mut self.relay_netns].into_iter()
    }
}

/// The netem parameters for `impairment`, in tc's units.
fn netem_params(impairment: &Impairment) -> Vec<String> {
    let us = |d: std::time::Duration| format!("{}us", d.as_micros());
    let mut params = vec!["limit".into(), impairment.limit.to_string()];
    params.extend(["delay".into(), us(impairment.delay)]);
    if !impairment.jitter.is_zero() {
        params.push(us(impairment.jitter));
    }
    if impairment.loss > 0.0 {
        params.extend(["loss".into(), format!("{}%", impairment.loss * 100.0)]);
    }
    if let Some(rate) = impairment.rate {
        params.extend(["rate".into(), format!("{rate}bit")]);
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn netem_gets_every_setting_in_tc_units() {
        let params = netem_params(&Impairment {
            delay: Duration::from_millis(50),
            jitter: Duration::from_micros(1500),
            loss: 0.01,
            rate: Some(100_000_000),
            limit: 500,
            seed: 1,
        });
        assert_eq!(
            params.join(" "),
            "limit 500 delay 50000us 1500us loss 1% rate 100000000bit"
        );
        assert_eq!(
            netem_params(&Impairment::default()).join(" "),
            "limit 1000 delay 0us"
        );
    }
}
