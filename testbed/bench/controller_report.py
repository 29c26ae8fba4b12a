"""Turns the runs of testbed/bench/controller.sh into Markdown tables and
the responses/s-against-switches plot.

Usage: controller_report.py RESULTS.jsonl PLOT.svg > tables.md

Each line of RESULTS is one `iris-testbed bench controller --json` object
with a "tag": "matrix" (16 and 256 switches, both modes), "pinned" (one
switch, latency mode, one core), "calibration" (cbench's setup) or "sweep"
(more switch counts for the plot).
"""

import sys

from bench_report import figure, load

# What the original cbench (OpenFlow 1.0, buffered PacketIns) measured on
# the benchmark machine, responses/s.
CBENCH = {"ovs-testcontroller": 100_000, "os-ken": 28_000}
PEERS = ["ovs-testcontroller", "os-ken", "faucet"]


def label(r):
    return f"{r['target']} ({r['workload']})"


def fmt_rate(x):
    return f"{x:,.0f}"


def fmt_us(x):
    return f"{x:,.1f}" if x < 1000 else f"{x:,.0f}"


def fmt_ratio(x):
    return f"{x:,.1f}x" if x >= 1 else f"{x:.2f}x"


def find(runs, tag, target, workload, switches, mode, buffered=False):
    for r in runs:
        if (
            r["tag"] == tag
            and r["target"] == target
            and r["workload"] == workload
            and r["switches"] == switches
            and r["mode"] == mode
            and r["buffered"] == buffered
        ):
            return r
    return None


def answers(r):
    c = r["counts"]
    parts = []
    if c["flow_mods"]:
        parts.append(f"{c['flow_mods'] / max(c['answered'], 1):.2f} FLOW_MOD")
    if c["packet_outs"]:
        parts.append(f"{c['packet_outs'] / max(c['answered'], 1):.2f} PACKET_OUT")
    return " + ".join(parts) or "nothing"


def configs(runs):
    seen = []
    for r in runs:
        key = (r["target"], r["workload"])
        if r["tag"] == "matrix" and key not in seen:
            seen.append(key)
    # Iris first, then the peers in a fixed order.
    return sorted(seen, key=lambda k: (k[0] != "iris", PEERS.index(k[0]) if k[0] in PEERS else -1, k[1]))


def matrix(runs, switches):
    out = [
        f"#### {switches} switches x 1000 MACs",
        "",
        "| controller (workload) | responses/s | answers per PacketIn | controller CPU | "
        "p50 µs | p90 µs | p99 µs | max µs | given up | load before |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for target, workload in configs(runs):
        t = find(runs, "matrix", target, workload, switches, "throughput")
        l = find(runs, "matrix", target, workload, switches, "latency")
        if t is None and l is None:
            continue
        cells = [f"{target} ({workload})"]
        if t:
            cpu = t["cpu"]["controller_percent"]
            cells += [
                fmt_rate(t["responses_per_s"]),
                answers(t),
                f"{cpu:.0f}%" if cpu is not None else "?",
            ]
        else:
            cells += ["–", "–", "–"]
        if l:
            lat = l["latency"]
            cells += [fmt_us(lat[k]) for k in ("p50_us", "p90_us", "p99_us", "max_us")]
        else:
            cells += ["–"] * 4
        given_up = sum(r["counts"]["expired"] for r in (t, l) if r)
        loads = [r["load_average_before"] for r in (t, l) if r and r["load_average_before"]]
        cells += [str(given_up), " / ".join(f"{la[0]:.2f}" for la in loads)]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def ratios(runs, switches):
    """Iris against each peer on the same workload only: the peers run no
    ARP responder, so Iris's `arp` figure has no peer to be set against."""
    out = [
        f"#### Iris (learning) / peer (learning) at {switches} switches",
        "",
        "| Iris (workload) | peer (workload) | responses/s ratio | p50 latency ratio (peer / Iris) | p99 latency ratio |",
        "|---|---|---:|---:|---:|",
    ]
    it = find(runs, "matrix", "iris", "learning", switches, "throughput")
    il = find(runs, "matrix", "iris", "learning", switches, "latency")
    for peer in PEERS:
        pt = find(runs, "matrix", peer, "learning", switches, "throughput")
        pl = find(runs, "matrix", peer, "learning", switches, "latency")
        cells = ["iris (learning)", f"{peer} (learning)"]
        if it and pt and pt["responses_per_s"] > 0:
            cells.append(fmt_ratio(it["responses_per_s"] / pt["responses_per_s"]))
        else:
            cells.append("–")
        for k in ("p50_us", "p99_us"):
            if il and pl and il["latency"][k] > 0:
                cells.append(fmt_ratio(pl["latency"][k] / il["latency"][k]))
            else:
                cells.append("–")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def calibration(runs):
    """cbench counts every FLOW_MOD and PACKET_OUT it receives, so a
    learning switch that answers with one of each reads about twice its
    PacketIn rate there; this generator counts PacketIns answered."""
    out = [
        "| controller | cbench (OpenFlow 1.0, counts messages) | this generator, buffered: messages/s | answers/s | unbuffered answers/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for peer, cbench in CBENCH.items():
        b = find(runs, "calibration", peer, "learning", 16, "throughput", buffered=True)
        u = find(runs, "matrix", peer, "learning", 16, "throughput")
        cells = [peer, fmt_rate(cbench)]
        cells.append(fmt_rate(b["flow_mods_per_s"] + b["packet_outs_per_s"]) if b else "–")
        cells.append(fmt_rate(b["responses_per_s"]) if b else "–")
        cells.append(fmt_rate(u["responses_per_s"]) if u else "–")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def pinned(runs):
    out = [
        "| controller (workload) | p50 µs | p90 µs | p99 µs | max µs | round trips/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(
        (r for r in runs if r["tag"] == "pinned"), key=lambda r: (r["target"] != "iris", label(r))
    ):
        lat = r["latency"]
        out.append(
            f"| {label(r)} | "
            + " | ".join(fmt_us(lat[k]) for k in ("p50_us", "p90_us", "p99_us", "max_us"))
            + f" | {fmt_rate(r['responses_per_s'])} |"
        )
    return "\n".join(out)


def sweep_points(runs):
    """(target, workload) -> sorted [(switches, responses/s)], throughput mode."""
    points = {}
    for r in runs:
        if r["mode"] != "throughput" or r["buffered"] or r["tag"] not in ("matrix", "sweep"):
            continue
        points.setdefault((r["target"], r["workload"]), {})[r["switches"]] = r["responses_per_s"]
    return {k: sorted(v.items()) for k, v in points.items()}


def sweep_table(points):
    counts = sorted({s for series in points.values() for s, _ in series})
    out = [
        "| controller (workload) | " + " | ".join(f"{s} sw" for s in counts) + " |",
        "|---|" + "---:|" * len(counts),
    ]
    for key in sorted(points, key=lambda k: (k[0] != "iris", k)):
        series = dict(points[key])
        out.append(
            f"| {key[0]} ({key[1]}) | "
            + " | ".join(fmt_rate(series[s]) if s in series else "–" for s in counts)
            + " |"
        )
    return "\n".join(out)


def plot(points, path):
    with figure(
        path,
        xlabel="emulated switches (1000 MACs each)",
        ylabel="responses/s (PacketIns answered)",
        title="Controller throughput, OpenFlow 1.3, 2 shared cores",
        loglog=True,
    ) as ax:
        for key in sorted(points, key=lambda k: (k[0] != "iris", k)):
            xs, ys = zip(*points[key])
            style = "-o" if key[0] == "iris" else "--s"
            ax.plot(xs, ys, style, label=f"{key[0]} ({key[1]})")


def main():
    runs = load(sys.argv[1])
    switch_counts = sorted({r["switches"] for r in runs if r["tag"] == "matrix"})
    print("### Throughput and latency\n")
    for s in switch_counts:
        print(matrix(runs, s) + "\n")
    print("### Ratios\n")
    for s in switch_counts:
        print(ratios(runs, s) + "\n")
    print("### One PacketIn at a time, one core\n")
    print(pinned(runs) + "\n")
    print("### Calibration against cbench\n")
    print(calibration(runs) + "\n")
    points = sweep_points(runs)
    print("### Responses/s against switch count\n")
    print(sweep_table(points) + "\n")
    if len(sys.argv) > 2:
        plot(points, sys.argv[2])


if __name__ == "__main__":
    main()
