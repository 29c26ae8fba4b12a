//! The connector against listeners that behave as a switch does, or as a
//! switch must not.

use super::super::tests::scripted_switch;
use super::super::*;
use crate::session::CloseReason;
use tokio::net::UnixListener;

fn quick() -> ServerConfig {
    ServerConfig {
        session: SessionConfig {
            handshake_timeout: Duration::from_millis(300),
            ..SessionConfig::default()
        },
        dial_backoff_min: Duration::from_millis(20),
        dial_backoff_max: Duration::from_millis(320),
        ..ServerConfig::default()
    }
}

/// A server that only dials the switches in the returned sender's set.
async fn dialer(
    config: ServerConfig,
    dir: &std::path::Path,
    switches: BTreeSet<ListenAddr>,
) -> (
    watch::Sender<BTreeSet<ListenAddr>>,
    Events,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let listen = ListenAddr::Unix(dir.join("unused-listener.sock"));
    let (set_tx, set) = watch::channel(switches);
    let server = Server::bind(&listen, config).await.unwrap().dialing(set);
    let (tx, rx) = mpsc::channel(1024);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.serve(tx, shutdown.clone()));
    let events = Events {
        rx,
        handles: Vec::new(),
    };
    (set_tx, events, shutdown, task)
}

/// The server's events, holding every connection's handle as the control
/// loop would (dropping them all closes the connection).
struct Events {
    rx: mpsc::Receiver<SwitchEvent>,
    handles: Vec<SwitchHandle>,
}

/// The next event within 10 s.
async fn next(rx: &mut Events) -> SwitchEvent {
    let event = tokio::time::timeout(Duration::from_secs(10), rx.rx.recv())
        .await
        .expect("an event within 10 s")
        .expect("the server runs");
    if let SwitchEvent::Connected { handle, .. } = &event {
        rx.handles.push(handle.clone());
    }
    event
}

async fn next_ready(rx: &mut Events) -> (ConnId, u64) {
    loop {
        match next(rx).await {
            SwitchEvent::Upcall {
                conn,
                upcall: Upcall::Ready { features, .. },
            } => return (conn, features.datapath_id),
            SwitchEvent::Disconnected { reason, .. } => panic!("disconnected: {reason}"),
            _ => {}
        }
    }
}

async fn next_disconnect(rx: &mut Events) -> (ConnId, CloseReason) {
    loop {
        if let SwitchEvent::Disconnected { conn, reason } = next(rx).await {
            return (conn, reason);
        }
    }
}

async fn stop(shutdown: CancellationToken, task: tokio::task::JoinHandle<()>) {
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("shutdown completes")
        .unwrap();
}

#[tokio::test]
async fn a_switch_that_listens_later_is_reached_and_reached_again_after_it_closes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("br-int.iris.sock");
    let (_set, mut rx, shutdown, task) = dialer(
        quick(),
        dir.path(),
        BTreeSet::from([ListenAddr::Unix(path.clone())]),
    )
    .await;
    // Nothing listens yet: the connector keeps trying.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let listener = UnixListener::bind(&path).unwrap();
    let (s, _) = listener.accept().await.unwrap();
    let first = tokio::spawn(scripted_switch(s, 7, false, None));
    let (conn1, dpid) = next_ready(&mut rx).await;
    assert_eq!(dpid, 7);
    // The switch drops the connection (a vswitchd restart, say).
    first.abort();
    let (gone, reason) = next_disconnect(&mut rx).await;
    assert_eq!((gone, reason), (conn1, CloseReason::PeerClosed));
    let (s, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .expect("the connector comes back")
        .unwrap();
    tokio::spawn(scripted_switch(s, 7, false, None));
    let (conn2, dpid) = next_ready(&mut rx).await;
    assert_eq!(dpid, 7);
    assert_ne!(conn1, conn2, "a new connection, same session code");
    stop(shutdown, task).await;
}

#[tokio::test]
async fn a_peer_that_sends_garbage_is_refused_and_retried_ever_more_slowly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let accepts = Arc::new(AtomicU64::new(0));
    let counted = accepts.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            counted.fetch_add(1, Ordering::Relaxed);
            // An OpenFlow header that claims a 4-byte message: shorter
            // than a header, so the stream cannot be cut into messages.
            let _ = s.write_all(&[0x04, 0x00, 0x00, 0x04, 0, 0, 0, 1]).await;
            tokio::spawn(async move {
                let mut sink = [0u8; 1024];
                while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    let (_set, mut rx, shutdown, task) = dialer(
        quick(),
        dir.path(),
        BTreeSet::from([ListenAddr::Unix(path)]),
    )
    .await;
    let (_, reason) = next_disconnect(&mut rx).await;
    assert!(
        matches!(reason, CloseReason::FramingLost(_)),
        "refused as garbage: {reason}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Waits of 20, 40, 80, 160, 320, 320, ... ms: at most about 8 attempts
    // in 1.5 s, where retrying at the shortest wait would make 75.
    let n = accepts.load(Ordering::Relaxed);
    assert!((3..=10).contains(&n), "{n} attempts in 1.5 s");
    stop(shutdown, task).await;
}

#[tokio::test]
async fn a_switch_that_never_answers_the_handshake_times_out_and_is_tried_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mute.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let (_set, mut rx, shutdown, task) = dialer(
        quick(),
        dir.path(),
        BTreeSet::from([ListenAddr::Unix(path)]),
    )
    .await;
    let mut held = Vec::new();
    let (s, _) = listener.accept().await.unwrap();
    held.push(s);
    let (_, reason) = next_disconnect(&mut rx).await;
    assert_eq!(reason, CloseReason::HandshakeTimeout);
    let (s, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .expect("tried again")
        .unwrap();
    held.push(s);
    stop(shutdown, task).await;
}

#[tokio::test]
async fn a_switch_taken_out_of_the_set_is_let_go_and_one_put_in_is_reached() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
    let (la, lb) = (
        UnixListener::bind(&a).unwrap(),
        UnixListener::bind(&b).unwrap(),
    );
    let (set, mut rx, shutdown, task) = dialer(
        quick(),
        dir.path(),
        BTreeSet::from([ListenAddr::Unix(a.clone())]),
    )
    .await;
    let (s, _) = la.accept().await.unwrap();
    tokio::spawn(scripted_switch(s, 1, false, None));
    let (conn_a, _) = next_ready(&mut rx).await;
    set.send_replace(BTreeSet::from([ListenAddr::Unix(b)]));
    let (gone, _) = next_disconnect(&mut rx).await;
    assert_eq!(gone, conn_a);
    let (s, _) = lb.accept().await.unwrap();
    tokio::spawn(scripted_switch(s, 2, false, None));
    assert_eq!(next_ready(&mut rx).await.1, 2);
    // Nobody dials `a` again.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), la.accept())
            .await
            .is_err()
    );
    stop(shutdown, task).await;
}

#[test]
fn passive_targets_name_where_to_connect() {
    let at = |t: &str| ListenAddr::of_passive_target(t);
    assert_eq!(
        at("ptcp:6653:10.0.0.1"),
        Ok(Some(ListenAddr::Tcp("10.0.0.1:6653".parse().unwrap())))
    );
    assert_eq!(
        at("ptcp:6653:[::1]"),
        Ok(Some(ListenAddr::Tcp("[::1]:6653".parse().unwrap())))
    );
    assert_eq!(
        at("punix:/run/pm1/br-int.iris.sock"),
        Ok(Some(ListenAddr::Unix("/run/pm1/br-int.iris.sock".into())))
    );
    assert_eq!(
        at("pssl:6653:10.0.0.1"),
        Ok(Some(ListenAddr::Tcp("10.0.0.1:6653".parse().unwrap())))
    );
    assert_eq!(at("tcp:10.0.0.1:6653"), Ok(None));
    assert_eq!(at("unix:/run/of.sock"), Ok(None));
    for bad in [
        "ptcp:6653",
        "ptcp:",
        "ptcp:6653:0.0.0.0",
        "ptcp:x:10.0.0.1",
        "punix:",
        "pssl:6653:0.0.0.0",
    ] {
        assert!(at(bad).is_err(), "{bad}");
    }
}
