"""Turns the runs of testbed/bench/scale.sh into Markdown tables and the
memory-against-registry-size plot.

Usage: scale_report.py RESULTS.jsonl PLOT.svg > tables.md

Each line of RESULTS is one `iris-testbed bench scale ... --json` object
with a "tag": "registry" (two real switches hold the flows),
"registry-alone" (no switch connected), "restart", "switches-unknown" or
"switches-known".
"""

import sys

from bench_report import figure, load


def by_tag(runs, tag):
    return [r for r in runs if r["tag"] == tag]


def load_text(run):
    before = run["run"]["load_before"]
    return f"{before[0]:.2f}" if before else "?"


def registry_table(runs):
    out = [
        "| registry (MACs, 1 IP each) | switches | VmRSS MiB | VmHWM MiB | over empty MiB | "
        "flows per switch | step s |",
        "|---:|---|---:|---:|---:|---|---:|",
    ]
    for r in runs:
        where = "gw + pm1 (real OVS)" if r["switches"] else "none"
        for p in [r["baseline"]] + r["points"]:
            flows = ", ".join(f"{k} {v:,}" for k, v in p["flows"].items()) or "-"
            out.append(
                f"| {p['macs']:,} | {where} | {p['memory']['rss_mib']:.1f} | "
                f"{p['memory']['hwm_mib']:.1f} | {p['rss_over_baseline_mib']:.1f} | {flows} | "
                f"{p['step_ms'] / 1e3:.2f} |"
            )
    return "\n".join(out)


def restart_table(runs):
    out = [
        "| PMs | MACs | flows (all switches) | restart → listening | → first switch | "
        "→ last ready (log) | → all reconciled | FLOW_MODs / GROUP_MODs resent | "
        "flows deleted | RSS before kill MiB | load |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in runs:
        ms = lambda x: "-" if x is None else f"{x:,.0f} ms"
        out.append(
            f"| {r['pms']} | {r['macs']:,} | {r['flows_total']:,} | {ms(r['listening_ms'])} | "
            f"{ms(r['first_connection_ms'])} | {ms(r['last_ready_logged_ms'])} | "
            f"{ms(r['all_reconciled_ms'])} | {r['flow_mods_sent']:.0f} / {r['group_mods_sent']:.0f} | "
            f"{r['flows_deleted']} of {r['flows_compared']['compared']:,} | "
            f"{r['memory_before_kill']['rss_mib']:.0f} | {load_text(r)} |"
        )
    return "\n".join(out)


def switches_table(runs):
    out = [
        "| switches | dpids | last TCP connected | last FEATURES answered | last dump answered | "
        "last BARRIER answered | all ready (/healthz) | RSS before → connected MiB | "
        "KiB per switch | load |",
        "|---:|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in runs:
        last = lambda s: "-" if s is None else f"{s['last_ms']:,.0f} ms"
        out.append(
            f"| {r['switches']:,} | {r['dpids']} | {last(r['connected'])} | "
            f"{last(r['features_answered'])} | {last(r['dump_answered'])} | "
            f"{last(r['barrier_answered'])} | {r['all_ready_ms']:,.0f} ms | "
            f"{r['memory_before']['rss_mib']:.1f} → {r['memory_connected']['rss_mib']:.1f} | "
            f"{r['rss_per_switch_kib']:.0f} | {load_text(r)} |"
        )
    return "\n".join(out)


def plot(runs, path):
    with figure(
        path,
        xlabel="registry size (MACs, one IP each)",
        ylabel="iris-controller memory (MiB)",
        title="Controller memory against registry size",
        height=4.2,
    ) as ax:
        for r in runs:
            points = [r["baseline"]] + r["points"]
            xs = [p["macs"] for p in points]
            label = "2 real OVS switches hold the flows" if r["switches"] else "no switch connected"
            ax.plot(xs, [p["memory"]["rss_mib"] for p in points], marker="o", label=f"VmRSS, {label}")
            ax.plot(
                xs,
                [p["memory"]["hwm_mib"] for p in points],
                linestyle="--",
                marker=".",
                alpha=0.6,
                label=f"VmHWM, {label}",
            )
        if runs:
            ax.axhline(runs[0]["target_mib"], color="grey", linestyle=":", label="target at 100 000")


def main():
    runs = load(sys.argv[1])
    registry = by_tag(runs, "registry") + by_tag(runs, "registry-alone")
    print("## Memory against registry size\n")
    print(registry_table(registry))
    print("\n## Reconcile after kill -9\n")
    print(restart_table(by_tag(runs, "restart")))
    print("\n## Emulated switches connecting at once\n")
    print(switches_table(by_tag(runs, "switches-unknown") + by_tag(runs, "switches-known")))
    plot(registry, sys.argv[2])


if __name__ == "__main__":
    main()
