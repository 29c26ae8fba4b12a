use super::*;

#[test]
fn the_cap_is_a_quarter_of_the_open_file_limit_unless_configured() {
    let limits = ApiLimits::default();
    assert_eq!(max_connections(&limits, 1024), 256);
    assert_eq!(max_connections(&limits, 524_288), DEFAULT_MAX_CONNECTIONS);
    assert_eq!(max_connections(&limits, 8), 4);
    let limits = ApiLimits {
        max_connections: Some(3),
        ..limits
    };
    assert_eq!(max_connections(&limits, 1024), 3);
}

fn conn_state(c: &Conn, f: impl FnOnce(&mut ConnState)) {
    f(&mut c.state());
}

#[test]
fn eviction_takes_the_connection_idle_longest_and_never_one_with_a_request() {
    let open = Connections::default();
    let (a, b, c, d) = (open.add(), open.add(), open.add(), open.add());
    let now = Instant::now();
    let ago = |ms| now.checked_sub(Duration::from_millis(ms)).unwrap();
    for (conn, idle) in [(&a, 500), (&b, 900), (&c, 100)] {
        conn_state(conn, |s| {
            s.head_since = None;
            s.idle_since = ago(idle);
        });
    }
    // d was just accepted: its head may still be on its way.
    let busy = Busy::start(b.clone()).unwrap();
    assert!(open.evict_longest_idle());
    assert!(a.evict.is_cancelled() && !b.evict.is_cancelled() && !c.evict.is_cancelled());
    assert!(
        Busy::start(a.clone()).is_none(),
        "a closed connection carries nothing out"
    );
    assert!(open.evict_longest_idle());
    assert!(c.evict.is_cancelled());
    assert!(
        !open.evict_longest_idle(),
        "b has a request, d's head is young"
    );
    drop(busy);
    assert!(
        !open.evict_longest_idle(),
        "b's response is produced but not yet written to its socket"
    );
    conn_state(&b, |s| s.unflushed = false);
    assert!(open.evict_longest_idle());
    assert!(b.evict.is_cancelled());
    conn_state(&d, |s| s.head_since = Some(ago(300)));
    assert!(open.evict_longest_idle(), "d's head is overdue");
}

/// Clients far beyond the cap, all at once, each writing once on a
/// keep-alive connection: every one gets an answer, and every write that
/// was carried out was answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_the_cap_loses_no_answer() {
    use axum::routing::put;
    use std::collections::HashSet;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const CAP: usize = 4;
    const CLIENTS: usize = 60;
    let applied = Arc::new(Mutex::new(HashSet::new()));
    let router = Router::new().route(
        "/w/{id}",
        put({
            let applied = applied.clone();
            move |axum::extract::Path(id): axum::extract::Path<usize>| {
                let applied = applied.clone();
                async move {
                    applied.lock().unwrap().insert(id);
                    tokio::task::yield_now().await;
                    axum::http::StatusCode::CREATED
                }
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(
        listener,
        router,
        ApiLimits::default(),
        CAP,
        shutdown.clone(),
    ));
    let barrier = Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                let req =
                    format!("PUT /w/{id} HTTP/1.1\r\nHost: iris\r\nContent-Length: 2\r\n\r\n{{}}");
                if s.write_all(req.as_bytes()).await.is_err() {
                    return (id, None);
                }
                let mut got = Vec::new();
                let mut buf = [0u8; 1024];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                        _ => return (id, None),
                    }
                }
                let status = String::from_utf8_lossy(&got)
                    .split_whitespace()
                    .nth(1)
                    .map(str::to_owned);
                (id, status)
            })
        })
        .collect();
    let mut unanswered = Vec::new();
    let mut answered = HashSet::new();
    for c in clients {
        match c.await.unwrap() {
            (id, Some(status)) if status == "201" => {
                answered.insert(id);
            }
            (id, status) => unanswered.push((id, status)),
        }
    }
    shutdown.cancel();
    server.await.unwrap().unwrap();
    let applied = applied.lock().unwrap().clone();
    let lost: Vec<_> = applied.difference(&answered).collect();
    assert!(
        lost.is_empty(),
        "carried out but not answered 201: {lost:?}"
    );
    assert!(
        unanswered.is_empty(),
        "{} of {CLIENTS} clients got no 201: {unanswered:?}",
        unanswered.len()
    );
}

/// A client that has sent half a request head when shutdown begins is
/// closed at once, not after the grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_a_connection_with_half_a_head_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(
        listener,
        Router::new(),
        ApiLimits::default(),
        4,
        shutdown.clone(),
    ));
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: ir")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    shutdown.cancel();
    server.await.unwrap().unwrap();
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "shutdown took {took:?}; the grace is {:?}",
        ApiLimits::default().shutdown_grace
    );
    let mut buf = [0u8; 64];
    assert!(matches!(s.read(&mut buf).await, Ok(0) | Err(_)), "closed");
}
