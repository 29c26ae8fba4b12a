//! The `iris-controller` process against API clients that would hold its
//! resources: clients that connect and send half a request or nothing,
//! more of them than the connection cap under a small open-file limit, a
//! body that never arrives, and an event stream open across SIGTERM; and
//! what its start says of an API that asks for no token.

#![allow(clippy::unwrap_used)]

mod launch;

use iris_testbed::bench::switch::{EmulatedSwitch, PacketInProfile, SwitchSpec};
use iris_testbed::controller::ControllerProcess;
use ofp::framing::Framer;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

const DPID: u64 = 1;

/// A controller with `api_limits` as its `[api_limits]` table, one host
/// (whose OVSDB never answers) with datapath id [`DPID`], and at most
/// `open_files` descriptors.
fn start(dir: &Path, api_limits: &str, open_files: u32) -> ControllerProcess {
    let config = dir.join("controller.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nplain_openflow = true\napi = \"127.0.0.1:0\"\nstore = \"{store}\"\n\n\
             [api_limits]\n{api_limits}\n\n\
             [[host]]\nname = \"pm1\"\nunderlay_ip = \"10.0.0.1\"\nrole = \"compute\"\n\
             ovsdb = \"unix:{dir}/no-ovsdb.sock\"\ndatapath_id = \"{DPID:016x}\"\n",
            store = dir.join("store").display(),
            dir = dir.display(),
        ),
    )
    .unwrap();
    // The shell sets both the soft and the hard limit.
    let wrapper = launch::wrapped_controller(dir, &format!("ulimit -n {open_files} || exit 3"), "");
    ControllerProcess::start(&wrapper, &config, &dir.join("controller.log")).unwrap()
}

/// The OpenFlow address from the controller's listening line.
fn openflow_addr(c: &mut ControllerProcess) -> SocketAddr {
    let line = c
        .wait_log("iris-controller listening", Duration::from_secs(5))
        .unwrap();
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("openflow=tcp:"))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no openflow=tcp: address in {line:?}"))
}

/// A switch answering the controller on a thread of its own, until the
/// controller closes the connection.
fn connect_switch(addr: SocketAddr) {
    connect_switch_as(addr, DPID);
}

/// [`connect_switch`] with datapath id `datapath_id`; the thread's handle
/// ends when the controller closes the connection.
fn connect_switch_as(addr: SocketAddr, datapath_id: u64) -> std::thread::JoinHandle<()> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    std::thread::spawn(move || {
        let mut sw = EmulatedSwitch::new(
            SwitchSpec {
                index: 0,
                datapath_id,
                ports: 1,
                n_buffers: 0,
            },
            PacketInProfile {
                reason: ofp::message::PacketInReason::NoMatch,
                table_id: 0,
                cookie: 0,
                forwarded: false,
            },
        );
        let mut out = Vec::new();
        sw.hello(&mut out);
        let mut framer = Framer::default();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            if !out.is_empty() && stream.write_all(&out).is_err() {
                return;
            }
            out.clear();
            let n = match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            framer.extend(&buf[..n]);
            while let Ok(Some(msg)) = framer.next_message() {
                let _ = sw.handle(msg, &mut out);
            }
        }
    })
}

/// Whether the server still holds `s` open (nothing to read, no EOF).
fn held(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    let open = matches!(s.peek(&mut b), Err(e) if e.kind() == ErrorKind::WouldBlock);
    s.set_nonblocking(false).unwrap();
    open
}

/// How long until the server closes `s` (reads EOF or a reset), reading
/// and discarding whatever it sends; `None` if still open after `within`.
fn closed_after(mut s: TcpStream, start: Instant, within: Duration) -> Option<Duration> {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None
            }
            Err(_) => return Some(start.elapsed()),
        }
        if start.elapsed() > within {
            return None;
        }
    }
}

#[test]
fn half_open_api_clients_beyond_the_cap_leave_room_for_a_switch_and_healthz() {
    let dir = tempfile::tempdir().unwrap();
    // A header timeout far beyond the test: the cap alone must keep the
    // descriptors; 64 of them could not hold 100 clients and a switch.
    let mut c = start(
        dir.path(),
        "max_connections = 8\nheader_timeout_secs = 120",
        64,
    );
    let openflow = openflow_addr(&mut c);
    let clients: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = TcpStream::connect_timeout(&c.api_addr(), Duration::from_secs(5)).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: iris\r\n")
                .unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));

    connect_switch(openflow);
    c.wait_ready(1, 0, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}\n{}", c.log_tail(20)));
    let still_held = clients.iter().filter(|s| held(s)).count();
    assert!(
        still_held <= 8,
        "{still_held} of 100 half-open clients still hold a connection; the cap is 8"
    );
}

#[test]
fn clients_that_send_half_a_request_nothing_or_half_a_body_are_closed_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(
        dir.path(),
        "header_timeout_secs = 1\nbody_timeout_secs = 1",
        1024,
    );
    let connect = || TcpStream::connect_timeout(&c.api_addr(), Duration::from_secs(5)).unwrap();
    let start = Instant::now();
    let silent = connect();
    let mut half_head = connect();
    half_head
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: iris\r\n")
        .unwrap();
    let mut half_body = connect();
    half_body
        .write_all(
            b"PUT /v1/hosts/pm9 HTTP/1.1\r\nHost: iris\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"name\":",
        )
        .unwrap();
    let within = Duration::from_secs(8);
    for (what, s) in [("nothing", silent), ("half a head", half_head)] {
        let after = closed_after(s, start, within).unwrap_or_else(|| {
            panic!("a client sending {what} still holds its connection after {within:?}")
        });
        assert!(
            after >= Duration::from_millis(900) && after < Duration::from_secs(4),
            "a client sending {what} was closed after {after:?}; the header timeout is 1 s"
        );
    }
    half_body
        .set_read_timeout(Some(Duration::from_secs(8)))
        .unwrap();
    let mut answer = String::new();
    let _ = half_body.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 400") && answer.contains("did not arrive within 1s"),
        "{answer:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "half a body was answered after {:?}",
        start.elapsed()
    );
}

#[test]
fn sigterm_ends_an_open_event_stream_and_exits_within_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path(), "shutdown_grace_secs = 5", 1024);
    let events = c.events().unwrap();
    let start = Instant::now();
    // SIGTERM, then SIGKILL if the process is still there after 30 s
    // (before the fix it stayed 20 s to over 2 minutes).
    let stopped = c.stop(Duration::from_secs(30));
    let took = start.elapsed();
    assert!(stopped.is_ok(), "{stopped:?}");
    assert!(
        took < Duration::from_secs(7),
        "the controller took {took:?} to exit with an event stream open"
    );
    events.finish().unwrap();
}

#[test]
fn rogue_switches_beyond_the_unknown_bound_are_disconnected_and_leave_room_for_a_real_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = start(dir.path(), "max_connections = 8", 64);
    let openflow = openflow_addr(&mut c);
    // More than 64 descriptors could hold, had each stayed connected.
    let rogues: Vec<_> = (0..70)
        .map(|i| connect_switch_as(openflow, 0xbad0_0000 + i))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while rogues.iter().filter(|r| r.is_finished()).count() < 70 - 16 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let closed = rogues.iter().filter(|r| r.is_finished()).count();
    assert_eq!(
        closed,
        70 - 16,
        "all but 16 unknown switches disconnected\n{}",
        c.log_tail(20)
    );
    // Those held apart are shown as unknown, never as configured switches.
    let health = c.get_json("/healthz").unwrap();
    assert_eq!(health["switches_ready"], 0, "{health}");
    assert_eq!(
        health["unknown_switches"].as_array().map(Vec::len),
        Some(16),
        "{health}"
    );
    connect_switch(openflow);
    c.wait_ready(1, 0, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}\n{}", c.log_tail(20)));
    assert!(c.log_tail(400).contains("already held apart: disconnected"));
}

#[test]
fn a_kept_alive_connection_left_idle_is_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path(), "header_timeout_secs = 1", 1024);
    let mut s = TcpStream::connect_timeout(&c.api_addr(), Duration::from_secs(5)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: iris\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = [0u8; 4096];
    let n = s.read(&mut answer).unwrap();
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
    let answered = Instant::now();
    let within = Duration::from_secs(8);
    let after = closed_after(s, answered, within)
        .unwrap_or_else(|| panic!("an idle kept-alive connection still open after {within:?}"));
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(4),
        "an idle kept-alive connection was closed after {after:?}; the header timeout is 1 s"
    );
}

#[test]
fn a_start_without_api_tokens_warns_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = start(dir.path(), "", 1024);
    let line = c
        .wait_log("[api_auth] has no token_hashes", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}\n{}", c.log_tail(20)));
    assert!(
        line.contains("WARN") && line.contains("asks for no token"),
        "{line}"
    );
}
