use super::*;
use proptest::prelude::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn backoff_doubles_from_50_ms_to_5_s_and_resets_on_success() {
    let mut b = Backoff::default();
    let got: Vec<u64> = (0..10).map(|_| b.failed().as_millis() as u64).collect();
    assert_eq!(got, [50, 100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    b.succeeded();
    assert_eq!(b.failed(), BACKOFF_MIN);
}

#[test]
fn a_newer_report_of_a_waiting_key_replaces_it_in_place() {
    let t0 = Instant::now();
    let mut o = Outbox::default();
    assert_eq!(o.push("a", 1), Queued::New);
    assert_eq!(o.push("b", 1), Queued::New);
    assert_eq!(o.push("a", 2), Queued::Coalesced);
    assert_eq!(o.len(), 2);
    assert_eq!(o.take_batch(t0, 10), [("a", 2), ("b", 1)]);
}

#[test]
fn batches_are_bounded_and_one_is_in_flight_at_a_time() {
    let t0 = Instant::now();
    let mut o = Outbox::default();
    for k in 0..5 {
        o.push(k, ());
    }
    assert_eq!(o.take_batch(t0, 2).len(), 2);
    assert!(o.take_batch(t0, 2).is_empty(), "one batch in flight");
    assert_eq!(o.finish(t0, Vec::new()), None);
    assert_eq!(o.take_batch(t0, 2), [(2, ()), (3, ())]);
}

#[test]
fn a_failed_batch_waits_out_the_backoff_and_goes_first_again() {
    let t0 = Instant::now();
    let mut o = Outbox::default();
    o.push("a", 1);
    o.push("b", 1);
    let batch = o.take_batch(t0, 1);
    assert_eq!(batch, [("a", 1)]);
    o.push("c", 1);
    assert_eq!(o.finish(t0, batch), Some(ms(50)));
    assert_eq!(o.next_attempt(), Some(t0 + ms(50)));
    assert!(o.take_batch(t0 + ms(49), 10).is_empty());
    let batch = o.take_batch(t0 + ms(50), 10);
    assert_eq!(batch, [("a", 1), ("b", 1), ("c", 1)]);
    // Fails again: longer.
    assert_eq!(o.finish(t0 + ms(50), batch), Some(ms(100)));
    let batch = o.take_batch(t0 + ms(150), 10);
    assert_eq!(o.finish(t0 + ms(150), Vec::new()), None);
    assert_eq!(batch.len(), 3);
    assert!(o.is_empty());
    // After a success the first failure waits the least again.
    o.push("d", 1);
    let batch = o.take_batch(t0 + ms(150), 10);
    assert_eq!(o.finish(t0 + ms(150), batch), Some(ms(50)));
}

#[test]
fn a_report_newer_than_the_failed_one_is_kept() {
    let t0 = Instant::now();
    let mut o = Outbox::default();
    o.push("a", 1);
    let batch = o.take_batch(t0, 10);
    o.push("a", 2);
    o.finish(t0, batch);
    assert_eq!(o.take_batch(t0 + BACKOFF_MAX, 10), [("a", 2)]);
}

#[test]
fn beyond_the_bound_new_keys_are_dropped_and_counted_but_known_ones_coalesce() {
    let t0 = Instant::now();
    let mut o = Outbox::with_capacity(3);
    for k in 0..3 {
        assert_eq!(o.push(k, 0), Queued::New);
    }
    assert_eq!(o.push(3, 0), Queued::Dropped);
    assert_eq!(o.push(4, 0), Queued::Dropped);
    assert_eq!(o.dropped(), 2);
    assert_eq!(o.push(1, 9), Queued::Coalesced);
    // In flight still counts: a failed batch comes back without loss.
    let batch = o.take_batch(t0, 2);
    assert_eq!(o.push(5, 0), Queued::Dropped);
    o.finish(t0, batch);
    assert_eq!(o.len(), 3);
    assert_eq!(o.dropped(), 3);
}

#[test]
fn the_default_bound_is_65536_macs() {
    let mut o = Outbox::<u32, ()>::default();
    for k in 0..65536 {
        assert_eq!(o.push(k, ()), Queued::New);
    }
    assert_eq!(o.push(65536, ()), Queued::Dropped);
}

proptest! {
    /// Through any mix of pushes, successes and failures, every key pushed
    /// and not dropped is delivered once with its latest report, and the
    /// outbox never holds more than its bound.
    #[test]
    fn nothing_accepted_is_lost(
        ops in proptest::collection::vec((0..3u8, 0..20u32), 1..200),
    ) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut o = Outbox::with_capacity(8);
        let mut latest: HashMap<u32, u32> = HashMap::new();
        let mut delivered: HashMap<u32, u32> = HashMap::new();
        let mut flight: Vec<(u32, u32)> = Vec::new();
        for (n, (op, k)) in ops.into_iter().enumerate() {
            let v = n as u32;
            match op {
                0 => {
                    if o.push(k, v) != Queued::Dropped {
                        latest.insert(k, v);
                    }
                }
                1 => {
                    if flight.is_empty() {
                        now += BACKOFF_MAX;
                        flight = o.take_batch(now, 3);
                    } else {
                        for (k, v) in flight.drain(..) {
                            delivered.insert(k, v);
                        }
                        o.finish(now, Vec::new());
                    }
                }
                _ => {
                    let f = std::mem::take(&mut flight);
                    o.finish(now, f);
                }
            }
            prop_assert!(o.len() <= 8);
        }
        for (k, v) in flight.drain(..) {
            delivered.insert(k, v);
        }
        o.finish(now, Vec::new());
        loop {
            now += BACKOFF_MAX;
            let b = o.take_batch(now, 3);
            if b.is_empty() { break; }
            for (k, v) in b { delivered.insert(k, v); }
            o.finish(now, Vec::new());
        }
        prop_assert_eq!(delivered, latest);
    }
}
