"""The Iris inter-cloud as a Mininet custom topology: a HaaS DC run by the
Iris controller and an IaaS DC built as CloudStack's KVM agent builds one,
joined by a WAN link between their gateways.

    mn --custom testbed/mininet/iris_intercloud.py --topo iris_intercloud \
       --controller iris,binary=target/debug/iris-controller

HaaS DC:  h1 -- pm1 ==underlay (ul1)== gwh --WAN-- gwa -- lan1 (802.1Q) -- i1 (VLAN 100)
                                                                       \- i2 (VLAN 200)

Iris manages one bridge per host, `br-int`, through that host's own OVSDB,
and tunnels between hosts with GRE over an underlay, which Open vSwitch's
userspace datapath sends only out of an OVS bridge holding the underlay
address (docs/testbed.md, finding 2). Mininet's OVSSwitch puts every switch
into one ovs-vswitchd with one database, so the HaaS hosts here are
`IrisHost` switches instead: each runs its own ovsdb-server and
ovs-vswitchd inside its own namespace (`br-ul` with its underlay address,
`br-int` for the controller), as the testbed's PMs do. The IaaS switches are
plain standalone OVS bridges with VLAN access ports (`VlanBridge`): this
kernel has no 802.1Q, so the tagging is OVS's.

No `iris-gateway` runs here: the WAN link is an access port of VLAN 100 on
the IaaS gateway switch and, on the HaaS gateway host, a `br-int` port of
VI 1, which is what the gateway's per-VI WAN port will be. Link delay with
TCLink needs the kernel's netem, absent on kernels without sch_netem (see
testbed/mininet/README.md for the relay instead).

Everything uses the userspace datapath (`datapath_type=netdev`): no
openvswitch kernel module is needed.
"""

import os
import shutil
import tempfile
import time

from mininet.node import Controller, Host, OVSBridge, Switch
from mininet.topo import Topo

VI = 1
GRE_KEY = 1001
#: The HaaS hosts' underlay subnet.
UNDERLAY = '192.168.77.%d/24'
#: Where the IrisHost switches keep their OVS files, found by the
#: controller class.
IRIS_HOSTS = {}


def offloads_off(node, intf):
    """The userspace datapath reads frames with AF_PACKET and cannot finish
    partial checksums: TCP dies with offloads on (docs/testbed.md,
    finding 3)."""
    node.cmd('ethtool -K %s tx off tso off gso off >/dev/null 2>&1' % intf)


class GuestHost(Host):
    "A guest with offloads off on its NICs."

    def config(self, **params):
        result = Host.config(self, **params)
        for intf in self.intfList():
            offloads_off(self, intf)
        return result


class VlanBridge(OVSBridge):
    """A standalone OVS bridge whose ports may be VLAN access ports: a link
    with `params` `vlan=N` on this side is `tag=N`, the others are trunks."""

    def __init__(self, name, **params):
        params.setdefault('datapath', 'user')
        OVSBridge.__init__(self, name, **params)

    def intfOpts(self, intf):
        opts = OVSBridge.intfOpts(self, intf)
        vlan = intf.params.get('vlan')
        if vlan:
            opts += ' -- set Port %s tag=%d' % (intf, vlan)
        return opts

    def start(self, controllers):
        OVSBridge.start(self, controllers)
        for intf in self.intfList():
            if intf.name != 'lo':
                offloads_off(self, intf)


class IrisHost(Switch):
    """A host of the Iris controller: its own ovsdb-server and ovs-vswitchd
    in its own namespace, `br-ul` holding the underlay link (a link with
    `underlay=True` on this side) and the underlay address, `br-int` for the
    controller with every other link as a port of VI `vi` (the link's
    `vi` param, default VI)."""

    def __init__(self, name, underlay_ip=None, role='compute', **params):
        params['inNamespace'] = True
        Switch.__init__(self, name, **params)
        self.underlay_ip = underlay_ip
        self.role = role
        self.rundir = tempfile.mkdtemp(prefix='iris-mn-%s-' % name)
        IRIS_HOSTS[name] = self
        env = ' '.join('%s=%s' % (v, self.rundir) for v in
                       ('OVS_RUNDIR', 'OVS_DBDIR', 'OVS_LOGDIR',
                        'OVS_SYSCONFDIR'))
        self.cmd('export ' + env)
        self.start_ovs()

    def path(self, name):
        return os.path.join(self.rundir, name)

    def start_ovs(self):
        "Starts this host's daemons, before the controller looks for them."
        d = self.rundir
        self.cmd('ovsdb-tool create %s/conf.db '
                 '/usr/share/openvswitch/vswitch.ovsschema' % d)
        self.cmd('ovsdb-server %s/conf.db --remote=punix:%s/db.sock '
                 '--pidfile=%s/ovsdb-server.pid --unixctl=%s/ovsdb-server.ctl '
                 '--log-file=%s/ovsdb-server.log --detach' % ((d,) * 5))
        self.cmd('ovs-vsctl --timeout=10 --no-wait init')
        self.cmd('ovs-vswitchd unix:%s/db.sock --pidfile=%s/ovs-vswitchd.pid '
                 '--unixctl=%s/ovs-vswitchd.ctl --log-file=%s/ovs-vswitchd.log '
                 '--detach' % ((d,) * 4))
        self.vsctl('set Open_vSwitch . external_ids:system-id=%s' % self.name)

    def vsctl(self, args):
        return self.cmd('ovs-vsctl --timeout=10 ' + args)

    def start(self, controllers):
        "Plugs the links in; the controller builds the rest of br-int."
        self.vsctl('--may-exist add-br br-int -- set Bridge br-int '
                   'datapath_type=netdev fail_mode=secure protocols=OpenFlow13')
        for intf in self.intfList():
            if intf.name == 'lo':
                continue
            offloads_off(self, intf)
            if intf.params.get('underlay'):
                self.vsctl('--may-exist add-br br-ul -- set Bridge br-ul '
                           'datapath_type=netdev fail_mode=standalone '
                           '-- add-port br-ul %s' % intf)
                offloads_off(self, 'br-ul')
                self.cmd('ip addr add %s dev br-ul' % self.underlay_ip)
                self.cmd('ip link set br-ul up')
            else:
                vi = intf.params.get('vi', VI)
                self.vsctl('add-port br-int %s -- set Interface %s '
                           'external_ids:iris-vi=%d' % (intf, intf, vi))

    def connected(self):
        out = self.vsctl('--columns=is_connected find Controller')
        return 'true' in out

    def stop(self, deleteIntfs=True):
        for daemon in ('ovs-vswitchd', 'ovsdb-server'):
            self.cmd('kill $(cat %s) 2>/dev/null' % self.path(daemon + '.pid'))
        Switch.stop(self, deleteIntfs)
        shutil.rmtree(self.rundir, ignore_errors=True)


class IrisController(Controller):
    """`iris-controller` with a configuration written for the IrisHost
    switches of this topology: OVSDB on each host's unix socket, OpenFlow on
    a unix socket each host's run directory links to (vswitchd accepts unix
    targets only there, docs/testbed.md, finding 4)."""

    def __init__(self, name, binary='iris-controller', **params):
        self.binary = binary
        # Made at start: Mininet may build a controller it never starts.
        self.dir = None
        Controller.__init__(self, name, command=binary, port=6653, **params)

    def checkListening(self):
        "Listens on a unix socket of its own: no TCP port to collide on."

    def config(self):
        self.dir = tempfile.mkdtemp(prefix='iris-mn-controller-')
        listener = os.path.join(self.dir, 'of.sock')
        hosts = []
        gateways = []
        for name, host in sorted(IRIS_HOSTS.items()):
            link = host.path('iris-controller.sock')
            if os.path.lexists(link):
                os.remove(link)
            os.symlink(listener, link)
            hosts.append('[[host]]\nname = "%s"\nunderlay_ip = "%s"\n'
                         'role = "%s"\novsdb = "unix:%s"\ncontroller = "unix:%s"\n'
                         % (name, host.underlay_ip.split('/')[0], host.role,
                            host.path('db.sock'), link))
            if host.role == 'gateway':
                gateways.append('"%s"' % name)
        # A unix socket only root on this machine reaches: plain OpenFlow
        # is allowed explicitly, as the controller asks.
        text = ('listen = "unix:%s"\nplain_openflow = true\napi = "127.0.0.1:0"\nstore = "%s"\n\n'
                '[bridge]\nname = "br-int"\ndatapath_type = "netdev"\n\n'
                % (listener, os.path.join(self.dir, 'store'))
                + '\n'.join(hosts)
                + '\n[[vi]]\nid = %d\nname = "mininet"\ngre_key = %d\n'
                  'gateways = [%s]\n' % (VI, GRE_KEY, ', '.join(gateways)))
        path = os.path.join(self.dir, 'controller.toml')
        with open(path, 'w') as f:
            f.write(text)
        return path

    def start(self):
        path = self.config()
        log = os.path.join(self.dir, 'controller.log')
        self.cmd('RUST_LOG=info %s run --config %s >%s 2>&1 &'
                 % (self.binary, path, log))
        # The controller answers once it has read its store and bound.
        for _ in range(100):
            if os.path.exists(os.path.join(self.dir, 'of.sock')):
                break
            time.sleep(0.05)

    def stop(self, *args, **kwargs):
        self.cmd('kill %% 2>/dev/null; wait')
        Controller.stop(self, *args, **kwargs)
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)


class IrisIntercloud(Topo):
    "The HaaS DC and one IaaS DC, joined by a WAN link between gateways."

    def build(self):
        # HaaS DC: a compute host with a guest, the gateway host, and the
        # underlay switch between them.
        # Mininet wants a datapath id for every switch; IrisHosts' bridges
        # take theirs from the controller.
        pm1 = self.addSwitch('pm1', cls=IrisHost, underlay_ip=UNDERLAY % 11,
                             dpid='1')
        gwh = self.addSwitch('gwh', cls=IrisHost, underlay_ip=UNDERLAY % 2,
                             role='gateway', dpid='2')
        ul1 = self.addSwitch('ul1', cls=VlanBridge, dpid='a1')
        for host in (pm1, gwh):
            self.addLink(host, ul1, params1={'underlay': True})
        h1 = self.addHost('h1', cls=GuestHost, ip='10.1.0.1/24',
                          mac='02:00:00:00:01:01')
        self.addLink(h1, pm1)

        # IaaS DC: the LAN carries VLANs 100 and 200; i2 has i1's subnet on
        # another VLAN and must stay apart.
        lan1 = self.addSwitch('lan1', cls=VlanBridge, dpid='b1')
        for name, vlan, n in (('i1', 100, 11), ('i2', 200, 12)):
            guest = self.addHost(name, cls=GuestHost, ip='10.1.0.%d/24' % n,
                                 mac='02:00:00:00:02:%02x' % n)
            self.addLink(guest, lan1, params2={'vlan': vlan})
        gwa = self.addSwitch('gwa1', cls=VlanBridge, dpid='b2')
        self.addLink(lan1, gwa)
        # The WAN: VLAN 100 of the IaaS DC is VI 1 in the HaaS DC.
        self.addLink(gwa, gwh, params1={'vlan': 100}, params2={'vi': VI})


topos = {'iris_intercloud': IrisIntercloud}
controllers = {'iris': IrisController}
