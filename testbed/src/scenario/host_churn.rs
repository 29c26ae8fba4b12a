//! `host-churn`: a running three-PM mesh gains a fourth PM and loses one of
//! the first three, through the controller's northbound API (`PUT` and
//! `DELETE /v1/hosts/{name}`), without a restart, while one untouched VM
//! pings another every 10 ms. The PM that leaves joined through the API
//! too: the configuration file's hosts are read-only through the API.
//!
//! Checked on every remaining PM with `ovs-vsctl list-ports`: after the
//! join each has a tunnel to every other PM (the newcomer included), after
//! the leave none has a tunnel to the departed PM and all the others are
//! still there. A VM on the new PM reaches the others; the ping between the
//! untouched VMs loses nothing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::harness::{check, ms, to_json, vm_ip, Harness, PingSummary};
use super::ScenarioError;
use crate::controller::ViEntry;
use crate::{MacAddr, PingPlan, PmId, VmId, VmSpec};

const VI: u32 = 1;
const GRE_KEY: u32 = 1001;
const INTERVAL: Duration = Duration::from_millis(10);
/// More than the run needs: it is interrupted once the churn is over.
const PINGS: u32 = 6000;
/// Quiet time around the churn, so the ping run sees the mesh before and
/// after it too.
const QUIET: Duration = Duration::from_millis(500);

#[derive(Debug, Serialize)]
struct Report {
    joined: String,
    left: String,
    /// From the API's PUT to a full mesh including the new PM on every PM.
    join_to_full_mesh_ms: f64,
    /// From the PUT to the new PM's switch and OVSDB session being up.
    join_to_ready_ms: f64,
    /// From the new VM's port being programmed to its first reply from a
    /// VM on an old PM.
    new_vm_first_reply_ms: f64,
    tunnels_after_join: BTreeMap<String, Vec<String>>,
    /// From the API's DELETE to no tunnel toward the departed PM anywhere.
    leave_to_mesh_ms: f64,
    tunnels_after_leave: BTreeMap<String, Vec<String>>,
    ping: PingSummary,
}

pub(super) fn run(h: &mut Harness) -> Result<Value, ScenarioError> {
    // As in production: OpenFlow over TLS and OVSDB over SSL, each PM
    // certified by the run's CA and reached over a management link.
    h.use_tls()?;
    let mut pms = h.add_pms(&["pm1", "pm2", "pm3"])?;
    let mut vi = ViEntry::new(VI, "acme", GRE_KEY);
    let vms = h.add_vms(&mut vi, &pms)?;
    // The new PM's VM is known to the operator's configuration from the
    // start, like any VM it will launch.
    vi = vi.seed(MacAddr::local(4), vm_ip(4)?.addr(), None);
    // pm3, which will leave, joins through the API: a host of the
    // configuration file is the file's to remove.
    let config = h.config(&pms[..2], vec![vi])?;
    h.start_controller(&config)?;
    let body = h.host(pms[2])?.to_json();
    h.controller()?
        .expect("PUT", "/v1/hosts/pm3", Some(&body), 201)?;
    h.wait_ready(3, 3)?;
    h.wait_full_mesh(&pms)?;
    h.wait_classified(&vms)?;
    h.check_tls(&pms)?;
    for (a, b) in [(vms[0], vms[1]), (vms[1], vms[0]), (vms[0], vms[2])] {
        let dst = h.tb.vm(b).ip().addr();
        h.wait_reachable(a, dst)?;
    }
    let placed: Vec<(VmId, Option<u16>)> = vms.iter().map(|&v| (v, None)).collect();
    h.wait_placed(VI, &placed)?;

    let dst = h.tb.vm(vms[1]).ip().addr();
    let run = h.ping_run(vms[0], PingPlan::new(dst, PINGS, INTERVAL), "during-churn")?;
    std::thread::sleep(QUIET);

    // A PM joins: built, plugged into the DC, then announced to the
    // controller, which meshes it with every other PM.
    let pm4 = h.add_pm("pm4")?;
    let vm4 = h.add_vm(VmSpec::new("vm4", pm4, VI, MacAddr::local(4), vm_ip(4)?))?;
    let body = h.host(pm4)?.to_json();
    h.note("pm4 joins through the API");
    let put = Instant::now();
    h.controller()?
        .expect("PUT", "/v1/hosts/pm4", Some(&body), 201)?;
    pms.push(pm4);
    h.wait_ready(4, 4)?;
    let join_to_ready = put.elapsed();
    let join_to_full_mesh = put.elapsed() + h.wait_full_mesh(&pms)?;
    let tunnels_after_join = tunnels(h, &pms)?;
    h.wait_classified(&[vm4])?;
    h.check_tls(&[pm4])?;
    let new_vm_first_reply = h.wait_reachable(vm4, h.tb.vm(vms[0]).ip().addr())?;

    // A PM leaves: drained of its VM, removed from the controller with
    // the registry entry its VM left there, then switched off.
    let leaving = pms.remove(2);
    let left = h.tb.pm(leaving).name().to_owned();
    h.tb.remove_vm(vms[2])?;
    h.note(format!("{left} leaves through the API"));
    let delete = Instant::now();
    h.controller()?.expect(
        "DELETE",
        &format!("/v1/hosts/{left}?cascade=true"),
        None,
        204,
    )?;
    let leave_to_mesh = delete.elapsed() + h.wait_full_mesh(&pms)?;
    h.tb.remove_pm(leaving)?;
    let tunnels_after_leave = tunnels(h, &pms)?;
    h.wait_ready(3, 3)?;
    let hosts = h.controller()?.get_json("/v1/hosts")?;
    let mut names: Vec<&str> = hosts
        .as_array()
        .map(|a| a.iter().filter_map(|h| h["name"].as_str()).collect())
        .unwrap_or_default();
    names.sort_unstable();
    check(names == ["pm1", "pm2", "pm4"], || {
        format!("after the churn the controller lists hosts {names:?}, not pm1, pm2, pm4")
    })?;
    // The newcomer still reaches the untouched VMs.
    let r = h.tb.vm(vm4).ping(dst, 3, Duration::from_millis(20))?;
    check(r.all_replied(), || {
        format!("vm4 on pm4 lost pings to {dst} after {left} left: {r:?}")
    })?;
    std::thread::sleep(QUIET);
    let trace = run.interrupt()?;
    let lost = trace.lost();
    check(lost.is_empty(), || {
        format!("traffic between untouched VMs lost {lost:?} during the churn")
    })?;
    to_json(&Report {
        joined: "pm4".into(),
        left,
        join_to_full_mesh_ms: ms(join_to_full_mesh),
        join_to_ready_ms: ms(join_to_ready),
        new_vm_first_reply_ms: ms(new_vm_first_reply),
        tunnels_after_join,
        leave_to_mesh_ms: ms(leave_to_mesh),
        tunnels_after_leave,
        ping: PingSummary::from(&trace),
    })
}

fn tunnels(h: &Harness, pms: &[PmId]) -> Result<BTreeMap<String, Vec<String>>, ScenarioError> {
    pms.iter()
        .map(|&pm| Ok((h.tb.pm(pm).name().to_owned(), h.tunnels(pm)?)))
        .collect()
}
