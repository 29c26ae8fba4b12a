#!/usr/bin/env bash
# Simultaneous live migrations: `iris-testbed bench moves` for 1, 10 and
# 100 VMs moving at once in meshes of 2, 8 and 32 PMs, with the real
# iris-controller. Needs root (namespaces, one OVS per PM). Writes, under
# OUT (default $TARGET_DIR/bench/moves):
#   results.jsonl   one `iris-testbed bench moves --json` object per run
#   machine.txt     the host, its load and free memory around every run, the date
#   tables.md       the figures as Markdown tables (moves_report.py)
#   moves.svg       first RARP to last move confirmed against mesh size, one
#                   line per number of moves
# `make bench` runs it after building the release binaries. Environment:
#   PMS, MOVES   the matrix (default "2 8 32" and "1 10 100")
#   QUIET_LOAD   wait (up to 10 min) until the 1-minute load average is
#                below this before each run (default: do not wait)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${TARGET_DIR:-${CARGO_TARGET_DIR:-$root/target}}/release
out=${1:-${TARGET_DIR:-${CARGO_TARGET_DIR:-$root/target}}/bench/moves}
pms_list=${PMS:-2 8 32}
moves_list=${MOVES:-1 10 100}

for b in iris-testbed iris-controller; do
  [[ -x $bin/$b ]] || {
    echo "moves.sh: $bin/$b is missing; run cargo build --release -p iris-testbed -p iris-controller" >&2
    exit 1
  }
done
[[ $(id -u) -eq 0 ]] || {
  echo "moves.sh: the testbed needs root; run it as root (e.g. under sudo)" >&2
  exit 1
}
bash "$here/install-peers.sh" python
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
  echo "ovs: $(ovs-vswitchd --version | head -1)"
} >"$out/machine.txt"

wait_quiet() {
  [[ -n ${QUIET_LOAD:-} ]] || return 0
  local waited=0
  while awk -v max="$QUIET_LOAD" '{exit !($1 >= max)}' /proc/loadavg && ((waited < 600)); do
    sleep 10
    waited=$((waited + 10))
  done
}

state() {
  echo "load $(cut -d' ' -f1-3 /proc/loadavg), available $(awk '/MemAvailable/ {printf "%.0f MiB", $2 / 1024}' /proc/meminfo)"
}

for pms in $pms_list; do
  for moves in $moves_list; do
    wait_quiet
    echo "$(state) before: bench moves --pms $pms --moves $moves" | tee -a "$out/machine.txt" >&2
    start=$(date +%s)
    if json=$("$bin/iris-testbed" bench moves --json --pms "$pms" --moves "$moves" \
      --controller "$bin/iris-controller"); then
      echo "$json" >>"$results"
    else
      echo "moves.sh: bench moves --pms $pms --moves $moves failed; continuing" | tee -a "$out/machine.txt" >&2
    fi
    echo "$(state) after $(($(date +%s) - start)) s" | tee -a "$out/machine.txt" >&2
  done
done

"$cache/venv/bin/python" "$here/moves_report.py" "$results" "$out/moves.svg" >"$out/tables.md"
echo "moves.sh: $(wc -l <"$results") runs; figures in $out/tables.md, plot $out/moves.svg" >&2
