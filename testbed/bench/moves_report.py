"""Turns the runs of testbed/bench/moves.sh into a Markdown table and the
move-time-against-mesh-size plot.

Usage: moves_report.py RESULTS.jsonl PLOT.svg > tables.md

Each line of RESULTS is one `iris-testbed bench moves --json` object.
"""

import sys

from bench_report import figure, load


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
        "| of those after the RARP max / total "
        "| first RARP to first reply p50 / max (ms) | longest gap (ms) "
        "| ping sent every p50 / max (ms) "
        "| re-plug p50 / max (ms) | controller CPU re-plug / announcements (s) "
        "| setup (s) | RSS OVS / controller (MiB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
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
            f"| {spread(r.get('rarp_to_first_reply_ms'))} "
            f"| {ms(r['longest_gap_ms'])} | {spread(r.get('ping_pace_ms'))} "
            f"| {spread(r['replug_ms'])} | {cpu(r)} "
            f"| {setup:.1f} | {s['ovs_rss_mib']:.0f} / {s['controller_rss_mib']:.0f} |"
        )
    return "\n".join(out)


def plot(runs, path):
    with figure(
        path,
        xlabel="PMs in the mesh",
        ylabel="first RARP to last move confirmed (ms)",
        title="Simultaneous live migrations, Iris controller, 2 shared cores",
        loglog=True,
    ) as ax:
        for k in sorted({r["moves"] for r in runs}):
            pts = sorted(
                (r["pms"], r["first_rarp_to_last_move_ms"])
                for r in runs
                if r["moves"] == k and r["first_rarp_to_last_move_ms"] is not None
            )
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, "-o", label=f"{k} move{'s' if k > 1 else ''} at once")


def main():
    runs = load(sys.argv[1])
    print(table(runs))
    if len(sys.argv) > 2:
        plot(runs, sys.argv[2])


if __name__ == "__main__":
    main()
