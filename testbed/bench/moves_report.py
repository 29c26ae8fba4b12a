"""Turns the runs of testbed/bench/moves.sh into a Markdown table and the
move-time-against-mesh-size plot.

Usage: moves_report.py RESULTS.jsonl PLOT.svg > tables.md

Each line of RESULTS is one `iris-testbed bench moves --json` object.
"""

import json
import sys


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def ms(x):
    if x is None:
        return "–"
    return f"{x:,.1f}" if x >= 10 else f"{x:.2f}"


def spread(s):
    return "–" if s is None else f"{ms(s['p50'])} / {ms(s['max'])}"


def seconds(v):
    return "–" if v is None else f"{v:.2f}"


def cpu(run):
    c = run.get("controller_cpu_s") or {}
    return f"{seconds(c.get('replug'))} / {seconds(c.get('announcements'))}"


def table(runs):
    out = [
        "| PMs | moves | RARP to last barrier p50 / max (ms) | first RARP to last move (ms) "
        "| RARPs reaching the controller | lost pings per VM max / total "
        "| of those after the RARP max / total | longest gap (ms) "
        "| re-plug p50 / max (ms) | controller CPU re-plug / announcements (s) "
        "| setup (s) | RSS OVS / controller (MiB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(runs, key=lambda r: (r["pms"], r["moves"])):
        s = r["setup"]
        setup = s["testbed_s"] + s["controller_s"] + s["reachable_s"]
        out.append(
            f"| {r['pms']} | {r['moves']} | {spread(r['move_latency_ms'])} "
            f"| {ms(r['first_rarp_to_last_move_ms'])} "
            f"| {r['rarp_packet_ins']:.0f} of {r['rarps_sent']} "
            f"| {r['pings_lost_max']} / {r['pings_lost_total']} "
            f"| {r['pings_lost_after_rarp_max']} / {r['pings_lost_after_rarp_total']} "
            f"| {ms(r['longest_gap_ms'])} | {spread(r['replug_ms'])} | {cpu(r)} "
            f"| {setup:.1f} | {s['ovs_rss_mib']:.0f} / {s['controller_rss_mib']:.0f} |"
        )
    return "\n".join(out)


def plot(runs, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k in sorted({r["moves"] for r in runs}):
        pts = sorted(
            (r["pms"], r["first_rarp_to_last_move_ms"])
            for r in runs
            if r["moves"] == k and r["first_rarp_to_last_move_ms"] is not None
        )
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, "-o", label=f"{k} move{'s' if k > 1 else ''} at once")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("PMs in the mesh")
    ax.set_ylabel("first RARP to last move confirmed (ms)")
    ax.set_title("Simultaneous live migrations, Iris controller, 2 shared cores")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def main():
    runs = load(sys.argv[1])
    print(table(runs))
    if len(sys.argv) > 2:
        plot(runs, sys.argv[2])


if __name__ == "__main__":
    main()
