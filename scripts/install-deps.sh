#!/usr/bin/env bash
# Installs the system packages Iris builds and tests with, only when missing.
# Idempotent and quiet when everything is present; run as root on Debian 12.
set -euo pipefail

# command -> Debian package that provides it
declare -A NEED=(
  [ovs-vswitchd]=openvswitch-switch
  [ovsdb-server]=openvswitch-switch
  [ovs-ofctl]=openvswitch-common
  [ovs-testcontroller]=openvswitch-testcontroller
  [mn]=mininet
  [iperf3]=iperf3
  [ethtool]=ethtool
  [tcpdump]=tcpdump
  [ip]=iproute2
  [ping]=iputils-ping
  [ps]=procps
  [killall]=psmisc
)

missing=()
for cmd in "${!NEED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing ${missing[*]}; run this script (or make) as root so apt-get can install them" >&2
    exit 1
  fi
  mapfile -t pkgs < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "install-deps: installing ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The packages' own services are not used: every Iris test and the testbed
  # start private ovsdb-server/ovs-vswitchd instances with their own run dirs.
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  # openvswitch-testcontroller's service would hold port 6653, Iris's.
  if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    systemctl disable --now openvswitch-testcontroller >/dev/null 2>&1 || true
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: cargo not found; install a Rust toolchain (1.80 or newer) with rustup" >&2
  exit 1
fi
for comp in rustfmt clippy; do
  if ! cargo "${comp/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$comp" >/dev/null 2>&1 || {
      echo "install-deps: cargo $comp is missing; run 'rustup component add $comp'" >&2
      exit 1
    }
  fi
done
