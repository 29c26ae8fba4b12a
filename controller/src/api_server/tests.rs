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

#[test]
fn eviction_takes_the_connection_idle_longest_and_never_one_with_a_request() {
    let open = Connections::default();
    let (a, b, c) = (open.add(), open.add(), open.add());
    a.idle_since.store(5, Ordering::Relaxed);
    b.idle_since.store(1, Ordering::Relaxed);
    c.idle_since.store(9, Ordering::Relaxed);
    let busy = Busy::start(b.clone());
    assert!(open.evict_longest_idle());
    assert!(a.evict.is_cancelled() && !b.evict.is_cancelled() && !c.evict.is_cancelled());
    assert!(open.evict_longest_idle());
    assert!(c.evict.is_cancelled());
    assert!(!open.evict_longest_idle(), "b has a request in progress");
    drop(busy);
    assert!(open.evict_longest_idle());
    assert!(b.evict.is_cancelled());
}
