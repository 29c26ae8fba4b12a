//! Waiting for something to become true, with a deadline, by polling.
//! Daemons are polled until they answer instead of being given a fixed sleep.

use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// What one look at the awaited condition found.
#[derive(Debug)]
pub(crate) enum Probe<T> {
    Ready(T),
    /// Not yet; the text says what was seen, for the timeout message.
    NotYet(String),
}

/// Polls `probe` until it is ready, fails, or `timeout` passes. The pause
/// between probes starts at 5 ms and doubles up to 100 ms, so fast daemons are
/// seen quickly and slow ones are not polled in a busy loop.
pub(crate) fn poll_until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<Probe<T>>,
) -> Result<T> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        let last = match probe()? {
            Probe::Ready(value) => return Ok(value),
            Probe::NotYet(last) => last,
        };
        let waited = start.elapsed();
        if waited >= timeout {
            return Err(Error::NotReady {
                what: what.to_owned(),
                waited,
                detail: last,
            });
        }
        thread::sleep(pause.min(timeout - waited));
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_once_ready() {
        let mut calls = 0;
        let got = poll_until("counter", Duration::from_secs(5), || {
            calls += 1;
            Ok(if calls == 3 {
                Probe::Ready(calls)
            } else {
                Probe::NotYet(format!("{calls} calls"))
            })
        })
        .unwrap();
        assert_eq!(got, 3);
    }

    #[test]
    fn times_out_with_the_last_observation() {
        let err = poll_until::<()>("never", Duration::from_millis(30), || {
            Ok(Probe::NotYet("still nothing".into()))
        })
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("never") && text.contains("still nothing"),
            "{text}"
        );
    }

    #[test]
    fn a_failed_probe_ends_the_wait() {
        let err = poll_until::<()>("fatal", Duration::from_secs(5), || {
            Err(Error::Usage("gone".into()))
        })
        .unwrap_err();
        assert!(matches!(err, Error::Usage(_)));
    }
}
