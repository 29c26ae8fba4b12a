#!/usr/bin/env bash
# Installs the controllers Iris is benchmarked against, only when missing:
#   ovs-testcontroller   Debian package openvswitch-testcontroller (needs root)
#   python               a venv with os-ken and Faucet from PyPI (and matplotlib
#                        for the plots), under $IRIS_BENCH_CACHE (default
#                        ${XDG_CACHE_HOME:-$HOME/.cache}/iris-bench/venv)
# Usage: install-peers.sh [ovs-testcontroller] [python] ...   (no argument: all)
# Idempotent; `iris-testbed bench controller` runs it (from its own copy) when
# a peer is missing, `make bench` before the benchmarks.
set -euo pipefail

# The versions the published figures were measured with.
OS_KEN_VERSION=3.1.0
FAUCET_VERSION=1.10.12
MATPLOTLIB_VERSION=3.11.2

cache=${IRIS_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/iris-bench}
venv=$cache/venv

install_testcontroller() {
  command -v ovs-testcontroller >/dev/null 2>&1 && return
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-peers: ovs-testcontroller is missing; run this as root so apt-get can install openvswitch-testcontroller" >&2
    exit 1
  fi
  echo "install-peers: installing openvswitch-testcontroller"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends openvswitch-testcontroller >/dev/null
  # The package's service listens on 6653, the port Iris and the testbed
  # use; the benchmark starts its own instance on a free port instead.
  if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    systemctl disable --now openvswitch-testcontroller >/dev/null 2>&1 || true
  fi
}

install_python() {
  local want=("os-ken==$OS_KEN_VERSION" "faucet==$FAUCET_VERSION" "matplotlib==$MATPLOTLIB_VERSION")
  if [[ -x $venv/bin/python ]] &&
    "$venv/bin/python" - "${want[@]}" <<'EOF' 2>/dev/null; then
import sys
from importlib.metadata import version
for spec in sys.argv[1:]:
    name, _, wanted = spec.partition("==")
    if version(name) != wanted:
        sys.exit(1)
EOF
    return
  fi
  local python
  python=$(command -v python3 || true)
  if [[ -z $python ]] || ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
    echo "install-peers: need python3 with the venv module (Debian: apt-get install python3-venv)" >&2
    exit 1
  fi
  echo "install-peers: installing ${want[*]} into $venv"
  mkdir -p "$cache"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${want[@]}"
}

targets=("$@")
((${#targets[@]})) || targets=(ovs-testcontroller python)
for t in "${targets[@]}"; do
  case $t in
    ovs-testcontroller) install_testcontroller ;;
    python | os-ken | faucet) install_python ;;
    *)
      echo "install-peers: unknown peer $t (ovs-testcontroller, python)" >&2
      exit 2
      ;;
  esac
done
