#![allow(dead_code)] // Each test binary uses part of the shared topology.

//! The topology most integration tests start from: one underlay, two PMs.

use std::net::Ipv4Addr;
use std::time::Duration;

use iris_testbed::{
    FailMode, Ipv4Cidr, MacAddr, PmId, PmSpec, Testbed, UnderlaySpec, VmId, VmSpec,
};

/// The VI (and GRE key) the tests' VMs belong to.
pub const VI: u32 = 7;

pub struct TwoPms {
    pub tb: Testbed,
    pub pm1: PmId,
    pub pm2: PmId,
}

/// A testbed named `label` with two PMs (`fail_mode`) on one underlay.
/// Panics with the library's advice when the host cannot run testbeds: these
/// tests need root and real OVS, and must fail loudly rather than skip.
pub fn two_pms(label: &str, fail_mode: FailMode) -> TwoPms {
    let mut tb = Testbed::new(label).unwrap_or_else(|e| panic!("cannot build a testbed: {e}"));
    let dc = tb
        .add_underlay(UnderlaySpec::new("dc", "192.168.50.0/24".parse().unwrap()))
        .unwrap();
    let pm1 = tb
        .add_pm(PmSpec::new("pm1", dc).fail_mode(fail_mode))
        .unwrap();
    let pm2 = tb
        .add_pm(PmSpec::new("pm2", dc).fail_mode(fail_mode))
        .unwrap();
    TwoPms { tb, pm1, pm2 }
}

impl TwoPms {
    /// Adds GRE ports `gre1`/`gre2` between the PMs' `br-int`s; returns their
    /// OpenFlow port numbers (on pm1, on pm2). The PMs then ping each other
    /// on the underlay, which must work and which lets OVS resolve the tunnel
    /// endpoints before the first VM frame needs them.
    pub fn connect_with_gre(&self) -> (u32, u32) {
        let (pm1, pm2) = (self.tb.pm(self.pm1), self.tb.pm(self.pm2));
        let (ip1, ip2) = (pm1.underlay_addr().addr(), pm2.underlay_addr().addr());
        let on_pm1 = pm1.add_gre_port("gre1", ip2).unwrap();
        let on_pm2 = pm2.add_gre_port("gre2", ip1).unwrap();
        for (from, to) in [(pm1, ip2), (pm2, ip1)] {
            let report = from
                .ping_underlay(to, 1, Duration::from_millis(100))
                .unwrap();
            assert!(
                report.all_replied(),
                "underlay {} -> {to}: {report:?}",
                from.name()
            );
        }
        (on_pm1, on_pm2)
    }

    /// Adds VM `name` (VI [`VI`], MAC `02:00:00:00:00:<n>`, IP `10.0.0.<n>/24`) on `pm`.
    pub fn vm(&mut self, name: &str, n: u8, pm: PmId) -> VmId {
        let spec = VmSpec::new(name, pm, VI, MacAddr::local(n.into()), vm_ip(n));
        self.tb.add_vm(spec).unwrap()
    }
}

impl TwoPms {
    /// Adds PM `name` on the same underlay with a management link into the
    /// root namespace: `<net>.1` on the root end, `<net>.2` in the PM.
    /// `net` is a /30 of 198.18.0.0/15, the range set aside for tests.
    pub fn add_managed_pm(&mut self, name: &str, net: &str) -> PmId {
        let net: Ipv4Cidr = net.parse().unwrap();
        let dc = self.tb.pm(self.pm1).underlay();
        let spec = PmSpec::new(name, dc).management(net.host(1).unwrap(), net.host(2).unwrap());
        self.tb.add_pm(spec).unwrap()
    }
}

pub fn vm_ip(n: u8) -> Ipv4Cidr {
    Ipv4Cidr::new(Ipv4Addr::new(10, 0, 0, n), 24).unwrap()
}
