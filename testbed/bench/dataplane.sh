#!/usr/bin/env bash
# The Iris data plane on the emulated testbed (root, namespaces, OVS
# userspace datapath, the real iris-controller): TCP goodput through the GRE
# mesh against one bridge, offloads off and with OVS userspace TSO, and the
# datapath ARP responder against a plain bridge. Writes, under OUT (default
# $TARGET_DIR/bench/dataplane):
#   results.jsonl  one `iris-testbed bench goodput|arp --json` object per run
#   machine.txt    the host, its load before every run, the date
#   tables.md      the figures as Markdown tables (dataplane_report.py)
# `make bench` runs it after building the release binaries. Environment:
#   SECONDS_PER_TEST  iperf3 seconds per measurement (default 10)
#   REPEAT            goodput runs per offload setting (default 3)
#   REQUESTS          ARP requests per setup (default 1000)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=testbed/bench/common.sh
source "$here/common.sh"
bench_setup dataplane "${1:-}"
seconds=${SECONDS_PER_TEST:-10}
repeat=${REPEAT:-3}
requests=${REQUESTS:-1000}

command -v iperf3 >/dev/null || {
  echo "dataplane.sh: iperf3 is missing (apt-get install iperf3)" >&2
  exit 1
}
bench_require_root

bench_machine \
  "open vswitch: $(ovs-vswitchd --version | head -1)" \
  "iperf3: $(iperf3 --version | head -1)"

# run TAG ARGS...: one benchmark, its JSON tagged with what it is for. A
# failed run is noted and the others still run.
run() {
  local tag=$1
  shift
  echo "load $(cut -d' ' -f1-3 /proc/loadavg) before: bench $*" | tee -a "$out/machine.txt" >&2
  bench_record "$tag" "$bin/iris-testbed" bench "$@" --json --controller "$bin/iris-controller" ||
    echo "dataplane.sh: bench $* failed; continuing" | tee -a "$out/machine.txt" >&2
}

for ((i = 1; i <= repeat; i++)); do
  run goodput goodput --seconds "$seconds"
  run goodput-tso goodput --seconds "$seconds" --tso
done
run arp arp --requests "$requests"
echo "load $(cut -d' ' -f1-3 /proc/loadavg) after the last run" >>"$out/machine.txt"

python3 "$here/dataplane_report.py" "$results" >"$out/tables.md"
echo "dataplane.sh: $(wc -l <"$results") runs; figures in $out/tables.md" >&2
