//! The [`Testbed`]: owner of every namespace, link and process of one emulated
//! inter-cloud, and the place where they are torn down in order.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::gateway_node::{IaasGateway, IaasGatewaySpec};
use crate::host;
use crate::iaas::{ComputeNode, ComputeSpec};
use crate::naming::{NodeName, Prefix};
use crate::netns::Netns;
use crate::ovs::OvsInstance;
use crate::pm::{Pm, PmSpec};
use crate::process::{terminate_pids, Process, STOP_GRACE};
use crate::state::{remove_tree, StateDir, DEFAULT_STATE_ROOT};
use crate::underlay::{Underlay, UnderlaySpec};
use crate::vm::{Host, Plug, Vm, VmSpec};
use crate::wan::{Wan, WanSpec};

/// Handle of an underlay network in its [`Testbed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnderlayId(usize);

/// Handle of a PM in its [`Testbed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PmId(pub(crate) usize);

/// Handle of a VM in its [`Testbed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VmId(usize);

/// Handle of a compute node of an IaaS DC in its [`Testbed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ComputeId(pub(crate) usize);

/// Handle of an IaaS DC's gateway node in its [`Testbed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GatewayId(usize);

/// A WAN of one testbed, see [`Testbed::add_wan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WanId(usize);

/// Handle of a process started with [`Testbed::spawn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessId(usize);

/// Where [`Testbed::spawn`] runs a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// The host's root namespace (e.g. a controller).
    Root,
    Underlay(UnderlayId),
    Pm(PmId),
    Vm(VmId),
    Compute(ComputeId),
    Gateway(GatewayId),
}

impl From<ComputeId> for Node {
    fn from(id: ComputeId) -> Self {
        Self::Compute(id)
    }
}

impl From<GatewayId> for Node {
    fn from(id: GatewayId) -> Self {
        Self::Gateway(id)
    }
}

impl From<UnderlayId> for Node {
    fn from(id: UnderlayId) -> Self {
        Self::Underlay(id)
    }
}

impl From<PmId> for Node {
    fn from(id: PmId) -> Self {
        Self::Pm(id)
    }
}

impl From<VmId> for Node {
    fn from(id: VmId) -> Self {
        Self::Vm(id)
    }
}

/// How to build testbeds.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory holding one state directory per live testbed.
    pub state_root: PathBuf,
    /// How long a daemon may take to come up.
    pub ready_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            state_root: PathBuf::from(DEFAULT_STATE_ROOT),
            ready_timeout: Duration::from_secs(10),
        }
    }
}

/// What a testbed has created, for checking that teardown removed it all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    pub prefix: Prefix,
    pub state_dir: PathBuf,
    pub namespaces: Vec<String>,
    /// Pids of the daemons and spawned processes.
    pub pids: Vec<u32>,
    /// Interfaces the testbed placed in the root namespace.
    pub root_links: Vec<String>,
}

/// One emulated inter-cloud. Everything it creates is torn down, in order,
/// by [`Testbed::teardown`] or when it is dropped (also while unwinding from a
/// panic): processes, then OVS daemons, then links, then namespaces, then the
/// state directory.
///
/// Nodes are addressed by the handles the `add_*` methods return; a handle
/// used with another testbed, or after its node was removed, panics like an
/// out-of-bounds index.
#[derive(Debug)]
pub struct Testbed {
    config: Config,
    processes: Vec<Option<Process>>,
    vms: Vec<Option<Vm>>,
    pms: Vec<Option<Pm>>,
    underlays: Vec<Underlay>,
    computes: Vec<ComputeNode>,
    gateways: Vec<IaasGateway>,
    wans: Vec<Wan>,
    names: HashSet<NodeName>,
    state: StateDir,
    torn_down: bool,
}

impl Testbed {
    /// A testbed with the default [`Config`]. `label` (e.g. the test's name)
    /// is recorded in the state directory for humans.
    ///
    /// Fails with [`Error::Host`] when the host cannot run testbeds (not root,
    /// tools missing).
    pub fn new(label: &str) -> Result<Self> {
        Self::with_config(label, Config::default())
    }

    pub fn with_config(label: &str, config: Config) -> Result<Self> {
        host::require_host()?;
        let state = StateDir::reserve(&config.state_root, label)?;
        Ok(Self {
            config,
            processes: Vec::new(),
            vms: Vec::new(),
            pms: Vec::new(),
            underlays: Vec::new(),
            computes: Vec::new(),
            gateways: Vec::new(),
            wans: Vec::new(),
            names: HashSet::new(),
            state,
            torn_down: false,
        })
    }

    /// The prefix carried by every namespace and interface of this testbed.
    pub fn prefix(&self) -> &Prefix {
        self.state.prefix()
    }

    /// This testbed's state directory (OVS databases, sockets, logs).
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// Copies every log below the state directory (the daemons', and
    /// those of processes started in it) to `$TMPDIR/iris-testbed-<prefix>-logs/`
    /// and returns that directory, `None` when there was no log. Teardown
    /// does this by itself only while panicking; a caller that fails
    /// without panicking keeps the logs with this.
    pub fn keep_logs(&self) -> Result<Option<PathBuf>> {
        crate::state::preserve_logs(self.state_dir(), self.prefix().as_str())
    }

    /// Claims a node name and creates the node's namespace.
    fn new_node(&mut self, name: &str) -> Result<(NodeName, Netns)> {
        let name = NodeName::new(name)?;
        if self.names.contains(&name) {
            return Err(Error::Usage(format!("a node named {name} already exists")));
        }
        let netns = Netns::create(self.prefix().netns(&name))?;
        self.names.insert(name.clone());
        Ok((name, netns))
    }

    /// Runs `build` with a fresh node's name and namespace. If it fails, the
    /// name is freed again (the namespace went with `build`'s guards), so a
    /// caller may retry under the same name.
    fn with_new_node<T>(
        &mut self,
        name: &str,
        build: impl FnOnce(&Self, NodeName, Netns) -> Result<T>,
    ) -> Result<T> {
        let (node, netns) = self.new_node(name)?;
        build(self, node.clone(), netns).inspect_err(|_| {
            if let Err(e) = self.forget_node(&node) {
                eprintln!("iris-testbed {}: {e}", self.prefix());
            }
        })
    }

    pub fn add_underlay(&mut self, spec: UnderlaySpec) -> Result<UnderlayId> {
        let underlay = self.with_new_node(&spec.name, |_, name, netns| {
            Underlay::create(name, netns, &spec)
        })?;
        self.underlays.push(underlay);
        Ok(UnderlayId(self.underlays.len() - 1))
    }

    /// Builds an emulated WAN: a relay namespace `spec.name` between two
    /// site namespaces `<name>a` and `<name>b`, or between the two gateway
    /// nodes of [`WanSpec::between`], whose `br-wan`s take the cables (see
    /// [`crate::wan`]).
    pub fn add_wan(&mut self, spec: WanSpec) -> Result<WanId> {
        let mut names = vec![NodeName::new(&spec.name)?];
        if spec.sites.is_none() {
            names.push(NodeName::new(&format!("{}a", spec.name))?);
            names.push(NodeName::new(&format!("{}b", spec.name))?);
        }
        if let Some(taken) = names.iter().find(|n| self.names.contains(*n)) {
            return Err(Error::Usage(format!("a node named {taken} already exists")));
        }
        let wan = match spec.sites {
            None => Wan::create(self.prefix(), &spec, None)?,
            Some([a, b]) => {
                if a == b {
                    return Err(Error::Usage(format!(
                        "WAN {}: both ends are the same node",
                        spec.name
                    )));
                }
                let ends = [self.wan_end(a)?, self.wan_end(b)?];
                let wan = Wan::create(self.prefix(), &spec, Some(ends.map(|(netns, _)| netns)))?;
                for (i, (_, ovs)) in ends.iter().enumerate() {
                    crate::gateway_node::plug_wan(ovs, &wan.site(i).iface.name)?;
                }
                wan
            }
        };
        self.names.extend(names);
        self.wans.push(wan);
        Ok(WanId(self.wans.len() - 1))
    }

    /// The namespace and OVS instance of a gateway node, the end of a WAN.
    fn wan_end(&self, node: Node) -> Result<(&Netns, &OvsInstance)> {
        match node {
            Node::Pm(id) => match self.pms.get(id.0).and_then(Option::as_ref) {
                Some(pm) if pm.wan_addr().is_some() => Ok((pm.netns(), pm.ovs())),
                Some(pm) => Err(Error::Usage(format!(
                    "PM {} has no WAN uplink (PmSpec::wan_uplink)",
                    pm.name()
                ))),
                None => Err(Error::Usage("a WAN's end is a removed PM".into())),
            },
            Node::Gateway(id) => {
                let gw = self.gateway(id);
                Ok((gw.netns(), gw.ovs()))
            }
            other => Err(Error::Usage(format!(
                "a WAN's end must be a gateway node, not {other:?}"
            ))),
        }
    }

    /// Adds a compute node of an IaaS DC, its trunk cabled to the DC LAN
    /// `spec.lan` (see [`crate::iaas`]).
    pub fn add_compute(&mut self, spec: ComputeSpec) -> Result<ComputeId> {
        let node = self.add_lan_node(&spec.name, spec.lan, |prefix, name, netns, ovs, lan| {
            ComputeNode::create(prefix, name, netns, ovs, lan, &spec)
        })?;
        self.computes.push(node);
        Ok(ComputeId(self.computes.len() - 1))
    }

    /// Adds an IaaS DC's gateway node, its trunk cabled to the DC LAN
    /// `spec.lan` (see [`crate::gateway_node`]).
    pub fn add_iaas_gateway(&mut self, spec: IaasGatewaySpec) -> Result<GatewayId> {
        let gw = self.add_lan_node(&spec.name, spec.lan, |prefix, name, netns, ovs, lan| {
            IaasGateway::create(prefix, name, netns, ovs, lan, &spec)
        })?;
        self.gateways.push(gw);
        Ok(GatewayId(self.gateways.len() - 1))
    }

    /// Builds a node with its own OVS instance on the LAN `lan`.
    fn add_lan_node<T>(
        &mut self,
        name: &str,
        lan: UnderlayId,
        build: impl FnOnce(&Prefix, NodeName, Netns, OvsInstance, &Underlay) -> Result<T>,
    ) -> Result<T> {
        if lan.0 >= self.underlays.len() {
            return Err(Error::Usage(format!("node {name}: no such LAN")));
        }
        self.with_new_node(name, |tb, name, netns| {
            let ovs = tb.start_ovs(&name, &netns, &[])?;
            build(tb.state.prefix(), name, netns, ovs, &tb.underlays[lan.0])
        })
    }

    /// Starts a node's private OVS instance in its namespace.
    fn start_ovs(
        &self,
        name: &NodeName,
        netns: &Netns,
        other_config: &[(String, String)],
    ) -> Result<OvsInstance> {
        let dir = self.state.node_dir(name.as_str())?;
        OvsInstance::start_with(
            name.as_str(),
            netns,
            dir,
            self.config.ready_timeout,
            other_config,
        )
    }

    pub fn compute(&self, id: ComputeId) -> &ComputeNode {
        &self.computes[id.0]
    }

    pub fn gateway(&self, id: GatewayId) -> &IaasGateway {
        &self.gateways[id.0]
    }

    /// A host to plug a VM into; an error if it was removed.
    fn plug(&self, host: Host) -> Result<Plug<'_>> {
        plug(&self.pms, &self.computes, host)
    }

    pub fn wan(&self, id: WanId) -> &Wan {
        &self.wans[id.0]
    }

    pub fn wan_mut(&mut self, id: WanId) -> &mut Wan {
        &mut self.wans[id.0]
    }

    pub fn add_pm(&mut self, spec: PmSpec) -> Result<PmId> {
        if spec.underlay.0 >= self.underlays.len() {
            return Err(Error::Usage(format!("PM {}: no such underlay", spec.name)));
        }
        let addr = self.underlays[spec.underlay.0].lease(spec.underlay_ip)?;
        let built = self.with_new_node(&spec.name, |tb, name, netns| {
            let ovs = tb.start_ovs(&name, &netns, &spec.other_config)?;
            let underlay = &tb.underlays[spec.underlay.0];
            Pm::create(tb.state.prefix(), name, netns, ovs, underlay, addr, &spec)
        });
        match built {
            Ok(pm) => {
                self.pms.push(Some(pm));
                Ok(PmId(self.pms.len() - 1))
            }
            Err(e) => {
                self.underlays[spec.underlay.0].release(addr);
                Err(e)
            }
        }
    }

    pub fn add_vm(&mut self, spec: VmSpec) -> Result<VmId> {
        spec.validate()?;
        if let Err(e) = self.plug(spec.host) {
            return Err(Error::Usage(format!("VM {}: {e}", spec.name)));
        }
        let vm = self.with_new_node(&spec.name, |tb, name, netns| {
            let mut vm = Vm::create(tb.state.prefix(), name, netns, &spec)?;
            vm.attach(tb.state.prefix(), tb.plug(spec.host)?)?;
            Ok(vm)
        })?;
        self.vms.push(Some(vm));
        Ok(VmId(self.vms.len() - 1))
    }

    /// Moves a VM to another PM or compute node with the same MAC,
    /// addresses and VI: its port is removed from the old host and
    /// recreated on the new one (a PM's `br-int`, or the Linux bridge of
    /// the VM's VLAN on a compute node; a VM on a VLAN keeps it on a PM,
    /// tagged there). Processes in the VM keep running. Nothing announces
    /// the move; that is the job of the scenario ([`Vm::announce`]) or of
    /// the controller's flows.
    pub fn move_vm(&mut self, vm: VmId, to: impl Into<Host>) -> Result<()> {
        let to = to.into();
        let from = self.vm(vm).host;
        let prefix = self.state.prefix().clone();
        let target = plug(&self.pms, &self.computes, to)?;
        let source = plug(&self.pms, &self.computes, from)?;
        let moving = self.vms[vm.0].as_mut().expect("VmId of a removed VM");
        moving.check_host(target)?;
        moving.detach(source)?;
        moving.attach(&prefix, target)?;
        moving.host = to;
        Ok(())
    }

    /// Moves several VMs at once, as [`Testbed::move_vm`] moves one: each
    /// on a thread of its own, so no move waits for another's re-plugging.
    /// Returns when each VM's port was plugged into its new PM, in the
    /// order of `moves`. A VM whose move failed stays assigned to its old
    /// PM (it may be unplugged); the first error is returned.
    pub fn move_vms(&mut self, moves: &[(VmId, PmId)]) -> Result<Vec<Instant>> {
        let mut targets: Vec<Option<PmId>> = vec![None; self.vms.len()];
        for &(vm, to) in moves {
            if self.vms.get(vm.0).and_then(Option::as_ref).is_none()
                || self.pms.get(to.0).and_then(Option::as_ref).is_none()
            {
                return Err(Error::Usage("move_vms: no such VM or PM".into()));
            }
            if targets[vm.0].replace(to).is_some() {
                return Err(Error::Usage(format!(
                    "move_vms: {} is moved twice",
                    self.vm(vm).name()
                )));
            }
        }
        let prefix = self.state.prefix().clone();
        let (pms, computes) = (&self.pms, &self.computes);
        let mut done: Vec<(usize, Result<Instant>)> = std::thread::scope(|s| {
            let threads: Vec<_> = self
                .vms
                .iter_mut()
                .enumerate()
                .filter_map(|(i, vm)| Some((i, vm.as_mut()?, targets[i]?)))
                .map(|(i, vm, to)| {
                    let prefix = &prefix;
                    s.spawn(move || {
                        let moved = plug(pms, computes, vm.host)
                            .and_then(|from| vm.detach(from))
                            .and_then(|()| plug(pms, computes, Host::Pm(to)))
                            .and_then(|target| vm.attach(prefix, target))
                            .map(|()| {
                                vm.host = Host::Pm(to);
                                Instant::now()
                            });
                        (i, moved)
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| {
                    t.join().unwrap_or_else(|_| {
                        (
                            usize::MAX,
                            Err(Error::Usage("a move thread panicked".into())),
                        )
                    })
                })
                .collect()
        });
        let order: HashMap<usize, usize> = moves
            .iter()
            .enumerate()
            .map(|(n, (vm, _))| (vm.0, n))
            .collect();
        done.sort_by_key(|(i, _)| order.get(i).copied().unwrap_or(usize::MAX));
        done.into_iter().map(|(_, r)| r).collect()
    }

    /// Removes a VM: unplugs it from its PM and deletes its namespace, after
    /// stopping any process still inside.
    pub fn remove_vm(&mut self, vm: VmId) -> Result<()> {
        let mut removed = self.vms[vm.0].take().expect("VmId of a removed VM");
        removed.detach(self.plug(removed.host)?)?;
        terminate_pids(&removed.netns.pids()?, STOP_GRACE)?;
        removed.netns.delete()?;
        self.forget_node(&removed.name)
    }

    /// Frees a removed node's name and its state subdirectory, so that a new
    /// node may take the name.
    fn forget_node(&mut self, name: &NodeName) -> Result<()> {
        remove_tree(&self.state.path().join(name.as_str()))?;
        self.names.remove(name);
        Ok(())
    }

    /// Removes a PM that no VM is attached to: stops its OVS, deletes its
    /// links and namespace, and frees its underlay address.
    pub fn remove_pm(&mut self, pm: PmId) -> Result<()> {
        if let Some(vm) = self.vms.iter().flatten().find(|vm| vm.host == Host::Pm(pm)) {
            return Err(Error::Usage(format!(
                "PM {} still has VM {}; move or remove it first",
                self.pm(pm).name(),
                vm.name()
            )));
        }
        let mut removed = self.pms[pm.0].take().expect("PmId of a removed PM");
        removed.ovs.stop()?;
        for link in &mut removed.links {
            link.delete()?;
        }
        terminate_pids(&removed.netns.pids()?, STOP_GRACE)?;
        removed.netns.delete()?;
        self.underlays[removed.underlay.0].release(removed.underlay_addr());
        self.forget_node(&removed.name)
    }

    /// Starts `argv` in `node`'s namespace as a process the testbed stops at
    /// teardown. Its output goes to `<state dir>/<node>/<name>.log` (or
    /// `<state dir>/<name>.log` for the root namespace).
    pub fn spawn(&mut self, node: impl Into<Node>, name: &str, argv: &[&str]) -> Result<ProcessId> {
        // The name becomes a file name next to the OVS files.
        let valid = (1..=32).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            && !name.starts_with("ovs");
        if !valid {
            return Err(Error::Usage(format!(
                "process name {name:?} must be 1 to 32 characters of [a-z0-9_-], not starting with \"ovs\""
            )));
        }
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| Error::Usage("empty command line".into()))?;
        let node = node.into();
        let (mut command, dir) = match node {
            Node::Root => (
                std::process::Command::new(program),
                self.state.path().to_path_buf(),
            ),
            Node::Underlay(id) => {
                let u = &self.underlays[id.0];
                (u.netns().command(program), self.node_dir(u.name())?)
            }
            Node::Pm(id) => {
                let pm = self.pm(id);
                (pm.netns().command(program), pm.ovs().dir().to_path_buf())
            }
            Node::Vm(id) => {
                let vm = self.vm(id);
                (vm.netns().command(program), self.node_dir(vm.name())?)
            }
            Node::Compute(id) => {
                let node = self.compute(id);
                (
                    node.netns().command(program),
                    node.ovs().dir().to_path_buf(),
                )
            }
            Node::Gateway(id) => {
                let gw = self.gateway(id);
                (gw.netns().command(program), gw.ovs().dir().to_path_buf())
            }
        };
        command.args(args);
        let log = dir.join(format!("{name}.log"));
        let process = Process::spawn(name, command, Some(&log))?;
        self.processes.push(Some(process));
        Ok(ProcessId(self.processes.len() - 1))
    }

    /// The state subdirectory of a node, created on first use.
    fn node_dir(&self, node: &str) -> Result<PathBuf> {
        let dir = self.state.path().join(node);
        if dir.is_dir() {
            Ok(dir)
        } else {
            self.state.node_dir(node)
        }
    }

    pub fn process(&mut self, id: ProcessId) -> &mut Process {
        self.processes[id.0]
            .as_mut()
            .expect("ProcessId of a stopped process")
    }

    /// Stops a spawned process now (SIGTERM, then SIGKILL after a grace period).
    pub fn stop_process(&mut self, id: ProcessId) -> Result<std::process::ExitStatus> {
        let mut process = self.processes[id.0]
            .take()
            .expect("ProcessId of a stopped process");
        process.stop(STOP_GRACE)
    }

    pub fn underlay(&self, id: UnderlayId) -> &Underlay {
        &self.underlays[id.0]
    }

    pub fn pm(&self, id: PmId) -> &Pm {
        self.pms[id.0].as_ref().expect("PmId of a removed PM")
    }

    pub fn vm(&self, id: VmId) -> &Vm {
        self.vms[id.0].as_ref().expect("VmId of a removed VM")
    }

    /// The live PMs with their handles.
    pub fn pms(&self) -> impl Iterator<Item = (PmId, &Pm)> {
        self.pms
            .iter()
            .enumerate()
            .filter_map(|(i, pm)| pm.as_ref().map(|pm| (PmId(i), pm)))
    }

    /// The live VMs with their handles.
    pub fn vms(&self) -> impl Iterator<Item = (VmId, &Vm)> {
        self.vms
            .iter()
            .enumerate()
            .filter_map(|(i, vm)| vm.as_ref().map(|vm| (VmId(i), vm)))
    }

    pub fn inventory(&self) -> Inventory {
        let pms = self.pms.iter().flatten();
        let vms = self.vms.iter().flatten();
        let mut namespaces: Vec<String> = self
            .underlays
            .iter()
            .map(|u| u.netns().name().to_owned())
            .chain(pms.clone().map(|pm| pm.netns().name().to_owned()))
            .chain(vms.map(|vm| vm.netns().name().to_owned()))
            .chain(self.computes.iter().map(|c| c.netns().name().to_owned()))
            .chain(self.gateways.iter().map(|g| g.netns().name().to_owned()))
            .collect();
        namespaces.sort();
        let pids = self
            .processes
            .iter()
            .flatten()
            .map(Process::pid)
            .chain(pms.clone().flat_map(|pm| pm.ovs().pids()))
            .chain(self.computes.iter().flat_map(|c| c.ovs().pids()))
            .chain(self.gateways.iter().flat_map(|g| g.ovs().pids()))
            .collect();
        let root_links = pms
            .flat_map(|pm| pm.links.iter())
            .flat_map(|link| [link.a(), link.b()])
            .filter(|end| end.place == crate::link::Place::Root)
            .map(|end| end.name.clone())
            .collect();
        Inventory {
            prefix: self.prefix().clone(),
            state_dir: self.state_dir().to_path_buf(),
            namespaces,
            pids,
            root_links,
        }
    }

    /// Tears everything down now and reports every step that failed.
    pub fn teardown(mut self) -> Result<()> {
        self.teardown_in_order()
    }

    fn teardown_in_order(&mut self) -> Result<()> {
        if self.torn_down {
            return Ok(());
        }
        let mut failures = Vec::new();
        let mut note = |step: Result<()>| {
            if let Err(e) = step {
                failures.push(e);
            }
        };
        for process in self.processes.iter_mut().flatten() {
            note(process.stop(STOP_GRACE).map(drop));
        }
        for pm in self.pms.iter_mut().flatten() {
            note(pm.ovs.stop());
        }
        for node in &mut self.computes {
            note(node.ovs.stop());
        }
        for gw in &mut self.gateways {
            note(gw.ovs.stop());
        }
        for wan in &mut self.wans {
            for e in wan.delete() {
                note(Err(e));
            }
        }
        for vm in self.vms.iter_mut().flatten() {
            note(vm.delete_links());
        }
        let node_links = self
            .pms
            .iter_mut()
            .flatten()
            .flat_map(|pm| pm.links.iter_mut())
            .chain(self.computes.iter_mut().flat_map(|c| c.links.iter_mut()))
            .chain(self.gateways.iter_mut().flat_map(|g| g.links.iter_mut()));
        for link in node_links {
            note(link.delete());
        }
        let namespaces = self
            .vms
            .iter_mut()
            .flatten()
            .map(|vm| &mut vm.netns)
            .chain(self.pms.iter_mut().flatten().map(|pm| &mut pm.netns))
            .chain(self.computes.iter_mut().map(|c| &mut c.netns))
            .chain(self.gateways.iter_mut().map(|g| &mut g.netns))
            .chain(self.underlays.iter_mut().map(|u| &mut u.netns));
        for netns in namespaces {
            // Whatever a scenario started in a namespace on its own would keep
            // the namespace alive after deletion.
            note(
                netns
                    .pids()
                    .and_then(|pids| terminate_pids(&pids, STOP_GRACE)),
            );
            note(netns.delete());
        }
        note(self.state.remove());
        if failures.is_empty() {
            self.torn_down = true;
            Ok(())
        } else {
            Err(Error::Teardown(failures))
        }
    }
}

/// `host` among `pms` and `computes`; an error if it was removed.
fn plug<'a>(pms: &'a [Option<Pm>], computes: &'a [ComputeNode], host: Host) -> Result<Plug<'a>> {
    match host {
        Host::Pm(id) => pms
            .get(id.0)
            .and_then(Option::as_ref)
            .map(Plug::Pm)
            .ok_or_else(|| Error::Usage("no such PM".into())),
        Host::Compute(id) => computes
            .get(id.0)
            .map(Plug::Compute)
            .ok_or_else(|| Error::Usage("no such compute node".into())),
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if let Err(e) = self.teardown_in_order() {
            eprintln!("iris-testbed {}: {e}", self.prefix());
        }
    }
}
