#!/usr/bin/env python3
"""Markdown tables from the JSONL that dataplane.sh writes.

Usage: dataplane_report.py results.jsonl > tables.md
"""

import statistics
import sys

from bench_report import load

PATHS = [
    ("overlay", "overlay (2 PMs, GRE)"),
    ("one_bridge", "one Iris bridge"),
    ("plain_two_pms", "plain NORMAL, 2 PMs"),
    ("plain_one_bridge", "plain NORMAL, 1 bridge"),
]


def gbps(path):
    iperf = path["iperf"]
    if iperf["outcome"] == "measured":
        return iperf["received_gbps"]
    return 0.0


def goodput_cell(path):
    iperf = path["iperf"]
    if iperf["outcome"] != "measured":
        return "failed: " + iperf["error"]
    retrans = iperf.get("retransmits")
    extra = f" ({retrans} retr.)" if retrans is not None else ""
    return f"{iperf['received_gbps']:.3f}{extra}"


def cpu_cell(path):
    cpu = path["cpu"]
    parts = [f"{pm} {pct:.0f}%" for pm, pct in sorted(cpu["vswitchd_percent"].items())]
    busy = cpu.get("machine_busy_percent")
    return ", ".join(parts) + (f"; machine {busy:.0f}%" if busy is not None else "")


def ratio(r):
    return "n/a" if r is None else f"{r:.3f}"


def goodput_tables(runs):
    out = []
    for tso in (False, True):
        chosen = [r for r in runs if r["tso"] == tso]
        if not chosen:
            continue
        title = "OVS userspace TSO on, VM offloads on" if tso else "offloads off"
        out.append(f"### Goodput, {title}\n")
        out.append(
            "| run | " + " | ".join(label + ", Gb/s" for _, label in PATHS)
            + " | overlay / one bridge | overlay / plain 2 PMs | one bridge / plain 1 bridge | load before |"
        )
        out.append("|---|" + "---:|" * (len(PATHS) + 4))
        for i, r in enumerate(chosen, 1):
            load = r["conditions"].get("load_average_before")
            out.append(
                f"| {i} | "
                + " | ".join(goodput_cell(r[key]) for key, _ in PATHS)
                + f" | {ratio(r['overlay_to_one_bridge'])} | {ratio(r['overlay_to_plain_two_pms'])}"
                + f" | {ratio(r['one_bridge_to_plain_one_bridge'])}"
                + f" | {load[0] if load else '?'} |"
            )
        medians = [statistics.median(gbps(r[key]) for r in chosen) for key, _ in PATHS]
        ratios = [
            statistics.median(r[k] or 0.0 for r in chosen)
            for k in ("overlay_to_one_bridge", "overlay_to_plain_two_pms", "one_bridge_to_plain_one_bridge")
        ]
        out.append(
            "| median | " + " | ".join(f"{m:.3f}" for m in medians)
            + " | " + " | ".join(f"{x:.3f}" for x in ratios) + " | |"
        )
        out.append("")
        out.append(f"Target overlay / one bridge >= {chosen[0]['target_ratio']}: "
                   f"met in {sum(r['target_met'] for r in chosen)} of {len(chosen)} runs.\n")
        out.append("CPU during each test (vswitchd of each PM involved, in % of one core; "
                   "the whole machine's busy share), and OVS drop/segmentation events, last run:\n")
        out.append("| path | CPU | vswitchd core-seconds per Gbit | OVS events |")
        out.append("|---|---|---:|---|")
        last = chosen[-1]
        for key, label in PATHS:
            p = last[key]
            events = ", ".join(f"{k} {v}" for k, v in sorted(p["ovs_drop_events"].items())) or "none"
            cores = sum(p["cpu"]["vswitchd_percent"].values()) / 100
            per_gbit = f"{cores / gbps(p):.2f}" if gbps(p) > 0 else "n/a"
            out.append(f"| {label} | {cpu_cell(p)} | {per_gbit} | {events} |")
        mtu = last["mtu"]
        out.append("")
        out.append(
            f"MTU: VM {mtu['vm']}, underlay {mtu['underlay']}, GRE adds {mtu['gre_overhead']}; "
            f"1500-byte packets with DF cross the tunnel: "
            f"{'yes' if mtu['full_sized_frames_cross_the_tunnel'] else 'NO'}.\n"
        )
    return out


def arp_tables(runs):
    out = []
    for r in runs:
        out.append(
            f"### ARP: {r['requests']} requests per setup, {r['warmup']} warm-up, "
            f"{r['blocks']} alternating blocks, {r['pause_us']} us apart\n"
        )
        out.append("| setup | PM | p50 us | p90 us | p99 us | max us | mean us | unanswered |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|")
        for key in ("responder", "plain"):
            s = r[key]
            lat = s["latency"]
            out.append(
                f"| {s['setup']} | {s['pm']} | {lat['p50_us']:.1f} | {lat['p90_us']:.1f} | "
                f"{lat['p99_us']:.1f} | {lat['max_us']:.1f} | {lat['mean_us']:.1f} | {s['unanswered']} |"
            )
        out.append("")
        met = "met" if r["target_met"] else "missed"
        out.append(f"Responder / plain at p50: {r['p50_ratio']:.3f} (target <= {r['target_ratio']}: {met}).")
        gained = r["packet_ins_gained"] or "none"
        out.append(
            f"Controller PacketIns: {r['packet_ins_before']:g} before, {r['packet_ins_after']:g} after "
            f"(gained: {gained}); the responder flows counted {r['responder_flow_packets']} packets.\n"
        )
        for pm, flows in sorted(r["datapath_flows"].items()):
            for flow in flows:
                actions = flow.rsplit("actions:", 1)[-1]
                out.append(f"- {pm} datapath flow for the ARP requests: `actions:{actions}`")
        for pm, events in sorted(r["vswitchd_events"].items()):
            shown = ", ".join(f"{k} {v}" for k, v in sorted(events.items())) or "none"
            out.append(f"- {pm} vswitchd events over the measured blocks: {shown}")
        out.append("")
    return out


def main():
    runs = load(sys.argv[1])
    lines = ["## Data plane figures\n"]
    lines += goodput_tables([r for r in runs if r.get("benchmark") == "goodput"])
    lines += arp_tables([r for r in runs if r.get("benchmark") == "arp"])
    print("\n".join(lines))


if __name__ == "__main__":
    main()
