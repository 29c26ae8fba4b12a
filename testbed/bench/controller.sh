#!/usr/bin/env bash
# Controller throughput and latency, every controller in one run: Iris
# (ARP and learning workloads) against ovs-testcontroller, os-ken and Faucet
# (learning), at 16 and 256 switches x 1000 MACs, in throughput and latency
# mode; the cbench calibration runs; and the responses/s sweep over switch
# counts that the plot shows. Writes, under OUT (default
# $TARGET_DIR/bench/controller):
#   results.jsonl   one `iris-testbed bench controller --json` object per run
#   machine.txt     the host, its load before every run, the date
#   tables.md       the figures as Markdown tables (controller_report.py)
#   throughput.svg  responses/s against switch count
# `make bench` runs it after building the release binaries. Environment:
#   DURATION, WARMUP  seconds per run (default 10, 2)
#   QUIET_LOAD        wait (up to 10 min) until the 1-minute load average is
#                     below this before each run (default: do not wait)
#   MATRIX            switch counts of the matrix (default "16 256")
#   SWEEP             more switch counts for the plot (default "1 4 64")
# It also measures the round trip of a single PacketIn with the generator
# and the controller pinned to one core.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=testbed/bench/common.sh
source "$here/common.sh"
bench_setup controller "${1:-}"
duration=${DURATION:-10}
warmup=${WARMUP:-2}
matrix=${MATRIX:-16 256}
sweep=${SWEEP:-1 4 64}

bash "$here/install-peers.sh"

bench_machine \
  "ovs-testcontroller: $(ovs-testcontroller --version | head -1)" \
  "python peers: $("$cache/venv/bin/pip" list 2>/dev/null | grep -iE '^(os-ken|faucet) ' | tr -s ' ' | paste -sd, -)" \
  "generator: $bin/iris-testbed bench controller --warmup $warmup --duration $duration"

# run TAG ARGS...: one benchmark, its JSON tagged with what it is for.
# With PIN set, the generator and the controller share one core (taskset).
run() {
  local tag=$1
  shift
  local pin=()
  [[ -z ${PIN:-} ]] || pin=(taskset -c "$PIN")
  # A quoted regex is matched literally: keep it in a variable.
  local switches_re=' --switches ([0-9]+) '
  if [[ " $* " == *" --target ovs-testcontroller "* && " $* " =~ $switches_re ]] &&
    ((BASH_REMATCH[1] > 16)); then
    echo "skipped (ovs-testcontroller serves at most 16 switches): bench controller $*" | tee -a "$out/machine.txt" >&2
    return
  fi
  bench_wait_quiet
  echo "load $(cut -d' ' -f1-3 /proc/loadavg) before: bench controller $*" | tee -a "$out/machine.txt" >&2
  bench_record "$tag" "${pin[@]}" "$bin/iris-testbed" bench controller --json --warmup "$warmup" --duration "$duration" "$@" ||
    echo "controller.sh: bench controller $* failed; continuing" >&2
}

for switches in $matrix; do
  for mode in throughput latency; do
    run matrix --target iris --workload arp --switches "$switches" --macs 1000 --mode "$mode"
    run matrix --target iris --workload learning --switches "$switches" --macs 1000 --mode "$mode"
    for peer in ovs-testcontroller os-ken faucet; do
      run matrix --target "$peer" --workload learning --switches "$switches" --macs 1000 --mode "$mode"
    done
  done
done

# One PacketIn in flight, generator and controller on one core: the
# response time without queueing and without waking the other core (on this
# VM a cross-core wake-up alone costs about 100 us).
for config in "iris --workload arp" "iris --workload learning" \
  "ovs-testcontroller --workload learning" "os-ken --workload learning" \
  "faucet --workload learning"; do
  # shellcheck disable=SC2086 # $config is the target and workload flags
  PIN=0 run pinned --target $config --switches 1 --macs 1000 --mode latency
done

# cbench (OpenFlow 1.0) defaults: 16 switches, buffered PacketIns.
for peer in ovs-testcontroller os-ken; do
  run calibration --target "$peer" --workload learning --switches 16 --macs 1000 --buffered
done

for switches in $sweep; do
  run sweep --target iris --workload arp --switches "$switches" --macs 1000
  run sweep --target iris --workload learning --switches "$switches" --macs 1000
  for peer in ovs-testcontroller os-ken faucet; do
    run sweep --target "$peer" --workload learning --switches "$switches" --macs 1000
  done
done

"$cache/venv/bin/python" "$here/controller_report.py" "$results" "$out/throughput.svg" >"$out/tables.md"
echo "controller.sh: $(wc -l <"$results") runs; figures in $out/tables.md, plot $out/throughput.svg" >&2
