//! The server's isolation and batching, against scripted peers that answer
//! the handshake the way a switch does. (End-to-end behaviour is tested
//! against real Open vSwitch in `tests/`.)

use super::*;
use ofp::framing::Framer;
use ofp::message::{FlowMod, Message, SwitchFeatures};
use ofp::multipart::{MultipartReply, MultipartReplyBody, MultipartRequestBody};
use ofp::OfpMessage;
use std::pin::Pin;
use std::sync::atomic::AtomicUsize;
use std::task::{Context, Poll};
use tokio::io::{DuplexStream, ReadBuf};
use tokio::net::TcpStream;

/// Answers what a switch must answer for the handshake, echoes and
/// barriers; records every message it receives. With `stop_reading_after_ready`
/// it stops reading once the handshake is done, as a wedged switch would.
pub(super) async fn scripted_switch<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    dpid: u64,
    stop_reading_after_ready: bool,
    seen: Option<mpsc::UnboundedSender<OfpMessage>>,
) {
    let mut framer = Framer::default();
    let mut buf = vec![0u8; 65536];
    let hello = OfpMessage::new(1, Message::Hello(Default::default())).to_bytes();
    if s.write_all(&hello).await.is_err() {
        return;
    }
    let mut answered_dumps = 0;
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        framer.extend(&buf[..n]);
        let mut reply = Vec::new();
        while let Some(raw) = framer.next_message().unwrap() {
            let m = OfpMessage::parse(raw).unwrap();
            let answer = match &m.message {
                Message::FeaturesRequest => Some(Message::FeaturesReply(SwitchFeatures {
                    datapath_id: dpid,
                    n_tables: 254,
                    ..SwitchFeatures::default()
                })),
                Message::EchoRequest(d) => Some(Message::EchoReply(d.clone())),
                Message::BarrierRequest => Some(Message::BarrierReply),
                Message::MultipartRequest(r) => {
                    answered_dumps += 1;
                    Some(Message::MultipartReply(MultipartReply::new(match r.body {
                        MultipartRequestBody::PortDesc => MultipartReplyBody::PortDesc(vec![]),
                        MultipartRequestBody::Flow(_) => MultipartReplyBody::Flow(vec![]),
                        MultipartRequestBody::GroupDesc => MultipartReplyBody::GroupDesc(vec![]),
                        _ => panic!("unexpected {r:?}"),
                    })))
                }
                _ => None,
            };
            if let Some(a) = answer {
                OfpMessage::new(m.xid, a).emit(&mut reply);
            }
            if let Some(seen) = &seen {
                let _ = seen.send(m);
            }
        }
        if s.write_all(&reply).await.is_err() {
            return;
        }
        if stop_reading_after_ready && answered_dumps == 3 {
            // Hold the socket open without ever reading again.
            std::future::pending::<()>().await;
        }
    }
}

async fn start_server(
    config: ServerConfig,
) -> (
    SocketAddr,
    mpsc::Receiver<SwitchEvent>,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let server = Server::bind(&"127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let ListenAddr::Tcp(addr) = server.local_addr().unwrap() else {
        panic!()
    };
    let (tx, rx) = mpsc::channel(1024);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.serve(tx, shutdown.clone()));
    (addr, rx, shutdown, task)
}

/// Collects handles and Ready upcalls until `n` switches are ready.
async fn until_ready(
    rx: &mut mpsc::Receiver<SwitchEvent>,
    n: usize,
) -> std::collections::HashMap<u64, SwitchHandle> {
    let mut handles = std::collections::HashMap::new();
    let mut ready = std::collections::HashMap::new();
    while ready.len() < n {
        match rx.recv().await.unwrap() {
            SwitchEvent::Connected { conn, handle, .. } => {
                handles.insert(conn, handle);
            }
            SwitchEvent::Upcall {
                conn,
                upcall: Upcall::Ready { features, .. },
            } => {
                ready.insert(features.datapath_id, handles[&conn].clone());
            }
            SwitchEvent::Disconnected { reason, .. } => panic!("{reason}"),
            _ => {}
        }
    }
    ready
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_switches_connect_at_once() {
    let (addr, mut rx, shutdown, task) = start_server(ServerConfig::default()).await;
    let n = 300u64;
    for dpid in 1..=n {
        tokio::spawn(async move {
            let s = TcpStream::connect(addr).await.unwrap();
            scripted_switch(s, dpid, false, None).await;
        });
    }
    let ready = tokio::time::timeout(Duration::from_secs(60), until_ready(&mut rx, n as usize))
        .await
        .expect("every switch completes its handshake");
    assert_eq!(ready.len(), n as usize);
    assert!((1..=n).all(|d| ready.contains_key(&d)));
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("shutdown completes")
        .unwrap();
}

/// The next barrier confirmation: (ticket, errors).
async fn barrier_reply(rx: &mut mpsc::Receiver<SwitchEvent>) -> (u64, usize) {
    let wait = async {
        loop {
            match rx.recv().await {
                Some(SwitchEvent::Upcall {
                    upcall: Upcall::BarrierConfirmed { ticket, errors },
                    ..
                }) => return (ticket, errors),
                Some(SwitchEvent::Disconnected { reason, .. }) => panic!("{reason}"),
                Some(_) => {}
                None => panic!("every connection is gone"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("the barrier comes back")
}

/// A connection over `ours` to a scripted switch with `dpid` on `theirs`,
/// the other end of an in-memory pipe: the connection's events and every
/// message the switch received.
fn over_a_pipe<S>(
    ours: S,
    theirs: DuplexStream,
    dpid: u64,
) -> (
    mpsc::Receiver<SwitchEvent>,
    mpsc::UnboundedReceiver<OfpMessage>,
)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (seen_tx, seen) = mpsc::unbounded_channel();
    tokio::spawn(scripted_switch(theirs, dpid, false, Some(seen_tx)));
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(run_connection(
        ours,
        ConnId(1),
        "duplex".into(),
        ServerConfig::default(),
        tx,
        None,
        CancellationToken::new(),
    ));
    (rx, seen)
}

fn big_batch(n: usize, barrier: Option<u64>) -> Batch {
    let fm = FlowMod {
        table_id: 3,
        priority: 100,
        match_: ofp::oxm::Match::new().in_port(1),
        ..FlowMod::default()
    };
    Batch {
        messages: (0..n).map(|_| Message::FlowMod(fm.clone())).collect(),
        barrier,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_that_stops_reading_stalls_only_itself() {
    let (addr, mut rx, shutdown, _task) = start_server(ServerConfig {
        queue_depth: 4,
        max_unsent_bytes: 64 << 10,
        ..ServerConfig::default()
    })
    .await;
    let wedged = TcpStream::connect(addr).await.unwrap();
    tokio::spawn(scripted_switch(wedged, 1, true, None));
    let healthy = TcpStream::connect(addr).await.unwrap();
    tokio::spawn(scripted_switch(healthy, 2, false, None));
    let ready = until_ready(&mut rx, 2).await;

    // Flood the wedged switch until its queue reports it too slow. Socket
    // buffers absorb a few megabytes first; the queue must fill eventually.
    let mut full = false;
    for _ in 0..10_000 {
        match ready[&1].try_submit(big_batch(200, None)) {
            Ok(()) => tokio::task::yield_now().await,
            Err(SubmitError::Full) => {
                full = true;
                break;
            }
            Err(SubmitError::Closed) => panic!("wedged switch dropped"),
        }
    }
    assert!(full, "a switch that never reads must fill its queue");

    // The healthy switch is served all the while.
    ready[&2].try_submit(big_batch(50, Some(7))).unwrap();
    assert_eq!(barrier_reply(&mut rx).await, (7, 0));
    shutdown.cancel();
}

/// A stream that counts the writes made to it.
struct CountingStream {
    inner: DuplexStream,
    writes: Arc<AtomicUsize>,
}

impl AsyncRead for CountingStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountingStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(_))) {
            self.writes.fetch_add(1, Ordering::SeqCst);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn a_batch_leaves_in_one_write() {
    let (ours, theirs) = tokio::io::duplex(4 << 20);
    let writes = Arc::new(AtomicUsize::new(0));
    let stream = CountingStream {
        inner: ours,
        writes: writes.clone(),
    };
    let (mut rx, mut seen) = over_a_pipe(stream, theirs, 9);
    let ready = until_ready(&mut rx, 1).await;
    let before = writes.load(Ordering::SeqCst);
    ready[&9].try_submit(big_batch(500, Some(1))).unwrap();
    barrier_reply(&mut rx).await;
    assert_eq!(writes.load(Ordering::SeqCst) - before, 1);
    let mut flow_mods = 0;
    while let Ok(m) = seen.try_recv() {
        flow_mods += usize::from(matches!(m.message, Message::FlowMod(_)));
    }
    assert_eq!(flow_mods, 500);
}

#[tokio::test]
async fn unix_socket_listener_serves_switches_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("of.sock");
    let addr: ListenAddr = format!("unix:{}", path.display()).parse().unwrap();
    let server = Server::bind(&addr, ServerConfig::default()).await.unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.serve(tx, shutdown.clone()));
    let s = tokio::net::UnixStream::connect(&path).await.unwrap();
    tokio::spawn(scripted_switch(s, 5, false, None));
    let ready = until_ready(&mut rx, 1).await;
    assert!(ready.contains_key(&5));
    shutdown.cancel();
    task.await.unwrap();
    assert!(!path.exists());
}

#[tokio::test]
async fn dropping_the_handle_closes_the_connection() {
    let (addr, mut rx, _shutdown, _task) = start_server(ServerConfig::default()).await;
    let s = TcpStream::connect(addr).await.unwrap();
    let peer = tokio::spawn(scripted_switch(s, 3, false, None));
    let ready = until_ready(&mut rx, 1).await;
    drop(ready);
    // The scripted switch returns when it reads EOF.
    tokio::time::timeout(Duration::from_secs(5), peer)
        .await
        .expect("connection closed")
        .unwrap();
}

#[test]
fn listen_addresses_parse_as_ovs_writes_them() {
    assert_eq!(
        "0.0.0.0:6653".parse::<ListenAddr>(),
        Ok(ListenAddr::Tcp("0.0.0.0:6653".parse().unwrap()))
    );
    assert_eq!(
        "tcp:127.0.0.1:1".parse::<ListenAddr>(),
        Ok(ListenAddr::Tcp("127.0.0.1:1".parse().unwrap()))
    );
    assert_eq!(
        "unix:/run/x.sock".parse::<ListenAddr>(),
        Ok(ListenAddr::Unix("/run/x.sock".into()))
    );
    let err = "localhost".parse::<ListenAddr>().unwrap_err();
    assert!(err.contains("IP:PORT"), "{err}");
    assert!("unix:".parse::<ListenAddr>().is_err());
}

/// The writes a [`FloodingPeer`] took, each with how many chunks it had
/// sent by then.
type Writes = Arc<std::sync::Mutex<Vec<(usize, Vec<u8>)>>>;

/// A switch that always has more to send: `chunks` in order (each one
/// read), then end of stream. It notes every write it takes with how many
/// chunks it had sent by then, or, with `reads_replies` false, never takes
/// a write at all.
struct FloodingPeer {
    chunks: VecDeque<Vec<u8>>,
    sent: usize,
    reads_replies: bool,
    writes: Writes,
}

impl AsyncRead for FloodingPeer {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(chunk) = self.chunks.pop_front() {
            assert!(chunk.len() <= buf.remaining(), "a chunk is one read");
            buf.put_slice(&chunk);
            self.sent += 1;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for FloodingPeer {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if !self.reads_replies {
            return Poll::Pending;
        }
        self.writes.lock().unwrap().push((self.sent, buf.to_vec()));
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Runs one connection against `peer` to its end; why it ended.
async fn serve_peer(peer: FloodingPeer, config: ServerConfig) -> CloseReason {
    let (tx, mut rx) = mpsc::channel(64);
    tokio::spawn(run_connection(
        peer,
        ConnId(1),
        "flood".into(),
        config,
        tx,
        None,
        CancellationToken::new(),
    ));
    loop {
        match rx.recv().await {
            Some(SwitchEvent::Disconnected { reason, .. }) => return reason,
            Some(_) => {}
            None => panic!("the connection ended without saying why"),
        }
    }
}

fn packet_in_flood(n: usize) -> Vec<u8> {
    let pi = OfpMessage::new(
        0,
        Message::PacketIn(ofp::message::PacketIn {
            buffer_id: ofp::message::NO_BUFFER,
            total_len: 60,
            reason: ofp::message::PacketInReason::NoMatch,
            table_id: 1,
            cookie: 0,
            match_: ofp::oxm::Match::new().in_port(5),
            data: vec![0xab; 60],
        }),
    )
    .to_bytes();
    pi.repeat(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_flooding_packet_ins_still_gets_its_echo_replies() {
    let mut first = OfpMessage::new(1, Message::Hello(Default::default())).to_bytes();
    OfpMessage::new(0xec40, Message::EchoRequest(b"alive?".to_vec())).emit(&mut first);
    let mut chunks = VecDeque::from([first]);
    chunks.extend(std::iter::repeat_n(packet_in_flood(50), 500));
    let writes = Arc::default();
    let peer = FloodingPeer {
        chunks,
        sent: 0,
        reads_replies: true,
        writes: Arc::clone(&writes),
    };
    serve_peer(peer, ServerConfig::default()).await;
    let mut framer = Framer::default();
    let mut answered_after = None;
    for (sent, bytes) in writes.lock().unwrap().iter() {
        framer.extend(bytes);
        while let Some(raw) = framer.next_message().unwrap() {
            let m = OfpMessage::parse(raw).unwrap();
            if m.xid == 0xec40 && matches!(m.message, Message::EchoReply(_)) {
                answered_after = answered_after.or(Some(*sent));
            }
        }
    }
    // Answered before the flood is over, or OVS would declare the
    // controller dead and reconnect.
    let after = answered_after.expect("an echo reply");
    assert!(
        after <= 2,
        "answered only after {after} chunks had been read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_that_asks_without_reading_the_answers_is_closed() {
    let hello = OfpMessage::new(1, Message::Hello(Default::default())).to_bytes();
    let mut chunks = VecDeque::from([hello]);
    chunks.extend(
        (0..200).map(|i| OfpMessage::new(i, Message::EchoRequest(vec![7; 16 << 10])).to_bytes()),
    );
    let peer = FloodingPeer {
        chunks,
        sent: 0,
        reads_replies: false,
        writes: Arc::default(),
    };
    let reason = serve_peer(
        peer,
        ServerConfig {
            max_unread_replies: 256 << 10,
            ..ServerConfig::default()
        },
    )
    .await;
    assert!(
        matches!(reason, CloseReason::RepliesUnread { bytes } if bytes > 256 << 10),
        "{reason}"
    );
}

#[test]
fn answers_count_as_unread_until_the_writes_pass_them() {
    let mut r = Replies::default();
    r.add(10, 20);
    r.add(30, 40);
    r.add(45, 45);
    r.written_to(15);
    assert_eq!(r.unwritten, 15);
    r.written_to(35);
    assert_eq!(r.unwritten, 5);
    r.written_to(40);
    assert_eq!(r.unwritten, 0);
    assert!(r.spans.is_empty());
}

/// A flood group with a tunnel bucket for each of `peers` hosts, as the
/// compiler builds them: past about 1 360 peers it no longer fits in one
/// OpenFlow message.
fn flood_group(peers: u32) -> Message {
    use ofp::message::{Bucket, GroupMod, GroupModCommand, GroupType};
    Message::GroupMod(GroupMod {
        command: GroupModCommand::Add,
        group_type: GroupType::All,
        group_id: 1,
        buckets: (0..peers)
            .map(|p| Bucket {
                weight: 0,
                watch_port: ofp::message::port_no::ANY,
                watch_group: ofp::message::group_no::ANY,
                actions: vec![
                    ofp::action::Action::SetField(ofp::oxm::OxmField::TunnelId(1001, None)),
                    ofp::action::Action::output(100 + p),
                ],
            })
            .collect(),
    })
}

#[tokio::test]
async fn a_message_too_long_for_openflow_is_refused_and_the_stream_stays_whole() {
    let (ours, theirs) = tokio::io::duplex(4 << 20);
    let (mut rx, mut seen) = over_a_pipe(ours, theirs, 9);
    let ready = until_ready(&mut rx, 1).await;
    let mut batch = big_batch(1, Some(5));
    batch.messages.insert(0, flood_group(1400));
    ready[&9].try_submit(batch).unwrap();
    let confirmed = barrier_reply(&mut rx).await;
    // The group was not sent, and counts as refused.
    assert_eq!(confirmed, (5, 1));
    let mut kinds = Vec::new();
    while let Ok(m) = seen.try_recv() {
        kinds.push(m.message.msg_type());
    }
    assert!(!kinds.contains(&ofp::MsgType::GroupMod), "{kinds:?}");
    assert!(kinds.contains(&ofp::MsgType::FlowMod), "{kinds:?}");
}

#[test]
fn openflow_takes_what_the_api_ovsdb_and_the_store_leave_of_the_descriptors() {
    assert_eq!(max_switches(1024, 256, 2), 1024 - 256 - 32 - 4);
    assert_eq!(max_switches(64, 8, 2), 64 - 8 - 32 - 4);
    assert_eq!(max_switches(16, 8, 2), 4, "a few switches at least");
    assert_eq!(max_switches(1 << 20, 1024, 10), 4096);
}

#[test]
fn failing_accepts_wait_longer_each_time_up_to_a_second_and_start_over_once_one_succeeds() {
    let mut f = AcceptFailures::default();
    let e = io::Error::from_raw_os_error(24);
    let waits: Vec<_> = (0..8).map(|_| f.failed("test", &e)).collect();
    assert_eq!(waits[0], Duration::from_millis(50));
    assert_eq!(waits[1], Duration::from_millis(100));
    assert!(waits.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(waits[7], Duration::from_secs(1));
    f.succeeded("test");
    assert_eq!(f.failed("test", &e), Duration::from_millis(50));
}

/// A control loop managing one host, pm1 (dpid 0xa1, one VM port of VI 1
/// once its OVSDB reports), served by `server`.
struct OneHost {
    control: crate::control::ControlHandle,
    topology: mpsc::Sender<crate::control::TopologyEvent>,
    shutdown: CancellationToken,
}

const PM1_DPID: u64 = 0xa1;

impl OneHost {
    fn start(server: Server, metrics: Arc<crate::metrics::Metrics>) -> Self {
        use crate::control::{Control, ManagedHost};
        use crate::model::{Host, HostName, HostRole, Vi, ViId};
        use crate::registry::Registry;
        let host = ManagedHost {
            host: Host {
                name: HostName("pm1".into()),
                underlay_ip: [10, 0, 0, 1].into(),
                role: HostRole::Compute,
                ovsdb_remote: "unix:/run/pm1.sock".into(),
                datapath_id: PM1_DPID,
            },
            controller: None,
        };
        let vi = Vi {
            id: ViId(1),
            name: "acme".into(),
            gre_key: 1001,
            gateways: vec![],
        };
        let parts = Control::start(vec![host], vec![vi], Registry::new(), metrics);
        let shutdown = CancellationToken::new();
        tokio::spawn(server.serve(parts.senders.switches, shutdown.clone()));
        tokio::spawn(parts.control.run(parts.inputs, shutdown.clone()));
        Self {
            control: parts.handle,
            topology: parts.senders.topology,
            shutdown,
        }
    }

    async fn peer_of_pm1(&self) -> Option<String> {
        self.control
            .call(|c| {
                c.host(&crate::model::HostName("pm1".into()))
                    .and_then(|h| h.openflow_peer)
            })
            .await
            .unwrap()
    }

    async fn until_pm1_connected(&self) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while self.peer_of_pm1().await.is_none() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("pm1's switch is ready");
    }

    /// pm1's OVSDB reports its ports, so its tables go out.
    async fn report_pm1(&self) {
        use crate::control::{TopologyEvent, VmPortSeen};
        let pm1 = crate::model::HostName("pm1".into());
        self.topology
            .send(TopologyEvent::Ovsdb {
                host: pm1.clone(),
                connected: true,
            })
            .await
            .unwrap();
        self.topology
            .send(TopologyEvent::Ports {
                host: pm1,
                vm_ports: vec![VmPortSeen {
                    name: "vm1".into(),
                    ofport: 5,
                    vi: crate::model::ViId(1),
                    attached_mac: None,
                }],
                tunnels: vec![],
            })
            .await
            .unwrap();
    }
}

/// Waits for a FLOW_MOD among what a scripted switch saw.
async fn until_flow_mod(seen: &mut mpsc::UnboundedReceiver<OfpMessage>) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(m) = seen.recv().await {
            if matches!(m.message, Message::FlowMod(_)) {
                return;
            }
        }
        panic!("the switch's connection ended");
    })
    .await
    .expect("the switch gets its flows");
}

fn assert_no_flows_sent(seen: &mut mpsc::UnboundedReceiver<OfpMessage>, who: &str) {
    while let Ok(m) = seen.try_recv() {
        assert!(
            !matches!(m.message, Message::FlowMod(_) | Message::GroupMod(_)),
            "{who} was sent {m:?}"
        );
    }
}

/// The attack on an open listener: a peer that answers FEATURES with a
/// configured host's dpid while that host's switch is connected. It must
/// not take the session over, nor receive a single FLOW_MOD of the host's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impostor_claiming_a_connected_dpid_is_refused_and_gets_none_of_its_flows() {
    let server = Server::bind(&"127.0.0.1:0".parse().unwrap(), ServerConfig::default())
        .await
        .unwrap();
    let ListenAddr::Tcp(addr) = server.local_addr().unwrap() else {
        panic!()
    };
    let c = OneHost::start(server, Arc::default());

    let (real_tx, mut real_seen) = mpsc::unbounded_channel();
    let real_sock = TcpStream::connect(addr).await.unwrap();
    let real_addr = real_sock.local_addr().unwrap().to_string();
    let real = tokio::spawn(scripted_switch(real_sock, PM1_DPID, false, Some(real_tx)));
    c.until_pm1_connected().await;

    let (fake_tx, mut fake_seen) = mpsc::unbounded_channel();
    let fake_sock = TcpStream::connect(addr).await.unwrap();
    let impostor = tokio::spawn(scripted_switch(fake_sock, PM1_DPID, false, Some(fake_tx)));
    tokio::time::timeout(Duration::from_secs(5), impostor)
        .await
        .expect("the impostor's connection is closed")
        .unwrap();
    assert_eq!(c.peer_of_pm1().await.as_deref(), Some(real_addr.as_str()));
    assert!(!real.is_finished(), "the real switch keeps its session");

    c.report_pm1().await;
    until_flow_mod(&mut real_seen).await;
    assert_no_flows_sent(&mut fake_seen, "the impostor");
    let text = c.control.metrics().render();
    assert!(
        text.contains("iris_switches_refused_total{why=\"dpid_in_use\"} 1"),
        "{text}"
    );
    c.shutdown.cancel();
}

/// Over TLS, neither a certificate from another CA, nor an expired one,
/// nor none at all, nor a valid one for another host, makes a switch pm1:
/// each is refused with its reason counted, and the real pm1 keeps its
/// session and gets its flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_only_the_certificate_naming_the_host_may_claim_its_dpid() {
    use iris_testbed::pki::Pki;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "iris").unwrap();
    let rogue = Pki::new(dir.path(), "rogue").unwrap();
    let ours = pki.issue("controller").unwrap();
    let files = crate::tls::TlsFiles {
        private_key: ours.private_key,
        certificate: ours.certificate,
        ca_certificate: pki.ca_certificate.clone(),
    };
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let server = Server::bind(&"127.0.0.1:0".parse().unwrap(), ServerConfig::default())
        .await
        .unwrap()
        .with_tls(&files, metrics.clone())
        .unwrap();
    let ListenAddr::Tcp(addr) = server.local_addr().unwrap() else {
        panic!()
    };
    let c = OneHost::start(server, metrics);

    // pm2's certificate is valid, and pm1's dpid is not connected yet: the
    // certificate alone keeps it from being pm1.
    let pm2 = pki.issue("pm2").unwrap();
    let s = crate::tls::connect_for_tests(addr, &pki.ca_certificate, Some(&pm2))
        .await
        .unwrap();
    let (tx, mut pm2_seen) = mpsc::unbounded_channel();
    tokio::time::timeout(
        Duration::from_secs(5),
        scripted_switch(s, PM1_DPID, false, Some(tx)),
    )
    .await
    .expect("pm2's certificate claiming pm1 is disconnected");
    assert_eq!(c.peer_of_pm1().await, None);

    let pm1 = pki.issue("pm1").unwrap();
    let s = crate::tls::connect_for_tests(addr, &pki.ca_certificate, Some(&pm1))
        .await
        .unwrap();
    let (tx, mut real_seen) = mpsc::unbounded_channel();
    let real = tokio::spawn(scripted_switch(s, PM1_DPID, false, Some(tx)));
    c.until_pm1_connected().await;
    let real_peer = c.peer_of_pm1().await;

    let rogue_pm1 = rogue.issue("pm1").unwrap();
    let expired_pm1 = pki.issue_expired("pm1").unwrap();
    for (who, me) in [
        ("another CA's pm1", Some(&rogue_pm1)),
        ("an expired pm1", Some(&expired_pm1)),
        ("no certificate", None),
    ] {
        // TLS 1.3 tells the client of its refusal only after the client's
        // side of the handshake is done: its first read fails.
        if let Ok(s) = crate::tls::connect_for_tests(addr, &pki.ca_certificate, me).await {
            let (tx, mut seen) = mpsc::unbounded_channel();
            tokio::time::timeout(
                Duration::from_secs(5),
                scripted_switch(s, PM1_DPID, false, Some(tx)),
            )
            .await
            .unwrap_or_else(|_| panic!("{who} is disconnected"));
            assert!(
                seen.try_recv().is_err(),
                "{who} was sent {:?}",
                seen.try_recv()
            );
        }
    }
    assert_eq!(c.peer_of_pm1().await, real_peer);
    assert!(!real.is_finished(), "the real switch keeps its session");
    c.report_pm1().await;
    until_flow_mod(&mut real_seen).await;
    assert_no_flows_sent(&mut pm2_seen, "pm2");
    let text = c.control.metrics().render();
    for line in [
        "iris_switches_refused_total{why=\"tls_handshake\"} 3",
        "iris_switches_refused_total{why=\"certificate_not_this_host\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in {text}");
    }
    c.shutdown.cancel();
}
