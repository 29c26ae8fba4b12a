//! The encrypted WAN: the gateways' GRE carried inside WireGuard, in the
//! gateway's own process (docs/gateway.md, "The encrypted WAN").
//!
//! ```text
//!  br-gw / br-int: GRE ports, local_ip = inner address, remote_ip = peer's inner
//!        │ (OVS routes GRE by its own table and sends it out of the bridge
//!        ▼  that owns local_ip)
//!  br-wg (standalone, the inner address on its local port) ── tap ── this task
//!                                                                     │ Noise (boringtun)
//!                                                     UDP wan_ip:51820 ▼
//! ```
//!
//! The task reads Ethernet frames off the tap: ARP requests for a peer's
//! inner address are answered here (WireGuard carries IP only), IPv4 to a
//! peer's inner address is encrypted with that peer's session and sent by
//! UDP to its endpoint. Datagrams from a peer's endpoint are decrypted and
//! written to the tap, addressed to the bridge, if they come from that
//! peer's inner address (cryptokey routing); anything else is counted.

use crate::bridge::{BridgePlan, BridgeStatus};
use crate::config::encryption::{key_text, Keys};
use crate::config::{EncryptedPeer, Encryption};
use boringtun::noise::errors::WireGuardError;
use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The Ethernet address the task answers ARP with for every peer: a
/// locally administered one, since the peers are behind one tap.
pub const PEER_MAC: [u8; 6] = [0x02, 0x49, 0x52, 0x49, 0x53, 0x01];
/// How long a peer may leave our handshakes unanswered before the status
/// calls it a problem (WireGuard itself retries every 5 s).
const SILENCE: Duration = Duration::from_secs(12);
/// WireGuard drops a session this old (REJECT_AFTER_TIME).
const SESSION_LIFE: Duration = Duration::from_secs(180);
/// Keepalive, so that both ends know the other is there while idle.
const KEEPALIVE_S: u16 = 10;
const BUF: usize = 65_536;
/// Packets the tap and the socket hold for the task while it waits for a
/// core: on a busy machine it is not always running when a burst comes.
const QUEUE: usize = 4096;
/// Packets read in a row from one side before the other gets its turn.
const BATCH: usize = 64;

/// How often the task checks the bridge's local port (its MAC, address
/// and MTU) when the bridge's keeper reports nothing.
const CHECK_PORT: Duration = Duration::from_secs(1);

/// What the task needs: the configuration's `[wan.encryption]`, where to
/// listen, and the tunnel's MTU.
#[derive(Debug, Clone)]
pub struct WireguardPlan {
    pub encryption: Encryption,
    pub listen: SocketAddrV4,
    /// The MTU of the tap and of the bridge's local port: what the tunnel
    /// carries whole.
    pub mtu: u16,
}

/// What `/v1/status` shows under `datapath.encryption`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct WireguardStatus {
    pub listen: String,
    /// This gateway's public key, as its peers must hold it.
    pub public_key: String,
    /// How many times new keys were put in place while it ran.
    pub rekeys: u64,
    pub address: String,
    pub bridge: String,
    pub tap: String,
    pub mtu: u16,
    /// Whether the tap, the bridge and the socket are set up.
    pub ready: bool,
    /// What stops the tunnel from being set up, if anything.
    pub problem: Option<String>,
    pub peers: Vec<PeerStatus>,
    /// Datagrams from an address that is no peer's endpoint.
    pub unknown_sources: u64,
    /// Frames on the tap to no peer (another address, not IPv4 or ARP).
    pub unroutable_frames: u64,
}

/// One peer's end of the tunnel.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PeerStatus {
    pub name: String,
    /// The peer's public key this gateway holds.
    pub public_key: String,
    /// A session under the keys before the last reload still carries
    /// traffic while the one under the new keys is not up.
    pub old_session: bool,
    pub endpoint: String,
    pub inner_ip: Option<Ipv4Addr>,
    /// `up` (a session younger than 180 s), `handshaking` or `down`.
    pub state: String,
    pub last_handshake_s: Option<u64>,
    pub handshakes_sent: u64,
    pub tx_packets: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    /// Datagrams from the peer's endpoint that were refused, by reason
    /// (boringtun's error names, and `wrong_inner_source`).
    pub refused: BTreeMap<String, u64>,
    pub problem: Option<String>,
}

struct Peer {
    config: EncryptedPeer,
    tunn: Tunn,
    /// `tunn`'s number: the upper 24 bits of the receiver index the
    /// peer's messages carry back.
    index: u32,
    /// The session under the keys before the last reload, with its
    /// number, kept while it is alive and `tunn` has none.
    retiring: Option<(Tunn, u32)>,
    endpoint: SocketAddrV4,
    status: PeerStatus,
    /// When we first sent a handshake no session has answered yet.
    unanswered_since: Option<Instant>,
}

/// The bridge the task needs, for the bridge keeper ([`crate::bridge::keep`])
/// to create and keep: `bridge` with the tap as its port and its local
/// port's MAC pinned to [`bridge_mac`].
pub fn bridge_plan(e: &Encryption) -> BridgePlan {
    BridgePlan::tunnel(e.bridge.clone(), e.tap.clone(), bridge_mac(e.address))
}

/// Sets up the tap, the bridge's local port (once `bridge`, the keeper of
/// [`bridge_plan`], reports the bridge and the tap on it) and the socket,
/// retrying while they cannot be, then carries packets until `shutdown`,
/// putting the local port's address back whenever the bridge comes back.
pub async fn run(
    plan: WireguardPlan,
    mut keys: watch::Receiver<Keys>,
    mut bridge: watch::Receiver<BridgeStatus>,
    status: watch::Sender<WireguardStatus>,
    shutdown: CancellationToken,
) {
    let e = &plan.encryption;
    let mut st = WireguardStatus {
        listen: plan.listen.to_string(),
        public_key: key_text(&e.private_key.public()),
        address: format!("{}/{}", e.address, e.prefix_len),
        bridge: e.bridge.clone(),
        tap: e.tap.clone(),
        mtu: plan.mtu,
        ..WireguardStatus::default()
    };
    let mut delay = Duration::from_millis(100);
    let (tap, socket, bridge_mac) = loop {
        match set_up(&plan, &mut bridge).await {
            Ok(parts) => break parts,
            Err(problem) => {
                if st.problem.as_deref() != Some(problem.as_str()) {
                    warn!("encrypted WAN: {problem}; trying again");
                }
                st.problem = Some(problem);
                status.send_replace(st.clone());
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    };
    st.problem = None;
    st.ready = true;
    info!(
        "encrypted WAN up: udp {} inner {} on {} through {}",
        plan.listen, st.address, e.bridge, e.tap
    );
    // The keys as they stand now: a reload before this point is taken
    // here whole.
    let mut held = keys.borrow_and_update().clone();
    let e = &e.with_keys(&held);
    st.public_key = key_text(&e.private_key.public());
    let secret = StaticSecret::from(e.private_key.bytes());
    let mut peers: Vec<Peer> = e
        .peers
        .iter()
        .enumerate()
        .map(|(i, p)| (session_index(0, i, e.peers.len()), p))
        .map(|(index, p)| Peer {
            config: p.clone(),
            tunn: session(&secret, p.public_key, index),
            index,
            retiring: None,
            endpoint: p.endpoint,
            status: PeerStatus {
                name: p.name.clone(),
                public_key: key_text(&p.public_key),
                endpoint: p.endpoint.to_string(),
                inner_ip: Some(p.inner_ip),
                state: "down".into(),
                ..PeerStatus::default()
            },
            unanswered_since: None,
        })
        .collect();
    let mut dp = Dataplane {
        tap,
        socket,
        bridge_mac,
        out: vec![0; BUF],
        frame: vec![0; BUF],
    };
    // Start every handshake now, so the status tells at once whether the
    // peers answer, before any traffic needs them.
    for p in &mut peers {
        dp.initiate(p).await;
    }
    publish(&mut st, &mut peers, &status);
    let (mut generation, mut keys_open) = (0u32, true);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut last_publish = Instant::now();
    let (mut last_check, mut check_port, mut keeper) = (Instant::now(), false, true);
    let mut tap_buf = vec![0u8; BUF];
    let mut udp_buf = vec![0u8; BUF];
    loop {
        tokio::select! {
            // Once woken, take what else is waiting without going back
            // to the scheduler: under load that is most of the packets.
            r = dp.tap.recv(&mut tap_buf) => match r {
                Ok(n) => {
                    dp.on_tap_frame(&tap_buf[..n], &mut peers, &mut st).await;
                    for _ in 0..BATCH {
                        let Ok(n) = dp.tap.try_recv(&mut tap_buf) else { break };
                        dp.on_tap_frame(&tap_buf[..n], &mut peers, &mut st).await;
                    }
                }
                Err(e) => warn!("encrypted WAN: reading the tap: {e}"),
            },
            r = dp.socket.recv_from(&mut udp_buf) => match r {
                Ok((n, from)) => {
                    dp.on_datagram(&udp_buf[..n], from, &mut peers, &mut st).await;
                    for _ in 0..BATCH {
                        let Ok((n, from)) = dp.socket.try_recv_from(&mut udp_buf) else { break };
                        dp.on_datagram(&udp_buf[..n], from, &mut peers, &mut st).await;
                    }
                }
                Err(e) => warn!("encrypted WAN: reading the socket: {e}"),
            },
            // The keeper re-created the bridge or its port: the new local
            // port needs the address (and the MTU) again.
            r = bridge.changed(), if keeper => match r {
                Ok(()) => check_port = true,
                Err(_) => keeper = false,
            },
            r = keys.changed(), if keys_open => match r {
                Ok(()) => {
                    let new = keys.borrow_and_update().clone();
                    generation = generation.wrapping_add(1);
                    let changed = rekey(&mut peers, &held, &new, generation);
                    held = new;
                    st.public_key = key_text(&held.private_key.public());
                    st.rekeys += 1;
                    info!(
                        "encrypted WAN: new keys in place for {} peer(s); this gateway's public \
                         key is {}",
                        changed.len(),
                        st.public_key
                    );
                    for i in changed {
                        dp.initiate(&mut peers[i]).await;
                    }
                    publish(&mut st, &mut peers, &status);
                }
                Err(_) => keys_open = false,
            },
            _ = tick.tick() => {
                for p in &mut peers {
                    dp.timers(p).await;
                    retire(p);
                }
                let mut changed = false;
                if check_port || last_check.elapsed() >= CHECK_PORT {
                    let problem = local_port(&plan, &bridge.borrow()).err();
                    if problem != st.problem {
                        match &problem {
                            Some(p) => warn!("encrypted WAN: {p}"),
                            None => info!("encrypted WAN: bridge {} as planned", e.bridge),
                        }
                        changed = true;
                    }
                    // Until the port is right, look again at every tick.
                    check_port = problem.is_some();
                    st.ready = problem.is_none();
                    st.problem = problem;
                    last_check = Instant::now();
                }
                if changed || last_publish.elapsed() >= Duration::from_secs(1) {
                    publish(&mut st, &mut peers, &status);
                    last_publish = Instant::now();
                }
            }
            () = shutdown.cancelled() => return,
        }
    }
}

/// A session with the peer whose public key is `public`, numbered `index`.
fn session(secret: &StaticSecret, public: [u8; 32], index: u32) -> Tunn {
    Tunn::new(
        secret.clone(),
        PublicKey::from(public),
        None,
        Some(KEEPALIVE_S),
        index,
        None,
    )
}

/// The number of peer `i`'s session under the keys of `generation`: the
/// sessions of two generations differ, so a message's receiver index says
/// which one it is for (boringtun keeps 24 bits of it).
fn session_index(generation: u32, i: usize, peers: usize) -> u32 {
    let (i, n) = (
        u32::try_from(i).unwrap_or(0),
        u32::try_from(peers).unwrap_or(1).max(1),
    );
    generation.wrapping_mul(n).wrapping_add(i) & 0x00ff_ffff
}

/// Whether `tunn` has a session that still carries data.
fn has_session(tunn: &Tunn) -> bool {
    tunn.time_since_last_handshake()
        .is_some_and(|d| d < SESSION_LIFE)
}

/// Puts `new` in place of `old`: every peer whose session the change
/// concerns (all of them for a new private key) gets a new session, and
/// keeps the one it had, if alive, until the new one is up: a peer that
/// takes its new keys later goes on talking on it meanwhile. Returns the
/// peers changed.
fn rekey(peers: &mut [Peer], old: &Keys, new: &Keys, generation: u32) -> Vec<usize> {
    let secret = StaticSecret::from(new.private_key.bytes());
    let n = peers.len();
    let mut changed = Vec::new();
    for (i, p) in peers.iter_mut().enumerate() {
        let public = new.peers.get(i).copied().unwrap_or(p.config.public_key);
        if new.private_key == old.private_key && public == p.config.public_key {
            continue;
        }
        p.config.public_key = public;
        p.status.public_key = key_text(&public);
        let index = session_index(generation, i, n);
        let previous = std::mem::replace(&mut p.tunn, session(&secret, public, index));
        let previous_index = std::mem::replace(&mut p.index, index);
        // A session older than the last reload, if that one never came up,
        // is the one still worth keeping.
        if has_session(&previous) {
            p.retiring = Some((previous, previous_index));
        }
        p.unanswered_since = None;
        // Authentication failures under the old keys say nothing of the
        // new ones.
        p.status.refused.clear();
        changed.push(i);
    }
    changed
}

/// Drops the session under the old keys once the new one is up, or once
/// it has expired.
fn retire(p: &mut Peer) {
    let done = match &p.retiring {
        Some((old, _)) => has_session(&p.tunn) || !has_session(old),
        None => false,
    };
    if done {
        p.retiring = None;
        info!(
            "encrypted WAN to {}: the session under the old keys is retired",
            p.config.name
        );
    }
}

/// Which of a peer's sessions a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Current,
    Retiring,
}

impl Peer {
    fn session_mut(&mut self, which: Which) -> &mut Tunn {
        match (which, &mut self.retiring) {
            (Which::Retiring, Some((old, _))) => old,
            _ => &mut self.tunn,
        }
    }

    /// The session a datagram from the peer is for: a response, a cookie
    /// or data names ours by its receiver index; an initiation goes to
    /// the current keys first.
    fn addressed(&self, datagram: &[u8]) -> Which {
        let Some((_, old_index)) = &self.retiring else {
            return Which::Current;
        };
        match datagram {
            [2..=4, _, _, _, a, b, c, d, ..] => {
                if u32::from_le_bytes([*a, *b, *c, *d]) >> 8 == *old_index {
                    Which::Retiring
                } else {
                    Which::Current
                }
            }
            _ => Which::Current,
        }
    }

    /// The session to send on: the current one, unless only the old one
    /// is up.
    fn sending(&self) -> Which {
        match &self.retiring {
            Some(_) if !has_session(&self.tunn) => Which::Retiring,
            _ => Which::Current,
        }
    }
}

/// [`run`] on a thread of its own inside the network namespace `netns`
/// (`setns` moves only the calling thread, so the rest of the gateway stays
/// where it is). The returned task ends when that thread does.
pub fn run_in(
    netns: std::path::PathBuf,
    plan: WireguardPlan,
    keys: watch::Receiver<Keys>,
    bridge: watch::Receiver<BridgeStatus>,
    status: watch::Sender<WireguardStatus>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("wireguard".into())
        .spawn(move || {
            let entered = std::fs::File::open(&netns)
                .map_err(|e| e.to_string())
                .and_then(|f| {
                    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(|e| e.to_string())
                });
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match (entered, runtime) {
                (Ok(()), Ok(rt)) => rt.block_on(run(plan, keys, bridge, status, shutdown)),
                (Err(e), _) => {
                    let problem =
                        format!("cannot enter network namespace {}: {e}", netns.display());
                    warn!("encrypted WAN: {problem}");
                    status.send_modify(|s| s.problem = Some(problem));
                }
                (_, Err(e)) => warn!("encrypted WAN: cannot start its runtime: {e}"),
            }
            let _ = done_tx.send(());
        });
    if let Err(e) = spawned {
        warn!("encrypted WAN: cannot start its thread: {e}");
    }
    tokio::spawn(async move {
        let _ = done_rx.await;
    })
}

/// The tap, the bridge's local port with the inner address on it, and the
/// socket.
async fn set_up(
    plan: &WireguardPlan,
    bridge: &mut watch::Receiver<BridgeStatus>,
) -> Result<(tun_rs::AsyncDevice, UdpSocket, [u8; 6]), String> {
    let e = &plan.encryption;
    let tap = tun_rs::DeviceBuilder::new()
        .name(&e.tap)
        .layer(tun_rs::Layer::L2)
        .mtu(plan.mtu)
        .tx_queue_len(QUEUE as u32)
        .build_async()
        .map_err(|err| format!("cannot open tap {}: {err}", e.tap))?;
    tap.persist()
        .map_err(|err| format!("cannot make tap {} persistent: {err}", e.tap))?;
    tap.enabled(true)
        .map_err(|err| format!("cannot bring tap {} up: {err}", e.tap))?;
    // The keeper creates the bridge and adds the tap; vswitchd creates the
    // bridge's local port, and gives it the pinned address, a moment
    // after. Decrypted packets are addressed to that MAC: read a moment
    // early (before the pin, vswitchd re-picked it from the ports when
    // the tap joined), the peer's GRE went to an address the bridge no
    // longer had and never reached its tunnel.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let problem = match local_port(plan, &bridge.borrow_and_update()) {
            Ok(()) => break,
            Err(problem) => problem,
        };
        if Instant::now() >= deadline {
            return Err(problem);
        }
        tokio::select! {
            r = bridge.changed() => if r.is_err() {
                return Err(format!("nobody keeps bridge {}", e.bridge));
            },
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    let socket = UdpSocket::bind(plan.listen)
        .await
        .map_err(|err| format!("cannot listen on udp {}: {err}", plan.listen))?;
    // A burst the task has not been scheduled for yet waits in the socket
    // rather than being dropped (the kernel caps it at net.core.*mem_max).
    let sock = socket2::SockRef::from(&socket);
    let _ = sock.set_recv_buffer_size(QUEUE * 2048);
    let _ = sock.set_send_buffer_size(QUEUE * 2048);
    Ok((tap, socket, bridge_mac(e.address)))
}

/// Whether the bridge is as the task needs it, as `kept` (its keeper's
/// status) and the kernel show it: the tap on it, its local port with the
/// pinned MAC; then puts the inner address and the MTU on that port and
/// brings it up, where they are missing (a bridge the keeper re-created
/// has a new local port, without them). Why not, otherwise.
fn local_port(plan: &WireguardPlan, kept: &BridgeStatus) -> Result<(), String> {
    let e = &plan.encryption;
    if let Some(problem) = &kept.problem {
        return Err(format!("bridge {}: {problem}", e.bridge));
    }
    if !kept.bridge_present {
        return Err(format!("bridge {} is not there yet", e.bridge));
    }
    if kept.trunk_ofport.is_none() {
        return Err(match &kept.trunk_error {
            Some(err) => format!("tap {} is not on bridge {}: {err}", e.tap, e.bridge),
            None => format!("tap {} is not on bridge {} yet", e.tap, e.bridge),
        });
    }
    let mac = bridge_mac(e.address);
    let iface = netconfig_rs::Interface::try_from_name(&e.bridge)
        .map_err(|err| format!("bridge {} has no local port: {err:?}", e.bridge))?;
    let have = iface
        .hwaddress()
        .map_err(|err| format!("cannot read {}'s address: {err:?}", e.bridge))?;
    if have != mac {
        return Err(format!(
            "bridge {}'s local port has {}, not the pinned {}",
            e.bridge,
            ofp::packet::MacAddr(have),
            ofp::packet::MacAddr(mac)
        ));
    }
    configure_bridge_port(&iface, e, plan.mtu)
}

/// The bridge's local port's Ethernet address: locally administered, and
/// one per inner address, so no two gateways of a WAN share it, and never
/// [`PEER_MAC`], whose first byte differs.
fn bridge_mac(inner: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = inner.octets();
    [0x06, 0x49, a, b, c, d]
}

/// Puts the inner address and the MTU on the bridge's local port, and
/// brings it up, where it lacks them.
fn configure_bridge_port(
    iface: &netconfig_rs::Interface,
    e: &Encryption,
    mtu: u16,
) -> Result<(), String> {
    let net = ipnet::IpNet::new(IpAddr::V4(e.address), e.prefix_len)
        .map_err(|err| format!("{}/{}: {err}", e.address, e.prefix_len))?;
    let has = iface
        .addresses()
        .map_err(|err| format!("cannot read {}'s addresses: {err:?}", e.bridge))?;
    if !has.contains(&net) {
        iface
            .add_address(net)
            .map_err(|err| format!("cannot put {net} on {}: {err:?}", e.bridge))?;
    }
    if iface.mtu().ok() != Some(u32::from(mtu)) {
        iface
            .set_mtu(u32::from(mtu))
            .map_err(|err| format!("cannot set {}'s mtu: {err:?}", e.bridge))?;
    }
    netconfig_rs::sys::InterfaceExt::set_up(iface, true)
        .map_err(|err| format!("cannot bring {} up: {err:?}", e.bridge))
}

struct Dataplane {
    tap: tun_rs::AsyncDevice,
    socket: UdpSocket,
    /// Where decrypted packets are addressed: the bridge's local port.
    bridge_mac: [u8; 6],
    /// What boringtun writes: datagrams out, packets in.
    out: Vec<u8>,
    /// A decrypted packet behind its Ethernet header.
    frame: Vec<u8>,
}

impl Dataplane {
    /// Starts a handshake on the peer's current session, so that the status
    /// tells at once whether the peer answers, before traffic needs it.
    async fn initiate(&mut self, peer: &mut Peer) {
        if let TunnResult::WriteToNetwork(msg) =
            peer.tunn.format_handshake_initiation(&mut self.out, false)
        {
            let len = msg.len();
            self.send(peer, len).await;
        }
    }

    /// Sends the first `len` bytes of `out` to the peer's endpoint.
    async fn send(&mut self, peer: &mut Peer, len: usize) {
        let msg = &self.out[..len];
        if msg.first() == Some(&1) {
            peer.status.handshakes_sent += 1;
            peer.unanswered_since.get_or_insert_with(Instant::now);
        }
        let sent = match self.socket.try_send_to(msg, peer.endpoint.into()) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                self.socket.send_to(msg, peer.endpoint).await.map(drop)
            }
            other => other.map(drop),
        };
        if let Err(e) = sent {
            peer.status.problem = Some(format!("cannot send to {}: {e}", peer.endpoint));
        }
    }

    async fn on_tap_frame(&mut self, frame: &[u8], peers: &mut [Peer], st: &mut WireguardStatus) {
        if frame.len() < 14 {
            st.unroutable_frames += 1;
            return;
        }
        match u16::from_be_bytes([frame[12], frame[13]]) {
            0x0806 => self.answer_arp(frame, peers, st).await,
            0x0800 if frame.len() >= 34 => {
                let dst = Ipv4Addr::new(frame[30], frame[31], frame[32], frame[33]);
                let Some(peer) = peers.iter_mut().find(|p| p.config.inner_ip == dst) else {
                    st.unroutable_frames += 1;
                    return;
                };
                let packet = &frame[14..];
                let which = peer.sending();
                match peer.session_mut(which).encapsulate(packet, &mut self.out) {
                    TunnResult::WriteToNetwork(msg) => {
                        let len = msg.len();
                        if self.out[0] == 4 {
                            peer.status.tx_packets += 1;
                            peer.status.tx_bytes += packet.len() as u64;
                        }
                        self.send(peer, len).await;
                    }
                    TunnResult::Err(e) => count(&mut peer.status, e),
                    // Queued until the handshake completes.
                    _ => {}
                }
            }
            _ => st.unroutable_frames += 1,
        }
    }

    /// Answers the bridge's ARP request for a peer's inner address with
    /// [`PEER_MAC`], so that Open vSwitch can address its GRE packets.
    async fn answer_arp(&mut self, frame: &[u8], peers: &[Peer], st: &mut WireguardStatus) {
        let arp = &frame[14..];
        // Ethernet/IPv4, request.
        if arp.len() < 28 || arp[..8] != [0, 1, 8, 0, 6, 4, 0, 1] {
            st.unroutable_frames += 1;
            return;
        }
        let target = Ipv4Addr::new(arp[24], arp[25], arp[26], arp[27]);
        if !peers.iter().any(|p| p.config.inner_ip == target) {
            st.unroutable_frames += 1;
            return;
        }
        let (sender_mac, sender_ip) = (&arp[8..14], &arp[14..18]);
        let mut reply = Vec::with_capacity(42);
        reply.extend_from_slice(sender_mac);
        reply.extend_from_slice(&PEER_MAC);
        reply.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 2]);
        reply.extend_from_slice(&PEER_MAC);
        reply.extend_from_slice(&target.octets());
        reply.extend_from_slice(sender_mac);
        reply.extend_from_slice(sender_ip);
        if let Err(e) = self.tap.send(&reply).await {
            warn!("encrypted WAN: writing the tap: {e}");
        }
    }

    async fn on_datagram(
        &mut self,
        datagram: &[u8],
        from: SocketAddr,
        peers: &mut [Peer],
        st: &mut WireguardStatus,
    ) {
        let SocketAddr::V4(from) = from else {
            st.unknown_sources += 1;
            return;
        };
        let Some(peer) = peers.iter_mut().find(|p| p.endpoint.ip() == from.ip()) else {
            st.unknown_sources += 1;
            return;
        };
        let mut input = datagram;
        let mut which = peer.addressed(datagram);
        loop {
            match peer.session_mut(which).decapsulate(
                Some(IpAddr::V4(*from.ip())),
                input,
                &mut self.out,
            ) {
                TunnResult::WriteToNetwork(msg) => {
                    // A handshake answered, a cookie, or packets queued
                    // while there was no session: send, then ask for more.
                    let len = msg.len();
                    // The peer may answer from another port after a restart.
                    peer.endpoint = from;
                    self.send(peer, len).await;
                    input = &[];
                    continue;
                }
                TunnResult::WriteToTunnelV4(packet, src) => {
                    peer.unanswered_since = None;
                    if src != peer.config.inner_ip {
                        *peer
                            .status
                            .refused
                            .entry("wrong_inner_source".into())
                            .or_default() += 1;
                        break;
                    }
                    let len = packet.len();
                    peer.status.rx_packets += 1;
                    peer.status.rx_bytes += len as u64;
                    self.frame.clear();
                    self.frame.extend_from_slice(&self.bridge_mac);
                    self.frame.extend_from_slice(&PEER_MAC);
                    self.frame.extend_from_slice(&[0x08, 0x00]);
                    self.frame.extend_from_slice(&self.out[..len]);
                    if let Err(e) = self.tap.send(&self.frame).await {
                        warn!("encrypted WAN: writing the tap: {e}");
                    }
                }
                TunnResult::WriteToTunnelV6(..) => {
                    *peer.status.refused.entry("ipv6".into()).or_default() += 1;
                }
                // An initiation under the old keys, from a peer that has
                // not taken its new ones yet.
                TunnResult::Err(_)
                    if which == Which::Current
                        && peer.retiring.is_some()
                        && datagram.first() == Some(&1)
                        && input == datagram =>
                {
                    which = Which::Retiring;
                    continue;
                }
                TunnResult::Err(e) => count(&mut peer.status, e),
                TunnResult::Done => {
                    // A keepalive or a completed handshake.
                    if peer.tunn.time_since_last_handshake().is_some() {
                        peer.unanswered_since = None;
                    }
                }
            }
            break;
        }
        if peer.tunn.time_since_last_handshake().is_some() {
            peer.unanswered_since = None;
        }
    }

    async fn timers(&mut self, peer: &mut Peer) {
        for which in [Which::Current, Which::Retiring] {
            if which == Which::Retiring && peer.retiring.is_none() {
                continue;
            }
            match peer.session_mut(which).update_timers(&mut self.out) {
                TunnResult::WriteToNetwork(msg) => {
                    let len = msg.len();
                    self.send(peer, len).await;
                }
                TunnResult::Err(WireGuardError::ConnectionExpired) => {}
                TunnResult::Err(e) => count(&mut peer.status, e),
                _ => {}
            }
        }
    }
}

fn count(status: &mut PeerStatus, e: WireGuardError) {
    *status.refused.entry(format!("{e:?}")).or_default() += 1;
}

/// Refreshes each peer's state and problem, logs problems that appear or
/// change, and publishes.
fn publish(st: &mut WireguardStatus, peers: &mut [Peer], status: &watch::Sender<WireguardStatus>) {
    st.peers = peers
        .iter_mut()
        .map(|p| {
            // Up while the session under the old keys still carries
            // traffic (`old_session` says so).
            let since = p.tunn.time_since_last_handshake().or_else(|| {
                p.retiring
                    .as_ref()
                    .and_then(|(old, _)| old.time_since_last_handshake())
            });
            let s = &mut p.status;
            s.endpoint = p.endpoint.to_string();
            s.old_session = p.retiring.is_some();
            s.last_handshake_s = since.map(|d| d.as_secs());
            s.state = match since {
                Some(d) if d < SESSION_LIFE => "up",
                _ if p.unanswered_since.is_some() => "handshaking",
                _ => "down",
            }
            .into();
            let problem = peer_problem(p);
            if problem != p.status.problem {
                match &problem {
                    Some(text) => warn!("encrypted WAN to {}: {text}", p.config.name),
                    None => info!(
                        "encrypted WAN to {}: session up with {}",
                        p.config.name, p.endpoint
                    ),
                }
            }
            p.status.problem = problem;
            p.status.clone()
        })
        .collect();
    status.send_replace(st.clone());
}

/// Why a peer has no session, in words an operator can act on.
fn peer_problem(p: &Peer) -> Option<String> {
    let refused_auth: u64 = [
        "InvalidMac",
        "WrongKey",
        "InvalidAeadTag",
        "UnexpectedPacket",
    ]
    .iter()
    .filter_map(|k| p.status.refused.get(*k))
    .sum();
    if p.status.state == "up" {
        return None;
    }
    if refused_auth > 0 {
        return Some(format!(
            "{refused_auth} datagram(s) from {} failed authentication: the peer's key for this \
             gateway, or this file's public_key for the peer, is wrong",
            p.endpoint.ip()
        ));
    }
    match p.unanswered_since {
        Some(t) if t.elapsed() >= SILENCE => Some(format!(
            "no answer to {} handshake(s) in {} s from {}: the peer is down or unreachable, \
             or does not hold this gateway's public key (or this file's public_key for it is \
             not the peer's)",
            p.status.handshakes_sent,
            t.elapsed().as_secs(),
            p.endpoint
        )),
        _ => None,
    }
}
