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
root=$(cd "$here/../.." && pwd)
bin=${TARGET_DIR:-${CARGO_TARGET_DIR:-$root/target}}/release
out=${1:-${TARGET_DIR:-${CARGO_TARGET_DIR:-$root/target}}/bench/dataplane}
seconds=${SECONDS_PER_TEST:-10}
repeat=${REPEAT:-3}
requests=${REQUESTS:-1000}

for b in iris-testbed iris-controller; do
  [[ -x $bin/$b ]] || {
    echo "dataplane.sh: $bin/$b is missing; run cargo build --release -p iris-testbed -p iris-controller" >&2
    exit 1
  }
done
command -v iperf3 >/dev/null || {
  echo "dataplane.sh: iperf3 is missing (apt-get install iperf3)" >&2
  exit 1
}
[[ $(id -u) == 0 ]] || {
  echo "dataplane.sh: the testbed needs root" >&2
  exit 1
}

mkdir -p "$out"
results=$out/results.jsonl
: >"$results"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(uname -srm)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
  echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  echo "iris-controller: $("$bin/iris-controller" --version)"
  echo "open vswitch: $(ovs-vswitchd --version | head -1)"
  echo "iperf3: $(iperf3 --version | head -1)"
} >"$out/machine.txt"

# run TAG ARGS...: one benchmark, its JSON tagged with what it is for. A
# failed run is noted and the others still run.
run() {
  local tag=$1
  shift
  echo "load $(cut -d' ' -f1-3 /proc/loadavg) before: bench $*" | tee -a "$out/machine.txt" >&2
  local json
  if json=$("$bin/iris-testbed" bench "$@" --json --controller "$bin/iris-controller"); then
    printf '{"tag":"%s",%s\n' "$tag" "${json#\{}" >>"$results"
  else
    echo "dataplane.sh: bench $* failed; continuing" | tee -a "$out/machine.txt" >&2
  fi
}

for ((i = 1; i <= repeat; i++)); do
  run goodput goodput --seconds "$seconds"
  run goodput-tso goodput --seconds "$seconds" --tso
done
run arp arp --requests "$requests"
echo "load $(cut -d' ' -f1-3 /proc/loadavg) after the last run" >>"$out/machine.txt"

python3 "$here/dataplane_report.py" "$results" >"$out/tables.md"
echo "dataplane.sh: $(wc -l <"$results") runs; figures in $out/tables.md" >&2
