# What every benchmark script in this folder does the same way: where the
# release binaries and the results live, the machine description, waiting
# for a quiet machine, and recording one run's JSON. Sourced, not run:
#   here=$(cd "$(dirname "$0")" && pwd)
#   source "$here/common.sh"
#   bench_setup NAME "${1:-}"
# sets root, bin, out (default $TARGET_DIR/bench/NAME), cache and results
# (truncated), after checking that the release binaries exist.

bench_setup() {
  bench_name=$1
  root=$(cd "$here/../.." && pwd)
  local target=${TARGET_DIR:-${CARGO_TARGET_DIR:-$root/target}}
  bin=$target/release
  out=${2:-$target/bench/$bench_name}
  cache=${IRIS_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/iris-bench}
  local b
  for b in iris-testbed iris-controller; do
    [[ -x $bin/$b ]] || {
      echo "$bench_name.sh: $bin/$b is missing; run cargo build --release -p iris-testbed -p iris-controller" >&2
      exit 1
    }
  done
  mkdir -p "$out"
  results=$out/results.jsonl
  : >"$results"
}

# The testbed's namespaces and OVS instances need root.
bench_require_root() {
  [[ $(id -u) -eq 0 ]] || {
    echo "$bench_name.sh: the testbed needs root; run it as root (e.g. under sudo)" >&2
    exit 1
  }
}

# bench_machine LINE...: machine.txt with the host, the date and the
# controller's version, then LINEs (what else this benchmark depends on).
bench_machine() {
  {
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: $(uname -srm)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
    echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "iris-controller: $("$bin/iris-controller" --version)"
    printf '%s\n' "$@"
  } >"$out/machine.txt"
}

# With QUIET_LOAD set, waits (up to 10 min) until the 1-minute load average
# is below it.
bench_wait_quiet() {
  [[ -n ${QUIET_LOAD:-} ]] || return 0
  local waited=0
  while awk -v max="$QUIET_LOAD" '{exit !($1 >= max)}' /proc/loadavg && ((waited < 600)); do
    sleep 10
    waited=$((waited + 10))
  done
}

# bench_record TAG COMMAND...: runs COMMAND, which prints one JSON object,
# and appends it to results.jsonl with "tag": TAG first (as it is when TAG
# is empty). Fails as COMMAND does, recording nothing.
bench_record() {
  local tag=$1
  shift
  local json
  json=$("$@") || return
  if [[ -n $tag ]]; then
    printf '{"tag":"%s",%s\n' "$tag" "${json#\{}" >>"$results"
  else
    echo "$json" >>"$results"
  fi
}
