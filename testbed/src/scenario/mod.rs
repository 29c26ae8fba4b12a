//! End-to-end scenarios: the real `iris-controller` process against
//! testbed PMs, each proving one promise of Iris and measuring it.
//!
//! Every scenario runs on a fresh [`Harness`] (a testbed with one DC
//! underlay, a controller configuration written for it, the controller
//! process), checks what it promises, and returns its measurements as JSON.
//! [`run`] wraps one scenario into an [`Outcome`]: passed or not, why not,
//! where the logs were kept, and the testbed torn down in every case.
//! `iris-testbed scenario NAME` prints that outcome; `docs/scenarios.md`
//! says what each scenario proves.

pub mod broker;
pub mod controller_failover;
pub mod controller_restart;
pub mod etcd_member_loss;
mod harness;
mod host_churn;
pub mod intercloud;
pub mod isolation;
pub mod libvirt_node;
pub mod mesh;
pub mod migrate;
pub mod migrate_intercloud;
mod node_isolation;
pub mod qemu_migrate;
pub mod qemu_migrate_intercloud;
pub mod service;
pub mod tenants_intercloud;
mod vlan;
pub mod wan_cut;

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

/// The benchmarks boot the guests of the scenarios.
pub use harness::seed_guest;
pub use harness::{
    check, flows_kept, ms, round3, FlowsByPm, Harness, PingSummary, ScenarioError, CONVERGE,
};

/// One scenario: its name on the command line, what it proves, and its body.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub name: &'static str,
    /// One line for `--help` and the docs.
    pub proves: &'static str,
    body: fn(&mut Harness) -> Result<Value, ScenarioError>,
}

/// Every scenario, in the order `scenario all` runs them.
pub const ALL: &[Scenario] = &[
    Scenario {
        name: "mesh",
        proves: "VMs on three PMs reach each other over the GRE mesh; known ARP is answered \
                 in the datapath without a PacketIn",
        body: mesh::run,
    },
    Scenario {
        name: "isolation",
        proves: "two VIs with the same IPs, VLANs and MACs both work and never see a frame of \
                 the other",
        body: isolation::run,
    },
    Scenario {
        name: "vlan",
        proves: "two VLANs of one VI reusing one subnet stay apart, with their 802.1Q tags \
                 intact on the wire",
        body: vlan::run,
    },
    Scenario {
        name: "migrate",
        proves: "a VM moved to another PM is reached again at once after its first \
                 announcement, a RARP as QEMU sends or a GARP as the guest sends; \
                 RARP-to-barrier time and ping gap measured",
        body: migrate::run,
    },
    Scenario {
        name: "controller-restart",
        proves: "kill -9 of the controller loses no ping; its restart deletes and re-adds no \
                 flow and finds the registry intact",
        body: controller_restart::run,
    },
    Scenario {
        name: "host-churn",
        proves: "a PM joins and another leaves a running mesh: tunnels follow on every PM and \
                 traffic between untouched VMs loses nothing",
        body: host_churn::run,
    },
    Scenario {
        name: "qemu-migrate",
        proves: "a real QEMU guest live-migrated between two PMs by QEMU itself is followed \
                 on QEMU's own RARP; a migration whose destination dies leaves it on the \
                 source; downtime and ping gap measured",
        body: qemu_migrate::run,
    },
    Scenario {
        name: "intercloud",
        proves: "an IaaS guest and a guest on a HaaS L1 node reach each other through both \
                 gateways across the WAN at 0, 10 and 100 ms; the IaaS guest lives behind the \
                 gateway in the registry and, warm, no ARP crosses the WAN",
        body: |h| intercloud::run(h).and_then(|r| harness::to_json(&r)),
    },
    Scenario {
        name: "intercloud-encrypted",
        proves: "intercloud with the gateways' GRE inside WireGuard (keys made at run time): \
                 the guests reach each other at 0, 10 and 100 ms and a 1500-byte DF packet \
                 crosses; the WAN cable carries only WireGuard's UDP (and ARP), no GRE",
        body: intercloud::run_encrypted,
    },
    Scenario {
        name: "tenants-intercloud",
        proves: "two operators, each with its own IaaS DC, gateway and WAN, and the same VLAN, \
                 IPs and MACs, each reach their own HaaS guest across the WAN and only theirs; \
                 ARP floods stay inside each VI on both sides; the registry keeps the MACs \
                 apart by VI",
        body: tenants_intercloud::run,
    },
    Scenario {
        name: "migrate-intercloud",
        proves: "a guest migrated from the IaaS DC to a HaaS PM and back is reached again from \
                 both data centers after its RARP, the registry following it onto the PM and \
                 back behind the gateway; moved while the controller is down, the gateway's \
                 report waits and the registry ends right; RARP-to-barrier and ping gaps \
                 measured",
        body: migrate_intercloud::run,
    },
    Scenario {
        name: "broker",
        proves: "an operator asks the broker (iris-api) for 12 L1 nodes in one call; the netns \
                 driver makes them on three PMs within their capacity, each becomes active and \
                 answers ping on its VI across the mesh; from a node nothing of the provider's \
                 network answers (underlay, management, OVSDB, OpenFlow, the APIs) while the \
                 operator's peer node does; scaling in leaves no namespace, veth or OVS port; \
                 request-to-active and request-to-pingable measured",
        body: broker::run,
    },
    Scenario {
        name: "wan-cut",
        proves: "a WAN cut under pings both ways takes BFD down at both gateways and lets \
                 nothing across; after the repair BFD and the pings come back by themselves; \
                 recovery time measured",
        body: wan_cut::run,
    },
    Scenario {
        name: "libvirt-node",
        proves: "an operator's node request to iris-api on a PM registered with the libvirt \
                 driver makes a QEMU L1 node through that PM's own libvirtd, its port in the \
                 broker's VI, answering ping and SSH from the VI within the boot time; a failed \
                 request and a delete leave no domain, disk, port or tap; request-to-active and \
                 request-to-ping times measured",
        body: libvirt_node::run,
    },
    Scenario {
        name: "etcd-member-loss",
        proves: "on the etcd store, losing one of three members changes nothing; losing two \
                 refuses API writes with a 503 problem+json while reads answer and no ping is \
                 lost; restored, writes work and etcd holds every acknowledged write and no \
                 refused one",
        body: etcd_member_loss::run,
    },
    Scenario {
        name: "controller-failover",
        proves: "three controller replicas on a three-member etcd cluster: kill -9 of the \
                 leader under a 10 ms ping run loses no ping, a standby is MASTER on every \
                 switch within 3 s and sends no FLOW_MOD or GROUP_MOD to the switches that were \
                 right, a VM migrated right after is followed by the new leader, and the new \
                 leader killed in turn is replaced by the last replica the same way",
        body: controller_failover::run,
    },
    Scenario {
        name: "service",
        proves: "two operators with identical addressing each create a VI and ask for L1 nodes \
                 with irisctl; an L2 VM on an L1 node and the operator's IaaS guest ping across \
                 the WAN, never seeing the other operator's frames; a guest live-migrates from \
                 the IaaS DC into an L1 node and is reached again after its RARP",
        body: service::run,
    },
    Scenario {
        name: "qemu-migrate-intercloud",
        proves: "real QEMU guests migrated by QEMU from the IaaS DC into a HaaS PM and back at \
                 0, 10 and 50 ms of WAN delay, the stream across the WAN, are followed on \
                 QEMU's own RARP; a migration whose destination dies or whose WAN is cut \
                 leaves the guest on the source; downtime and ping gap measured",
        body: qemu_migrate_intercloud::run,
    },
];

/// Scenarios run by name only, not by `scenario all` (nor so by `make
/// test`), each with the reason it is kept out; none at present.
pub const BY_NAME_ONLY: &[Scenario] = &[];

/// The scenario called `name`.
pub fn find(name: &str) -> Option<&'static Scenario> {
    ALL.iter().chain(BY_NAME_ONLY).find(|s| s.name == name)
}

/// What every scenario needs from its caller.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `iris-controller` binary to run.
    pub controller: PathBuf,
    /// The `iris-gateway` binary the inter-cloud scenarios run; by default
    /// the one beside the controller's.
    pub gateway: Option<PathBuf>,
    pub testbed: crate::Config,
}

/// How one scenario went: what `iris-testbed scenario` prints as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub scenario: &'static str,
    pub passed: bool,
    /// Wall time, setup and teardown included.
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measurements: Option<Value>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Where the controller's and the daemons' logs were kept after a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logs: Option<PathBuf>,
}

/// Runs `scenario` on a fresh testbed and tears it down, whatever happens.
pub fn run(scenario: &Scenario, options: &Options) -> Outcome {
    run_measured(scenario.name, options, scenario.body).0
}

/// Runs `body`, one scenario's `measure`, on a fresh testbed labelled
/// `name` and tears it down, whatever happens. Besides the [`Outcome`]
/// (with the report as JSON) it returns the typed report, for callers
/// that print it for a human rather than as JSON.
pub fn run_measured<R: Serialize>(
    name: &'static str,
    options: &Options,
    body: impl FnOnce(&mut Harness) -> Result<R, ScenarioError>,
) -> (Outcome, Option<R>) {
    let start = Instant::now();
    let mut outcome = Outcome {
        scenario: name,
        passed: false,
        seconds: 0.0,
        measurements: None,
        reason: None,
        logs: None,
    };
    let mut harness = match Harness::new(name, options) {
        Ok(h) => h,
        Err(e) => {
            outcome.reason = Some(e.to_string());
            outcome.seconds = start.elapsed().as_secs_f64();
            return (outcome, None);
        }
    };
    let mut report = None;
    match body(&mut harness).and_then(|r| Ok((harness::to_json(&r)?, r))) {
        Ok((measurements, r)) => {
            outcome.passed = true;
            outcome.measurements = Some(measurements);
            report = Some(r);
        }
        Err(e) => {
            outcome.reason = Some(e.to_string());
            outcome.logs = harness.keep_logs();
        }
    }
    if let Err(e) = harness.teardown() {
        outcome.passed = false;
        report = None;
        let reason = format!("teardown failed: {e}");
        outcome.reason = Some(match outcome.reason.take() {
            Some(first) => format!("{first}; {reason}"),
            None => reason,
        });
    }
    outcome.seconds = (start.elapsed().as_secs_f64() * 10.0).round() / 10.0;
    (outcome, report)
}
