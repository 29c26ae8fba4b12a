//! `iris-testbed demo`: what `make demo` runs. The HaaS service (the
//! `service` scenario): the broker, `irisctl` as operators type it, two
//! operators' data centers joined to the HaaS data center by the gateways,
//! told step by step for a human. `--controller-only`: the emulated
//! inter-cloud with the real `iris-controller` process alone, as before
//! the broker.
//!
//! The demo measures nothing of its own: each step is one scenario of
//! `iris_testbed::scenario` (the same code `iris-testbed scenario` and
//! `make test` run) on a fresh testbed, and the transcript is printed from
//! the scenario's typed report. Progress of the scenarios goes to stderr;
//! the transcript and the summary table go to stdout.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;

use iris_testbed::scenario::{
    controller_restart, intercloud, isolation, mesh, migrate, run_measured, service, Options,
    Outcome, PingSummary,
};

/// One row of the closing table.
struct Row {
    step: &'static str,
    outcome: Outcome,
    /// The step's headline number, when it passed.
    headline: String,
}

/// Lines of one command's output shown in the transcript.
const OUTPUT_LINES: usize = 14;

/// Runs the demo of the service; the exit code is non-zero when it failed.
pub fn run_service(options: &Options) -> ExitCode {
    println!(
        "Iris demo: the HaaS service on this machine, end to end\n\
         {}\n\
         A HaaS data center (four PMs, one Open vSwitch each, and a gateway node), two\n\
         operators' IaaS data centers with the very same addressing, each with its\n\
         gateway node and a WAN to the HaaS one; iris-controller, the broker (iris-api)\n\
         and one iris-gateway per data center. Everything the operators do goes\n\
         through irisctl, shown as typed. Every number below was measured during this run.",
        options.controller.display()
    );
    let (outcome, report) = run_measured("service", options, service::measure);
    if let Some(r) = &report {
        print_service(r);
    }
    println!();
    match &outcome.reason {
        None => {
            println!(
                "The demo passed in {:.1} s; every namespace, switch and process is gone.",
                outcome.seconds
            );
            ExitCode::SUCCESS
        }
        Some(why) => {
            println!("The demo FAILED after {:.1} s: {why}", outcome.seconds);
            if let Some(logs) = &outcome.logs {
                println!("logs kept in {}", logs.display());
            }
            ExitCode::FAILURE
        }
    }
}

fn print_typed(t: &service::Typed) {
    println!("   {}$ {}", t.who, t.command);
    let lines: Vec<&str> = t.output.lines().collect();
    if lines.is_empty() {
        println!("     (done, exit code 0)");
    }
    for l in lines.iter().take(OUTPUT_LINES) {
        println!("     {l}");
    }
    if lines.len() > OUTPUT_LINES {
        println!("     ... ({} more lines)", lines.len() - OUTPUT_LINES);
    }
}

fn print_service(r: &service::Report) {
    heading(
        "1",
        "the data centers, the controller and the broker come up",
    );
    println!(
        "   HaaS DC pm1-pm4 + gateway node gwh; IaaS DCs acme and globex, each a LAN, a \
         compute node\n   and a gateway node; iris-controller and iris-api running: {:.1} s",
        r.setup_s
    );
    heading(
        "2",
        "the provider registers its PMs and the two operators (irisctl, admin token)",
    );
    for t in r.transcript.iter().filter(|t| t.step == 2) {
        print_typed(t);
    }
    for op in &r.operators {
        heading(
            "3",
            &format!(
                "operator {} creates its VI and asks for two L1 nodes",
                op.operator
            ),
        );
        for t in r
            .transcript
            .iter()
            .filter(|t| t.step == 3 && t.who == op.operator)
        {
            print_typed(t);
        }
        println!(
            "   VI {} got tunnel key {} in {:.0} ms; 2 nodes active in {:.0} ms: {}",
            op.vi,
            op.tunnel_key,
            op.vi_create_ms,
            op.nodes_request_ms,
            op.nodes
                .iter()
                .map(|(id, pm, ip)| format!("{id} on {pm} ({ip})"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    heading("4", "the gateways carry each VI across its operator's WAN");
    println!(
        "   iris-gateway reads the VIs it carries from its configuration, so each is written \
         from\n   what the broker returned, and the HaaS gateway starts once both VIs exist \
         (docs/testbed.md)"
    );
    for op in &r.operators {
        println!(
            "   {}: its gateway configured with the broker's tunnel key {} and the HaaS \
             gateway's WAN address",
            op.operator, op.tunnel_key
        );
    }
    println!(
        "   HaaS gateway started with both VIs, each classified into its VI by the controller: \
         {:.0} ms",
        r.gateways_s * 1000.0
    );
    heading(
        "5",
        "each operator's L2 VM on an L1 node and its IaaS guest ping across the WAN, never the \
         other operator",
    );
    for op in &r.operators {
        println!(
            "   {}: L2 VM plugged into cloudbr0 of node {} on VLAN 100; first reply from the IaaS \
             guest after {:.0} ms",
            op.operator, op.nodes[0].0, op.first_reply_ms
        );
        for (label, p) in &op.pings {
            println!("     {label}: {}", pings(p));
        }
    }
    println!("   both at once, marked, captured on every guest interface:");
    for s in &r.seen {
        println!(
            "     {} {}: {} frames of its own operator, {} of the other",
            s.operator, s.what, s.own, s.foreign
        );
    }
    for (op, gre, keys) in &r.wan_cables {
        println!("     {op}'s WAN cable: {gre} GRE packets, keys {keys:?}");
    }
    let m = &r.migration;
    heading(
        "6",
        &format!(
            "acme's guest {} live-migrates from its IaaS DC into node {} on {}, then QEMU's RARPs",
            m.guest, m.to_node, m.to_pm
        ),
    );
    println!(
        "   the guest is paused, its NIC re-plugged into the node's cloudbr0 on VLAN 100 \
         (the pings lost\n   before the RARP are that pause), then it sends QEMU's RARP rounds"
    );
    for (who, first, lost) in &m.watchers {
        let first = first.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1} ms"));
        println!(
            "   {who}: first reply {first} after the first RARP, pings lost after it: {lost}; {}",
            m.pings.get(who).map(pings).unwrap_or_default()
        );
    }
    println!("   the controller's registry: {}", m.location);
    heading("7", "the operators give their nodes back");
    for t in r.transcript.iter().filter(|t| t.step == 7) {
        print_typed(t);
    }
    println!(
        "   both VIs and their 4 nodes deleted in {:.0} ms; no node namespace is left on any PM",
        r.scale_in_ms
    );

    println!("\n== Report");
    println!(
        "   setup (data centers, controller, broker)   {:7.1} s",
        r.setup_s
    );
    for op in &r.operators {
        println!(
            "   {:<7} VI create {:6.0} ms, 2 nodes {:6.0} ms, first ping across the WAN {:5.0} ms",
            op.operator, op.vi_create_ms, op.nodes_request_ms, op.first_reply_ms
        );
    }
    println!(
        "   gateways up                                 {:7.0} ms",
        r.gateways_s * 1000.0
    );
    let foreign: usize = r.seen.iter().map(|s| s.foreign).sum();
    println!(
        "   isolation: {} interfaces and 2 WAN cables captured, foreign frames {foreign}",
        r.seen.len()
    );
    for (who, first, lost) in &m.watchers {
        println!(
            "   migration, {who}: first reply {} ms after the RARP, lost after it: {lost}",
            first.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1}"))
        );
    }
    println!(
        "   scale-in, both VIs with their nodes         {:7.0} ms",
        r.scale_in_ms
    );
}

/// Runs the controller-only demo; the exit code is non-zero when any step
/// failed.
pub fn run(options: &Options) -> ExitCode {
    println!(
        "Iris demo: an emulated inter-cloud on this machine, driven by the real controller\n\
         {}\n\
         Each step builds a fresh testbed (one Open vSwitch per emulated PM, VMs as\n\
         network namespaces), checks what Iris promises, measures it and tears\n\
         everything down. Every number below was measured during this run.",
        options.controller.display()
    );
    let mut rows = Vec::new();

    heading("1", "the emulated inter-cloud comes up");
    let (outcome, report) = run_measured("mesh", options, mesh::measure);
    let headline = report.as_ref().map(print_mesh);
    rows.push(finish("1+2 mesh and ARP", outcome, headline));

    heading(
        "3",
        "two operators with identical IPs and MACs stay isolated",
    );
    let (outcome, report) = run_measured("isolation", options, isolation::measure);
    let headline = report.as_ref().map(print_isolation);
    rows.push(finish("3 isolation", outcome, headline));

    heading("4", "a live migration announced by RARP, then by GARP");
    let (outcome, report) = run_measured("migrate", options, migrate::measure);
    let headline = report.as_ref().map(print_migrate);
    rows.push(finish("4 migration", outcome, headline));

    heading("5", "kill -9 of the controller, then a restart");
    let (outcome, report) =
        run_measured("controller-restart", options, controller_restart::measure);
    let headline = report.as_ref().map(print_restart);
    rows.push(finish("5 controller restart", outcome, headline));

    heading(
        "6",
        "an operator's own data center joins over a WAN, through two iris-gateways",
    );
    let (outcome, report) = run_measured("intercloud", options, intercloud::run);
    let headline = report.as_ref().map(print_intercloud);
    rows.push(finish("6 inter-cloud", outcome, headline));

    print_summary(&rows);
    if rows.iter().all(|r| r.outcome.passed) {
        println!("\nEvery step passed; every testbed is gone.");
        ExitCode::SUCCESS
    } else {
        println!("\nThe demo FAILED (see the steps above); every testbed is gone.");
        ExitCode::FAILURE
    }
}

fn heading(step: &str, what: &str) {
    println!("\n== Step {step}: {what}");
}

/// Prints how the step ended and keeps its row for the table.
fn finish(step: &'static str, outcome: Outcome, headline: Option<String>) -> Row {
    match &outcome.reason {
        None => println!("   passed in {:.1} s", outcome.seconds),
        Some(why) => {
            println!("   FAILED after {:.1} s: {why}", outcome.seconds);
            if let Some(logs) = &outcome.logs {
                println!("   logs kept in {}", logs.display());
            }
        }
    }
    Row {
        step,
        headline: headline.filter(|_| outcome.passed).unwrap_or_default(),
        outcome,
    }
}

/// `received/sent`, lost sequence numbers when there are any, and RTT.
fn pings(p: &PingSummary) -> String {
    let mut s = format!(
        "{}/{} replies, one every {} ms",
        p.received, p.sent, p.interval_ms
    );
    if !p.lost.is_empty() {
        let _ = write!(s, ", lost {:?}", p.lost);
    }
    if let (Some(avg), Some(max)) = (p.rtt_avg_ms, p.rtt_max_ms) {
        let _ = write!(s, ", rtt avg {avg:.3} ms max {max:.3} ms");
    }
    s
}

/// `0`, or each PacketIn reason with its count.
fn packet_ins(by_reason: &BTreeMap<String, f64>) -> String {
    if by_reason.is_empty() {
        return "0".to_owned();
    }
    let parts: Vec<String> = by_reason.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.join(", ")
}

fn print_mesh(r: &mesh::Report) -> String {
    let pms: Vec<&str> = r.tunnels.keys().map(String::as_str).collect();
    println!(
        "   {} PMs: {}, each an ovs-vswitchd (userspace datapath) in its own namespace",
        pms.len(),
        pms.join(", ")
    );
    println!(
        "   iris-controller started and every switch and OVSDB session connected: {:.0} ms",
        r.controller_ready_ms
    );
    println!(
        "   GRE full mesh created by the controller over OVSDB: {:.0} ms; tunnels per PM:",
        r.full_mesh_ms
    );
    for (pm, tunnels) in &r.tunnels {
        println!(
            "     {pm}: {} ({} flows installed)",
            tunnels.join(", "),
            r.flows.get(pm).copied().unwrap_or(0)
        );
    }
    println!(
        "   VM ports classified by the controller: {:.0} ms",
        r.ports_classified_ms
    );
    heading(
        "2",
        "VMs of one operator ping across PMs; known ARP stays in the datapath",
    );
    println!("   every VM pings every other across the tunnels:");
    for p in &r.pairs {
        println!(
            "     {} -> {}: first reply after {:.1} ms; {}",
            p.from,
            p.to,
            p.first_reply_ms,
            pings(&p.ping)
        );
    }
    println!(
        "   registry placed every MAC after {:.0} ms (PacketIns while learning: {})",
        r.macs_placed_ms,
        packet_ins(&r.packet_ins_while_learning)
    );
    println!(
        "   ARP caches flushed, every VM resolves every peer again: {} neighbours resolved \
         to the right MAC,\n   {} requests answered by the datapath's responder flows, \
         PacketIns to the controller: {}",
        r.arp.neighbours_resolved,
        r.arp.answered_in_datapath,
        packet_ins(&r.arp.packet_ins)
    );
    let tunnels: usize = r.tunnels.values().map(Vec::len).sum();
    format!(
        "{} PMs, {tunnels} tunnels in {:.0} ms; {} ARP answered in datapath, PacketIns: {}",
        pms.len(),
        r.full_mesh_ms,
        r.arp.answered_in_datapath,
        packet_ins(&r.arp.packet_ins)
    )
}

fn print_isolation(r: &isolation::Report) -> String {
    println!("   two operators (VIs), each with a VM on pm1 and pm2: the same MACs, IPs, VLAN 10");
    for vi in &r.vis {
        for (pair, p) in &vi.pings {
            println!("     VI {} {pair}: {}", vi.vi, pings(p));
        }
        println!(
            "     VI {}: {} requests to addresses nobody has, flooded inside the VI",
            vi.vi, vi.flooded_requests
        );
    }
    println!("   every VM interface captured for the whole run:");
    for i in &r.interfaces {
        println!(
            "     {} (VI {}) {}: {} frames, {} of its own VI, {} foreign, {} unmarked",
            i.vm, i.vi, i.interface, i.frames, i.own, i.foreign, i.unmarked
        );
    }
    println!("   foreign frames on any interface: {}", r.foreign_frames);
    format!(
        "{} interfaces captured, foreign frames: {}",
        r.interfaces.len(),
        r.foreign_frames
    )
}

fn print_migrate(r: &migrate::Report) -> String {
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1} ms"));
    for m in [&r.rarp, &r.garp] {
        let (what, who) = match m.announced_by {
            migrate::Announcer::Rarp => ("RARPs", "as QEMU does"),
            migrate::Announcer::Garp => ("GARPs", "as a guest with virtio-net's announce does"),
        };
        println!(
            "   a VM moves from {} to {} while another VM pings it; re-plugging took {:.0} ms",
            m.from_pm, m.to_pm, m.replug_ms
        );
        println!(
            "   it announces itself {who}: {} {what}; PacketIns during the move: {}",
            m.announcements_sent,
            packet_ins(&m.packet_ins)
        );
        if let Some(latency) = m.rarp_to_last_barrier_ms {
            println!(
                "   controller: RARP PacketIn to the last barrier reply of the reprogramming: \
                 {latency:.3} ms"
            );
        }
        println!(
            "   first announcement to the first ping reply after it: {} ({} pings lost after \
             it); to the flooded announcement reaching the pinger: {} ({} copies)",
            opt(m.announcement_to_first_reply_ms),
            m.lost_after_announcement.len(),
            opt(m.announcement_to_flood_ms),
            m.flooded_to_pinger
        );
        println!(
            "   pings: {}; longest gap between replies: {}{}",
            pings(&m.ping),
            opt(m.ping.longest_gap_ms),
            m.gap_between
                .map(|(a, b)| format!(" (between replies {a} and {b})"))
                .unwrap_or_default()
        );
        println!(
            "   flows of the VI left on {} once it hosts none of its VMs: {}",
            m.from_pm, m.source_pm_vi_flows
        );
    }
    format!(
        "move {} RARP-to-barrier; first reply {} after the RARP, {} after the GARP; lost after \
         the announcement {} and {}",
        opt(r.rarp.rarp_to_last_barrier_ms),
        opt(r.rarp.announcement_to_first_reply_ms),
        opt(r.garp.announcement_to_first_reply_ms),
        r.rarp.lost_after_announcement.len(),
        r.garp.lost_after_announcement.len()
    )
}

fn print_intercloud(r: &intercloud::Report) -> String {
    println!(
        "   an IaaS DC (compute nodes with a Linux bridge per VLAN, a DC LAN) and the HaaS DC, \
         each with its gateway node running iris-gateway, a WAN relay between them; up in {:.1} s",
        r.setup_s
    );
    for x in &r.rtt {
        println!(
            "   WAN {:>5.1} ms one way: IaaS guest -> HaaS guest {}/{} replies, RTT min {:.3} ms \
             avg {:.3} ms",
            x.one_way_delay_ms, x.received, x.pings, x.rtt_min_ms, x.rtt_avg_ms
        );
    }
    println!("   a 1500-byte packet with DF set crosses the WAN whole");
    println!(
        "   the IaaS guest's MAC in the controller's registry: {} (reported by the operator's \
         gateway)",
        r.iaas_guest_location
    );
    println!(
        "   ARP requests that crossed the WAN once the registry knew the addresses: {}",
        r.arp_wan_crossings_after_warmup
    );
    let first = r.rtt.first().map_or(0.0, |x| x.rtt_min_ms);
    format!(
        "RTT {first:.2} ms at 0 ms WAN, {} ARP across the WAN warm",
        r.arp_wan_crossings_after_warmup
    )
}

fn print_restart(r: &controller_restart::Report) -> String {
    println!(
        "   a VM pings another every {} ms; after {:.0} ms the controller gets SIGKILL",
        r.ping.interval_ms, r.killed_after_ms
    );
    println!(
        "   dead for {:.0} ms, restarted on the same configuration and store; every switch \
         and OVSDB session back after {:.0} ms",
        r.dead_ms, r.restart_to_ready_ms
    );
    println!(
        "   sent by the restarted controller: {} FLOW_MODs, {} GROUP_MODs",
        r.flow_mods_after_restart, r.group_mods_after_restart
    );
    for x in r.restarts.iter().filter(|x| x.how == "ovsdb_held") {
        println!(
            "   killed and restarted again with OVSDB held back until the switches were ready: \
             {} FLOW_MODs, {} GROUP_MODs (switches held for their ports {} times)",
            x.flow_mods, x.group_mods, x.switches_held_for_inventory
        );
    }
    let kept: Vec<String> = r
        .flows_kept
        .iter()
        .map(|(pm, n)| format!("{pm} {n}"))
        .collect();
    println!(
        "   flows kept, their durations still counting ({}): each grew by at least {:.3} s \
         in {:.3} s",
        kept.join(", "),
        r.least_duration_growth_s,
        r.between_dumps_s
    );
    println!(
        "   registry: the same {} entries before and after",
        r.registry_entries
    );
    println!("   pings across the kill and restart: {}", pings(&r.ping));
    format!(
        "{} flows re-installed, {} pings lost",
        r.flow_mods_after_restart + r.group_mods_after_restart,
        r.ping.lost.len()
    )
}

fn print_summary(rows: &[Row]) {
    let width = rows.iter().map(|r| r.step.len()).max().unwrap_or(0);
    println!("\n== Summary");
    println!("   {:width$}  result  time    measured", "step");
    for r in rows {
        let result = if r.outcome.passed { "passed" } else { "FAILED" };
        println!(
            "   {:width$}  {result}  {:5.1} s  {}",
            r.step, r.outcome.seconds, r.headline
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_ins_print_zero_when_none_and_each_reason_otherwise() {
        assert_eq!(packet_ins(&BTreeMap::new()), "0");
        let seen = BTreeMap::from([("rarp".to_owned(), 5.0), ("unknown_source".to_owned(), 6.0)]);
        assert_eq!(packet_ins(&seen), "5 rarp, 6 unknown_source");
    }

    #[test]
    fn pings_name_the_lost_sequence_numbers() {
        let p = PingSummary {
            sent: 10,
            received: 8,
            lost: vec![3, 4],
            interval_ms: 10.0,
            longest_gap_ms: Some(30.0),
            rtt_avg_ms: Some(1.0),
            rtt_max_ms: Some(2.5),
        };
        assert_eq!(
            pings(&p),
            "8/10 replies, one every 10 ms, lost [3, 4], rtt avg 1.000 ms max 2.500 ms"
        );
    }
}
