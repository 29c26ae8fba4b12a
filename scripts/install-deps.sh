#!/bin/sh
# Installs what the Iris testbed runs: iproute2 (namespaces, veths, bridges),
# ethtool (offloads), ping, sysctl, and Open vSwitch (ovsdb-server,
# ovs-vswitchd and the ovs-* clients). Debian/Ubuntu; run as root.
#
# The testbed starts its own private OVS instances with the userspace
# datapath; the system-wide Open vSwitch service the package starts is not
# used and is not needed, and the openvswitch kernel module is not required.
set -eu

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps.sh: run me as root (e.g. sudo $0)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
    iproute2 ethtool iputils-ping procps \
    openvswitch-switch openvswitch-common

echo "done; now run: iris-testbed check"
