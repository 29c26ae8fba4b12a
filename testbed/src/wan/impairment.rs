//! What a WAN does to the frames crossing it in one direction, as a sans-IO
//! model: given when a frame arrived and how long it is, say whether it is
//! lost and otherwise when it leaves. The relay's I/O threads feed it; tests
//! feed it made-up instants.
//!
//! The model, in order, for each frame:
//! 1. the queue limit: a frame arriving while `limit` frames are still in
//!    flight is dropped (netem's `limit`, 1000 frames by default);
//! 2. random loss with probability `loss`, independent per frame;
//! 3. the rate: frames are serialised one after another onto a link of
//!    `rate` bits/s (netem's `rate`), so a burst queues;
//! 4. the one-way `delay`, plus a jitter drawn uniformly from
//!    `[-jitter, +jitter]` (never below zero delay).
//!
//! Frames always leave in the order they arrived: a frame whose jitter would
//! let it overtake the one before leaves together with it instead. netem
//! reorders with jitter unless it has a rate or a FIFO child qdisc; a
//! testbed WAN that reorders would measure TCP's reordering recovery rather
//! than latency, which is not what the inter-cloud experiments ask.
//!
//! Randomness comes from a seeded generator, so a run is reproducible.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// netem's default queue limit, in frames.
pub const DEFAULT_LIMIT: usize = 1000;

/// The impairment of one direction of a WAN.
#[derive(Debug, Clone, PartialEq)]
pub struct Impairment {
    /// One-way delay.
    pub delay: Duration,
    /// Largest deviation from `delay`, either way.
    pub jitter: Duration,
    /// Probability that a frame is lost, 0 to 1.
    pub loss: f64,
    /// Link rate in bits per second; `None` is unlimited.
    pub rate: Option<u64>,
    /// Most frames in flight at once; more are dropped.
    pub limit: usize,
    /// Seed of the loss and jitter draws.
    pub seed: u64,
}

impl Default for Impairment {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            rate: None,
            limit: DEFAULT_LIMIT,
            seed: 1,
        }
    }
}

impl Impairment {
    /// A WAN that only delays, by `delay` each way.
    pub fn delay(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }

    /// A message naming the first setting that cannot be emulated.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.loss) {
            return Err(format!("loss {} is not a probability (0 to 1)", self.loss));
        }
        if self.rate == Some(0) {
            return Err("rate 0 would carry nothing; leave it out for no limit".into());
        }
        if self.limit == 0 {
            return Err("a queue limit of 0 frames would carry nothing".into());
        }
        Ok(())
    }
}

/// What becomes of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It leaves at this instant.
    Deliver(Instant),
    /// Random loss took it.
    Lost,
    /// The queue was full.
    Overflow,
}

/// The state of one direction: the generator, when the link is next free,
/// and when the frames in flight leave.
#[derive(Debug, Clone)]
pub struct Model {
    impairment: Impairment,
    rng: SplitMix64,
    link_free: Option<Instant>,
    last_departure: Option<Instant>,
    in_flight: VecDeque<Instant>,
}

impl Model {
    pub fn new(impairment: Impairment) -> Self {
        Self {
            rng: SplitMix64(impairment.seed),
            impairment,
            link_free: None,
            last_departure: None,
            in_flight: VecDeque::new(),
        }
    }

    pub fn impairment(&self) -> &Impairment {
        &self.impairment
    }

    /// Decides the fate of a frame of `len` bytes arriving at `now`; `now`
    /// must not go backwards between calls.
    pub fn admit(&mut self, now: Instant, len: usize) -> Verdict {
        while self.in_flight.front().is_some_and(|due| *due <= now) {
            self.in_flight.pop_front();
        }
        if self.in_flight.len() >= self.impairment.limit {
            return Verdict::Overflow;
        }
        if self.impairment.loss > 0.0 && self.rng.unit() < self.impairment.loss {
            return Verdict::Lost;
        }
        let start = self.link_free.map_or(now, |free| free.max(now));
        let sent = match self.impairment.rate {
            Some(rate) => start + serialisation(len, rate),
            None => start,
        };
        self.link_free = Some(sent);
        let mut departure = sent + self.impairment.delay;
        let jitter = self.impairment.jitter;
        if !jitter.is_zero() {
            // Uniform over [-jitter, +jitter] in nanoseconds.
            let span = jitter.as_nanos() as f64;
            let offset = (self.rng.unit() * 2.0 - 1.0) * span;
            let shifted = self.impairment.delay.as_nanos() as f64 + offset;
            departure = sent + Duration::from_nanos(shifted.max(0.0) as u64);
        }
        if let Some(last) = self.last_departure {
            departure = departure.max(last);
        }
        self.last_departure = Some(departure);
        self.in_flight.push_back(departure);
        Verdict::Deliver(departure)
    }
}

/// How long `len` bytes take on a link of `rate` bits/s.
fn serialisation(len: usize, rate: u64) -> Duration {
    let bits = len as u128 * 8;
    Duration::from_nanos((bits * 1_000_000_000 / u128::from(rate.max(1))) as u64)
}

/// Sebastiano Vigna's SplitMix64: small, seedable, and good enough for loss
/// and jitter draws.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivered(verdict: Verdict) -> Instant {
        match verdict {
            Verdict::Deliver(at) => at,
            other => panic!("expected delivery, got {other:?}"),
        }
    }

    #[test]
    fn a_delay_alone_shifts_every_frame_by_exactly_the_delay() {
        let t0 = Instant::now();
        let mut m = Model::new(Impairment::delay(Duration::from_millis(50)));
        for i in 0..100u64 {
            let now = t0 + Duration::from_micros(i * 10);
            assert_eq!(
                delivered(m.admit(now, 1500)),
                now + Duration::from_millis(50)
            );
        }
    }

    #[test]
    fn jitter_stays_within_its_bounds_and_keeps_the_order() {
        let t0 = Instant::now();
        let delay = Duration::from_millis(20);
        let jitter = Duration::from_millis(5);
        let mut m = Model::new(Impairment {
            delay,
            jitter,
            seed: 7,
            ..Impairment::default()
        });
        let mut last = t0;
        let mut spread = (Duration::MAX, Duration::ZERO);
        for i in 0..10_000u64 {
            // Frames 1 ms apart: jitter alone (±5 ms) would reorder them.
            let now = t0 + Duration::from_millis(i);
            let at = delivered(m.admit(now, 100));
            assert!(at >= last, "frame {i} overtook the one before");
            last = at;
            let taken = at - now;
            assert!(taken >= delay - jitter, "frame {i} took {taken:?}");
            assert!(taken <= delay + jitter, "frame {i} took {taken:?}");
            spread = (spread.0.min(taken), spread.1.max(taken));
        }
        // The draws do cover the range rather than sit on the mean.
        assert!(spread.1 - spread.0 > Duration::from_millis(5), "{spread:?}");
    }

    #[test]
    fn loss_is_close_to_its_probability_and_reproducible() {
        let t0 = Instant::now();
        let impairment = Impairment {
            loss: 0.1,
            seed: 42,
            ..Impairment::default()
        };
        let run = |mut m: Model| -> Vec<bool> {
            (0..100_000u64)
                .map(|i| m.admit(t0 + Duration::from_micros(i), 64) == Verdict::Lost)
                .collect()
        };
        let first = run(Model::new(impairment.clone()));
        let lost = first.iter().filter(|l| **l).count();
        // Binomial(100000, 0.1): sd ≈ 95, so ±600 is over six sd.
        assert!((9_400..=10_600).contains(&lost), "{lost} lost");
        assert_eq!(first, run(Model::new(impairment)));
    }

    #[test]
    fn the_rate_spaces_a_burst_by_its_serialisation_time() {
        let t0 = Instant::now();
        let mut m = Model::new(Impairment {
            delay: Duration::from_millis(10),
            rate: Some(12_000_000), // 1500 bytes take 1 ms
            ..Impairment::default()
        });
        // 100 frames at once leave 1 ms apart, the first after 1 + 10 ms.
        let times: Vec<Instant> = (0..100).map(|_| delivered(m.admit(t0, 1500))).collect();
        for (i, at) in times.iter().enumerate() {
            assert_eq!(*at - t0, Duration::from_millis(11 + i as u64));
        }
        // An idle link sends the next frame at once.
        let later = t0 + Duration::from_secs(1);
        assert_eq!(
            delivered(m.admit(later, 1500)) - later,
            Duration::from_millis(11)
        );
    }

    #[test]
    fn a_full_queue_drops_until_frames_have_left() {
        let t0 = Instant::now();
        let mut m = Model::new(Impairment {
            delay: Duration::from_millis(10),
            limit: 3,
            ..Impairment::default()
        });
        for _ in 0..3 {
            delivered(m.admit(t0, 100));
        }
        assert_eq!(m.admit(t0, 100), Verdict::Overflow);
        // Once they are due the queue has room again.
        delivered(m.admit(t0 + Duration::from_millis(10), 100));
    }

    #[test]
    fn bad_settings_are_refused_with_the_setting_named() {
        let bad = |i: Impairment| i.validate().unwrap_err();
        assert!(bad(Impairment {
            loss: 1.5,
            ..Impairment::default()
        })
        .contains("loss"));
        assert!(bad(Impairment {
            rate: Some(0),
            ..Impairment::default()
        })
        .contains("rate"));
        assert!(bad(Impairment {
            limit: 0,
            ..Impairment::default()
        })
        .contains("limit"));
        assert!(Impairment::default().validate().is_ok());
    }
}
