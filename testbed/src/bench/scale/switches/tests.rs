use super::*;
use ofp::message::{FlowMod, Hello};
use ofp::multipart::{FlowStatsRequest, MultipartRequest, MultipartRequestBody};
use tokio::net::TcpListener;

/// Reads whole messages until one of type `want` arrives; returns it.
async fn expect(s: &mut TcpStream, framer: &mut Framer, want: MsgType) -> (MsgType, Vec<u8>) {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        if let Some(m) = framer.next_message().unwrap() {
            let t = ofp::header::HeaderView::new_checked(m).unwrap().msg_type();
            if t == want {
                return (t, m.to_vec());
            }
            continue;
        }
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "the switch closed while {want:?} was awaited");
        framer.extend(&buf[..n]);
    }
}

async fn send(s: &mut TcpStream, xid: u32, m: Message) {
    let mut out = Vec::new();
    OfpMessage::new(xid, m).emit(&mut out);
    s.write_all(&out).await.unwrap();
}

/// A controller that takes one switch through the setup a real one does:
/// HELLO, FEATURES, the flow and group dumps, with `program` a FLOW_MOD and
/// a BARRIER; then holds the connection open.
async fn scripted_controller(mut s: TcpStream, program: bool) {
    let mut framer = Framer::default();
    expect(&mut s, &mut framer, MsgType::Hello).await;
    send(
        &mut s,
        1,
        Message::Hello(Hello {
            version: ofp::OFP_VERSION,
            elements: Vec::new(),
        }),
    )
    .await;
    send(&mut s, 2, Message::FeaturesRequest).await;
    expect(&mut s, &mut framer, MsgType::FeaturesReply).await;
    for (xid, body) in [
        (3, MultipartRequestBody::Flow(FlowStatsRequest::default())),
        (4, MultipartRequestBody::GroupDesc),
    ] {
        send(
            &mut s,
            xid,
            Message::MultipartRequest(MultipartRequest { flags: 0, body }),
        )
        .await;
        expect(&mut s, &mut framer, MsgType::MultipartReply).await;
    }
    if program {
        send(&mut s, 5, Message::FlowMod(FlowMod::default())).await;
        send(&mut s, 6, Message::BarrierRequest).await;
        expect(&mut s, &mut framer, MsgType::BarrierReply).await;
    }
    // Held until the switch leaves.
    let mut buf = [0u8; 64];
    while s.read(&mut buf).await.is_ok_and(|n| n > 0) {}
}

fn run_against(program: bool, switches: u16) -> Vec<SwitchTimes> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        rt.block_on(async move {
            let mut held = tokio::task::JoinSet::new();
            for _ in 0..switches {
                let (s, _) = listener.accept().await.unwrap();
                held.spawn(scripted_controller(s, program));
            }
            while held.join_next().await.is_some() {}
        });
    });
    let progress = Arc::new(Progress::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let specs = specs(u32::from(switches), 2);
    let t0 = Instant::now();
    let watcher = {
        let progress = progress.clone();
        std::thread::spawn(move || connect_all(addr, t0, specs, stop_rx, progress))
    };
    let want = usize::from(switches);
    while progress.dumped.load(Ordering::Relaxed) < want
        || (program && progress.barriers.load(Ordering::Relaxed) < want)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop_tx.send(true).unwrap();
    let times = watcher.join().unwrap().unwrap();
    server.join().unwrap();
    times
}

#[test]
fn every_switch_records_its_setup_in_order() {
    let times = run_against(true, 3);
    assert_eq!(times.len(), 3);
    for t in &times {
        let (c, f, d, b) = (
            t.connected.unwrap(),
            t.features.unwrap(),
            t.dumped.unwrap(),
            t.barrier.unwrap(),
        );
        assert!(c <= f && f <= d && d <= b, "{t:?}");
        assert_eq!((t.flow_mods, t.errors), (1, 0), "{t:?}");
    }
    let spread = Spread::of(times.iter().filter_map(|t| t.dumped).collect()).unwrap();
    assert_eq!(spread.switches, 3);
    assert!(spread.first_ms <= spread.median_ms && spread.median_ms <= spread.last_ms);
}

#[test]
fn without_programming_there_is_no_barrier() {
    let times = run_against(false, 2);
    assert!(times
        .iter()
        .all(|t| t.dumped.is_some() && t.barrier.is_none()));
    assert!(times.iter().all(|t| t.flow_mods == 0));
    assert_eq!(Spread::of(Vec::new()), None);
}

#[test]
fn the_configuration_has_a_host_per_switch_only_when_known() {
    let dir = std::path::Path::new("/run/x");
    let addr: SocketAddr = "127.0.0.1:6653".parse().unwrap();
    let mut o = Options {
        switches: 300,
        dpids: Dpids::Unknown,
        ports: 2,
        iris_controller: None,
        keep: false,
    };
    assert!(!config_text(dir, addr, &o).contains("[[host]]"));
    o.dpids = Dpids::Known;
    let text = config_text(dir, addr, &o);
    assert_eq!(text.matches("[[host]]").count(), 300);
    // Distinct underlay addresses past 255 hosts, and the dpids the
    // switches report.
    assert!(text.contains("underlay_ip = \"10.255.1.44\""), "{text}");
    assert!(text.contains("datapath_id = \"000000000000012c\""));
    assert!(text.starts_with("listen = \"127.0.0.1:6653\""));
}
