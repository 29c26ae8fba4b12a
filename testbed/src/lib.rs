//! The Iris emulated inter-cloud testbed.
//!
//! A [`Testbed`] builds data centers out of real parts on one Linux host:
//! network namespaces, veth pairs, Linux bridges as underlay switches, and one
//! private Open vSwitch instance (`ovsdb-server` + `ovs-vswitchd`, userspace
//! datapath) per emulated physical machine. VMs are namespaces plugged into a
//! PM's `br-int`. Everything carries the testbed's [`Prefix`], and everything is
//! torn down, in order, when the testbed is dropped, also while a failing test
//! unwinds. What a killed process could not tear down, [`cleanup_stale`]
//! removes.
//!
//! ```no_run
//! use std::time::Duration;
//! use iris_testbed::{FailMode, MacAddr, PmSpec, Testbed, UnderlaySpec, VmSpec};
//!
//! # fn main() -> Result<(), iris_testbed::Error> {
//! let mut tb = Testbed::new("example")?;
//! let dc = tb.add_underlay(UnderlaySpec::new("dc1", "192.168.50.0/24".parse()?))?;
//! let pm1 = tb.add_pm(PmSpec::new("pm1", dc).fail_mode(FailMode::Standalone))?;
//! let vm1 = tb.add_vm(VmSpec::new("vm1", pm1, 7, MacAddr::local(1), "10.0.0.1/24".parse()?))?;
//! let flows = tb.pm(pm1).ofctl(&["dump-flows", "br-int"])?;
//! let report = tb.vm(vm1).ping("10.0.0.1".parse().unwrap(), 3, Duration::from_millis(200))?;
//! # let _ = (flows, report);
//! # Ok(())
//! # }
//! ```
//!
//! [`interop`] runs the `ofp` codec in a live OpenFlow session with one
//! such OVS instance; it is both a test and the demo.
//!
//! All of it needs root; see `docs/testbed.md` for what was measured about
//! running OVS this way.

mod addr;
pub mod api_client;
pub mod bench;
mod command;
pub mod controller;
pub mod dataplane;
mod error;
pub mod etcd;
pub mod experiment;
pub mod flow_dump;
pub mod frames;
pub mod gateway_node;
pub mod guest;
pub mod host;
pub mod iaas;
pub mod interop;
mod link;
pub mod migration_experiment;
mod naming;
mod netns;
pub mod ovn;
mod ovs;
mod ping;
pub mod pki;
pub mod plot;
mod pm;
pub mod ports;
mod process;
mod readiness;
pub mod relay;
pub mod scenario;
pub mod ssh_login;
pub mod stale;
mod state;
mod testbed;
mod underlay;
mod vm;
pub mod wan;

pub use addr::{Ipv4Cidr, MacAddr};
pub use error::{Error, Result, INSTALL_ADVICE};
pub use gateway_node::{IaasGateway, IaasGatewaySpec, GATEWAY_BRIDGE, WAN_BRIDGE};
pub use iaas::{ComputeNode, ComputeSpec};
pub use link::{Iface, Place, VethPair};
pub use naming::{NodeName, Prefix, MAX_IFNAME_LEN};
pub use netns::{list as list_netns, Netns};
pub use ovs::{OvsInstance, CLIENT_TIMEOUT_SECS, VSWITCH_SCHEMA};
pub use ping::{
    PingPlan, PingReply, PingReport, PingRun, PingTrace, Rtt, WallClock, PING_REPLY_TIMEOUT,
};
pub use pm::{
    FailMode, ManagementSpec, Pm, PmSpec, UnderlayPath, CONTROLLER_SOCKET_LINK, INTEGRATION_BRIDGE,
    UNDERLAY_BRIDGE,
};
pub use process::{Process, STOP_GRACE};
pub use stale::{cleanup_prefix, cleanup_stale, CleanupReport};
pub use state::{Owner, StateDir, DEFAULT_STATE_ROOT};
pub use testbed::{
    ComputeId, Config, GatewayId, Inventory, Node, PmId, ProcessId, Testbed, UnderlayId, VmId,
    WanId,
};
pub use underlay::{Underlay, UnderlaySpec, DEFAULT_UNDERLAY_MTU, UNDERLAY_SWITCH};
pub use vm::{Host, VlanSpec, Vm, VmSpec, MAX_VLANS, VM_MTU};
