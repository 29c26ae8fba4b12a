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
#   INTERVAL_MS  between two pings to one moving VM (default 10; ping may
#                keep a slower pace, which the results report)
#   QUIET_LOAD   wait (up to 10 min) until the 1-minute load average is
#                below this before each run (default: do not wait)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=testbed/bench/common.sh
source "$here/common.sh"
bench_setup moves "${1:-}"
pms_list=${PMS:-2 8 32}
moves_list=${MOVES:-1 10 100}
interval_ms=${INTERVAL_MS:-10}

bench_require_root
bash "$here/install-peers.sh" python

bench_machine "ovs: $(ovs-vswitchd --version | head -1)"

state() {
  echo "load $(cut -d' ' -f1-3 /proc/loadavg), available $(awk '/MemAvailable/ {printf "%.0f MiB", $2 / 1024}' /proc/meminfo)"
}

for pms in $pms_list; do
  for moves in $moves_list; do
    bench_wait_quiet
    echo "$(state) before: bench moves --pms $pms --moves $moves" | tee -a "$out/machine.txt" >&2
    start=$(date +%s)
    bench_record "" "$bin/iris-testbed" bench moves --json --pms "$pms" --moves "$moves" \
      --interval-ms "$interval_ms" --controller "$bin/iris-controller" ||
      echo "moves.sh: bench moves --pms $pms --moves $moves failed; continuing" | tee -a "$out/machine.txt" >&2
    echo "$(state) after $(($(date +%s) - start)) s" | tee -a "$out/machine.txt" >&2
  done
done

"$cache/venv/bin/python" "$here/moves_report.py" "$results" "$out/moves.svg" >"$out/tables.md"
echo "moves.sh: $(wc -l <"$results") runs; figures in $out/tables.md, plot $out/moves.svg" >&2
