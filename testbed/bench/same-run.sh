#!/usr/bin/env bash
# Iris against its peers on the same workload, in one run: ROUNDS rounds
# (default 3), each of Iris `learning`, ovs-testcontroller `learning`,
# os-ken `learning` and Iris `arp` (which no peer runs: its own target),
# back to back, so every ratio compares runs minutes apart under the same
# load; then Faucet `learning`, the cbench calibration (buffered) and
# latency mode once each. With BASE set to another iris-controller binary,
# each round also runs it on `learning`, for a before/after pair. Every run
# is 16 switches x 1000 MACs, WARMUP (2) + DURATION (5) seconds; the load
# average before each run goes to machine.txt and into each JSON object.
# Writes $TARGET_DIR/bench/same-run/{results.jsonl,machine.txt} and prints
# the ratios.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=testbed/bench/common.sh
source "$here/common.sh"
bench_setup same-run "${1:-}"
rounds=${ROUNDS:-3}

bash "$here/install-peers.sh"
bench_machine "generator: $bin/iris-testbed bench controller --switches 16 --macs 1000"

run() {
  local tag=$1
  shift
  echo "$(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg): $tag $*" | tee -a "$out/machine.txt" >&2
  bench_record "$tag" "$bin/iris-testbed" bench controller --json --warmup "${WARMUP:-2}" \
    --duration "${DURATION:-5}" --switches 16 --macs 1000 "$@" ||
    echo "same-run.sh: $tag failed; continuing" >&2
}

for round in $(seq "$rounds"); do
  run "round$round" --target iris --workload learning --iris-controller "$bin/iris-controller"
  run "round$round" --target ovs-testcontroller --workload learning
  run "round$round" --target os-ken --workload learning
  [[ -z ${BASE:-} ]] || run "round$round-base" --target iris --workload learning --iris-controller "$BASE"
  run "round$round" --target iris --workload arp --iris-controller "$bin/iris-controller"
done
run once --target faucet --workload learning
run calibration --target ovs-testcontroller --workload learning --buffered
run calibration --target os-ken --workload learning --buffered
for t in "iris --workload learning" "ovs-testcontroller --workload learning" \
  "os-ken --workload learning" "iris --workload arp"; do
  # shellcheck disable=SC2086 # $t is the target and workload flags
  run latency --mode latency --target $t
done

python3 - "$results" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
def cpu_us(r):
    c = r["cpu"]["controller_percent"]
    return c / 100 / r["responses_per_s"] * 1e6 if c and r["responses_per_s"] else float("nan")
print("| run | controller (workload) | answers/s | controller CPU | CPU µs per answer | p50 µs | load before |")
print("|---|---|---:|---:|---:|---:|---|")
for r in runs:
    print(f"| {r['tag']} {r['mode']}{' buffered' if r['buffered'] else ''} | {r['target']} ({r['workload']}) "
          f"| {r['responses_per_s']:,.0f} | {r['cpu']['controller_percent']}% | {cpu_us(r):.1f} "
          f"| {r['latency']['p50_us']:,.0f} | {r['load_average_before'][0]:.2f} |")
for tag in sorted({r["tag"] for r in runs if r["tag"].startswith("round") and not r["tag"].endswith("base")}):
    get = lambda t, w: next((r for r in runs if r["tag"] == tag and r["target"] == t
                             and r["workload"] == w and r["mode"] == "throughput"), None)
    iris = get("iris", "learning")
    for peer in ("ovs-testcontroller", "os-ken"):
        p = get(peer, "learning")
        if iris and p and p["responses_per_s"]:
            print(f"{tag}: iris (learning) / {peer} (learning) = {iris['responses_per_s'] / p['responses_per_s']:.2f}x")
PY
