#!/usr/bin/env bash
# How iris-controller grows: memory against registry size (with two real
# OVS switches holding the flows, and without switches), reconcile after a
# kill -9 with 10 000 MACs on 16 testbed PMs, and 1000 emulated switches
# connecting at once (dpids unknown, then known). Needs root (the testbed).
# Writes, under OUT (default $TARGET_DIR/bench/scale):
#   results.jsonl   one `iris-testbed bench scale ... --json` object per run,
#                   tagged with the run's kind
#   machine.txt     the host, the date, the load before each run
#   tables.md       the figures as Markdown tables (scale_report.py)
#   memory.svg      controller VmRSS against registry size
# `make bench` runs it after building the release binaries. Environment:
#   SIZES      registry sizes (default 1000,10000,30000,100000)
#   PMS, MACS  the restart run (default 16, 10000)
#   SWITCHES   the emulated switch run (default 1000)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${TARGET_DIR:-${CARGO_TARGET_DIR:-$root/target}}/release
out=${1:-${TARGET_DIR:-${CARGO_TARGET_DIR:-$root/target}}/bench/scale}
sizes=${SIZES:-1000,10000,30000,100000}
pms=${PMS:-16}
macs=${MACS:-10000}
switches=${SWITCHES:-1000}

for b in iris-testbed iris-controller; do
  [[ -x $bin/$b ]] || {
    echo "scale.sh: $bin/$b is missing; run cargo build --release -p iris-testbed -p iris-controller" >&2
    exit 1
  }
done
# One socket per emulated switch on each side, plus the controller's own.
need=$((2 * switches + 256))
if (($(ulimit -n) < need)); then
  ulimit -n "$need" || {
    echo "scale.sh: cannot raise the open-file limit to $need (ulimit -Hn is $(ulimit -Hn))" >&2
    exit 1
  }
fi
bash "$here/install-peers.sh"
cache=${IRIS_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/iris-bench}

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
  echo "open files: $(ulimit -n)"
} >"$out/machine.txt"

# run TAG ARGS...: one measurement, its JSON tagged with what it is for.
run() {
  local tag=$1
  shift
  echo "load before $tag: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/machine.txt"
  echo "scale.sh: $tag: iris-testbed bench scale $*" >&2
  local json
  json=$("$bin/iris-testbed" bench scale "$@" --iris-controller "$bin/iris-controller" --json)
  printf '{"tag":"%s",%s\n' "$tag" "${json#\{}" >>"$results"
}

run registry registry --sizes "$sizes"
run registry-alone registry --sizes "$sizes" --without-switches
run restart restart --pms "$pms" --macs "$macs"
run switches-unknown switches --switches "$switches" --dpids unknown
run switches-known switches --switches "$switches" --dpids known

"$cache/venv/bin/python" "$here/scale_report.py" "$results" "$out/memory.svg" >"$out/tables.md"
echo "scale.sh: $(wc -l <"$results") runs; figures in $out/tables.md, plot $out/memory.svg" >&2
