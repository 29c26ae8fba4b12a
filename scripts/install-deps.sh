#!/usr/bin/env bash
# Installs the system packages Iris builds and tests with, only when missing.
# Idempotent and quiet when everything is present; run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> Debian packages that provide it
declare -A NEED=(
  # Every crate links with the system C toolchain; mininet does not pull it in.
  [cc]="build-essential pkg-config"
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
  # Real guests (testbed/src/guest): QEMU, and xz to unpack the guest's
  # kernel (the testbed writes the initramfs's cpio itself).
  [qemu-system-x86_64]=qemu-system-x86
  [xz]=xz-utils
  # The libvirt compute driver (haas-api/src/compute/libvirt.rs): a private
  # libvirtd per PM with its QEMU driver, and virsh to look at it by hand.
  [libvirtd]=libvirt-daemon
  [virsh]=libvirt-clients
  # The SSH server each `netns` node runs in its namespace with the
  # operator's key (haas-api/src/compute/netns/sshd.rs), and ssh-keygen
  # for its host key.
  [sshd]=openssh-server
  [ssh-keygen]=openssh-client
  # The etcd store (controller/src/store/etcd.rs): the etcd-client crate
  # compiles etcd's .proto files with protoc at build time, and the
  # testbed and the store's tests start a three-member etcd cluster.
  [protoc]=protobuf-compiler
  [etcd]=etcd-server
  [etcdctl]=etcd-client
  # The OVN peer of `iris-testbed bench migration --peer ovn`: NB/SB
  # ovsdb-servers and ovn-northd, and an ovn-controller per chassis.
  [ovn-northd]=ovn-central
  [ovn-nbctl]=ovn-common
  [ovn-controller]=ovn-host
  # Schemathesis (haas-api/tests/schemathesis.rs) runs in a virtualenv of
  # its own, made below.
  [python3]=python3
)

# Packages wanted for files rather than commands: the guests' kernel and its
# modules, a busybox that runs without a libc in the initramfs, dropbear
# (copied with its libraries into it, the SSH server of libvirt nodes), the headers
# and pkg-config file the `virt` crate links libvirt with, and protobuf's own
# .proto files (google/protobuf/descriptor.proto), which etcd's import and
# protoc looks for in /usr/include.
FILES_FROM=(linux-image-amd64 busybox-static libvirt-dev libprotobuf-dev python3-venv dropbear-bin)

missing=()
for cmd in "${!NEED[@]}"; do
  # shellcheck disable=SC2206 # package names split on spaces, nothing else
  command -v "$cmd" >/dev/null 2>&1 || missing+=(${NEED[$cmd]})
done
for pkg in "${FILES_FROM[@]}"; do
  [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) == "install ok installed" ]] ||
    missing+=("$pkg")
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
    # etcd-server's service would hold 2379/2380; every cluster Iris runs
    # has its own data directories and ports.
    systemctl disable --now etcd >/dev/null 2>&1 || true
    # ovn-central's and ovn-host's services would run a system-wide OVN
    # (its databases, northd, a controller on the system OVS); the OVN
    # peer bench starts its own in its run directory.
    systemctl disable --now ovn-central ovn-northd ovn-ovsdb-server-nb \
      ovn-ovsdb-server-sb ovn-host ovn-controller >/dev/null 2>&1 || true
    # openssh-server's service would listen on port 22 of every address of
    # the machine, which had no SSH server before; the nodes' own sshds
    # listen in their namespaces only.
    if [[ " ${pkgs[*]} " == *" openssh-server "* ]]; then
      systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true
    fi
  fi
fi

# libvirt's QEMU driver looks its compiled-in user up before it reads
# qemu.conf (where the libvirtds Iris starts say root), and fails without
# it. Debian's libvirt-daemon-system makes that user, and with it a system
# libvirtd that Iris does not use, so the user is made here instead.
if ! getent passwd libvirt-qemu >/dev/null; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: the system user libvirt-qemu is missing; run this script (or make) as root to add it" >&2
    exit 1
  fi
  echo "install-deps: adding the system user libvirt-qemu"
  useradd --system --user-group --no-create-home --home-dir /var/lib/libvirt \
    --shell /usr/sbin/nologin libvirt-qemu
fi

# Schemathesis is not packaged by Debian: it comes from PyPI into a
# virtualenv at a fixed path, which the broker's test runs it from, so that
# nothing of the system's Python changes. The virtualenv is made from
# Debian's own Python (/usr/bin/python3), not whichever python3 comes first
# on PATH (a pyenv shim, say), so that what the test runs is what a Debian
# machine has; a virtualenv made from another interpreter is made again.
schemathesis_venv=/opt/iris-schemathesis
if [[ ! -x $schemathesis_venv/bin/schemathesis ]] ||
  ! grep -qx 'home = /usr/bin' "$schemathesis_venv/pyvenv.cfg" 2>/dev/null; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: schemathesis is missing or not on Debian's Python; run this script (or make) as root to install it in $schemathesis_venv" >&2
    exit 1
  fi
  echo "install-deps: installing schemathesis in $schemathesis_venv (Debian's Python)"
  rm -rf "$schemathesis_venv"
  /usr/bin/python3 -m venv "$schemathesis_venv"
  "$schemathesis_venv/bin/pip" install -q 'schemathesis>=4.32,<5'
fi

# Rust comes from rustup, not apt: Debian 12's rustc is 1.63, and the
# workspace needs the version its Cargo.toml names.
need_rust=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' Cargo.toml | head -n 1)
rustup_cmd="curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component rustfmt --component clippy"
have_rust=$(rustc --version 2>/dev/null | sed -n 's/^rustc \([0-9][0-9.]*\).*/\1/p' || true)

# Whether version $1 is at least version $2 (both MAJOR.MINOR[.PATCH]).
at_least() {
  local IFS=.
  local -a have=($1) need=($2)
  local i
  for i in 0 1 2; do
    if ((${have[i]:-0} != ${need[i]:-0})); then
      ((${have[i]:-0} > ${need[i]:-0}))
      return
    fi
  done
}

if [[ -z $have_rust ]] || ! at_least "$have_rust" "$need_rust"; then
  if [[ -z $have_rust ]]; then
    echo "install-deps: no Rust toolchain found; Iris needs Rust $need_rust or newer." >&2
  else
    echo "install-deps: rustc $have_rust is too old; Iris needs Rust $need_rust or newer." >&2
  fi
  if command -v rustup >/dev/null 2>&1; then
    echo "install-deps: update it with:  rustup update stable && rustup default stable" >&2
  else
    echo "install-deps: install it with rustup (not apt), then put it on PATH:" >&2
    echo "  $rustup_cmd" >&2
    echo "  . \"\$HOME/.cargo/env\"" >&2
  fi
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
