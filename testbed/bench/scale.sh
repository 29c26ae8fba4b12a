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
# shellcheck source=testbed/bench/common.sh
source "$here/common.sh"
bench_setup scale "${1:-}"
sizes=${SIZES:-1000,10000,30000,100000}
pms=${PMS:-16}
macs=${MACS:-10000}
switches=${SWITCHES:-1000}

# One socket per emulated switch on each side, plus the controller's own.
need=$((2 * switches + 256))
if (($(ulimit -n) < need)); then
  ulimit -n "$need" || {
    echo "scale.sh: cannot raise the open-file limit to $need (ulimit -Hn is $(ulimit -Hn))" >&2
    exit 1
  }
fi
bash "$here/install-peers.sh"

bench_machine \
  "open vswitch: $(ovs-vswitchd --version | head -1)" \
  "open files: $(ulimit -n)"

# run TAG ARGS...: one measurement, its JSON tagged with what it is for.
run() {
  local tag=$1
  shift
  echo "load before $tag: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/machine.txt"
  echo "scale.sh: $tag: iris-testbed bench scale $*" >&2
  bench_record "$tag" "$bin/iris-testbed" bench scale "$@" --iris-controller "$bin/iris-controller" --json
}

run registry registry --sizes "$sizes"
run registry-alone registry --sizes "$sizes" --without-switches
run restart restart --pms "$pms" --macs "$macs"
run switches-unknown switches --switches "$switches" --dpids unknown
run switches-known switches --switches "$switches" --dpids known

"$cache/venv/bin/python" "$here/scale_report.py" "$results" "$out/memory.svg" >"$out/tables.md"
echo "scale.sh: $(wc -l <"$results") runs; figures in $out/tables.md, plot $out/memory.svg" >&2
