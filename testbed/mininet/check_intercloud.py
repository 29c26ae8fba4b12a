#!/usr/bin/python3
"""Brings the iris_intercloud topology up with iris-controller and checks
it: the IaaS guest on VLAN 100 (i1) and the HaaS guest (h1) reach each
other across both data centers; the IaaS guest on VLAN 200 with an address
of the same subnet (i2) does not. Exit code 0 when both hold.

    sudo testbed/mininet/check_intercloud.py --controller target/debug/iris-controller

Mininet's own switches (the IaaS DC's and the underlay) need an Open vSwitch
in the root namespace; this starts a private one in a directory of its own
(OVS_RUNDIR), so the host's system Open vSwitch, if any, is left alone.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mininet.log import setLogLevel  # noqa: E402
from mininet.net import Mininet  # noqa: E402

import iris_intercloud  # noqa: E402

SCHEMA = '/usr/share/openvswitch/vswitch.ovsschema'


def start_root_ovs(d):
    "A private ovsdb-server and ovs-vswitchd in the root namespace."
    for var in ('OVS_RUNDIR', 'OVS_DBDIR', 'OVS_LOGDIR', 'OVS_SYSCONFDIR'):
        os.environ[var] = d
    subprocess.run(['ovsdb-tool', 'create', d + '/conf.db', SCHEMA], check=True)
    subprocess.run(['ovsdb-server', d + '/conf.db', '--remote=punix:%s/db.sock' % d,
                    '--pidfile=%s/ovsdb-server.pid' % d,
                    '--unixctl=%s/ovsdb-server.ctl' % d,
                    '--log-file=%s/ovsdb-server.log' % d, '--detach'],
                   check=True, stderr=subprocess.DEVNULL)
    subprocess.run(['ovs-vsctl', '--timeout=10', '--no-wait', 'init'], check=True)
    subprocess.run(['ovs-vswitchd', 'unix:%s/db.sock' % d,
                    '--pidfile=%s/ovs-vswitchd.pid' % d,
                    '--unixctl=%s/ovs-vswitchd.ctl' % d,
                    '--log-file=%s/ovs-vswitchd.log' % d, '--detach'],
                   check=True, stderr=subprocess.DEVNULL)


def stop_root_ovs(d):
    for daemon in ('ovs-vswitchd', 'ovsdb-server'):
        try:
            with open('%s/%s.pid' % (d, daemon)) as f:
                os.kill(int(f.read().strip()), 15)
        except (OSError, ValueError):
            pass


def received(out):
    "Replies in a ping's summary line."
    for line in out.splitlines():
        if 'packets transmitted' in line:
            return int(line.split(',')[1].split()[0])
    return 0


def check(net):
    h1, i1, i2 = net.get('h1', 'i1', 'i2')
    start = time.time()
    # The first frames into a fresh tunnel go while OVS resolves the
    # remote endpoint (docs/testbed.md, finding 6): wait for a first reply.
    while time.time() - start < 20:
        if received(i1.cmd('ping -c1 -W1 10.1.0.1')):
            break
    first = time.time() - start
    across = received(i1.cmd('ping -c3 -i0.2 -W1 10.1.0.1'))
    back = received(h1.cmd('ping -c3 -i0.2 -W1 10.1.0.11'))
    apart = received(i2.cmd('ping -c3 -i0.2 -W1 10.1.0.1'))
    print('first reply i1 -> h1 after %.1f s' % first)
    print('i1 -> h1: %d/3' % across)
    print('h1 -> i1: %d/3' % back)
    print('i2 (VLAN 200) -> h1: %d/3' % apart)
    return across == 3 and back == 3 and apart == 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--controller', default='iris-controller',
                        help='the iris-controller binary')
    args = parser.parse_args()
    setLogLevel('warning')
    d = tempfile.mkdtemp(prefix='iris-mn-ovs-')
    net = None
    ok = False
    try:
        start_root_ovs(d)
        net = Mininet(topo=iris_intercloud.IrisIntercloud(), controller=None,
                      build=False)
        net.addController('c0', controller=iris_intercloud.IrisController,
                          binary=args.controller)
        net.build()
        net.start()
        ok = check(net)
        if not ok:
            log = os.path.join(net.controllers[0].dir, 'controller.log')
            with open(log) as f:
                print(f.read()[-4000:])
    finally:
        if net is not None:
            net.stop()
        stop_root_ovs(d)
        shutil.rmtree(d, ignore_errors=True)
    print('ok' if ok else 'FAILED')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
