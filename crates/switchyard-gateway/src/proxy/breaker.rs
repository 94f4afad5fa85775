//! A circuit breaker: after `failures` failed requests in a row the
//! circuit opens and requests fail at once, without reaching the backend,
//! for `open_for`; then one request at a time probes it, and the first
//! success closes the circuit (a failed probe opens it again).
//!
//! A backend that is down then costs its clients an immediate 108 instead
//! of a timeout each, and the backend, once back, is not hit by every
//! waiting client at the same instant. Written here rather than taken from
//! a crate: it is a few lines over a mutex, and the crates that offer one
//! bring their own futures and timers.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is out; everyone else fails fast until it answers.
    Probing,
}

/// What the breaker says about a request about to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Send it.
    Yes,
    /// Send it: it is the probe of an open circuit.
    Probe,
    /// The circuit is open: fail it at once.
    No,
}

/// A change of the circuit, for the caller to log and count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Opened,
    Closed,
}

#[derive(Debug)]
pub struct Breaker {
    failures: u32,
    open_for: Duration,
    state: Mutex<State>,
}

impl Breaker {
    pub fn new(failures: u32, open_for: Duration) -> Self {
        Breaker { failures: failures.max(1), open_for, state: Mutex::new(State::Closed { failures: 0 }) }
    }

    pub fn admit(&self) -> Admit {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match *state {
            State::Closed { .. } => Admit::Yes,
            State::Open { until } if Instant::now() >= until => {
                *state = State::Probing;
                Admit::Probe
            }
            State::Open { .. } | State::Probing => Admit::No,
        }
    }

    /// Records how an admitted request went.
    pub fn record(&self, admitted: Admit, ok: bool) -> Option<Change> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match (*state, ok) {
            (State::Closed { .. }, true) => {
                *state = State::Closed { failures: 0 };
                None
            }
            (State::Closed { failures }, false) if failures + 1 >= self.failures => {
                *state = State::Open { until: Instant::now() + self.open_for };
                Some(Change::Opened)
            }
            (State::Closed { failures }, false) => {
                *state = State::Closed { failures: failures + 1 };
                None
            }
            (State::Probing, true) if admitted == Admit::Probe => {
                *state = State::Closed { failures: 0 };
                Some(Change::Closed)
            }
            (State::Probing, false) if admitted == Admit::Probe => {
                *state = State::Open { until: Instant::now() + self.open_for };
                None
            }
            // A request admitted before the circuit opened, answering late.
            (State::Probing | State::Open { .. }, _) => None,
        }
    }

    #[cfg(test)]
    fn is_open(&self) -> bool {
        !matches!(*self.state.lock().unwrap_or_else(|e| e.into_inner()), State::Closed { .. })
    }

    /// A probe that never answered (its request was dropped): let the next
    /// request probe instead of leaving the circuit stuck.
    pub fn abandon(&self, admitted: Admit) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if admitted == Admit::Probe && *state == State::Probing {
            *state = State::Open { until: Instant::now() };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_failures_in_a_row_and_closes_after_a_probe() {
        let breaker = Breaker::new(3, Duration::from_secs(5));
        // Successes reset the count.
        for ok in [false, false, true, false, false] {
            let admitted = breaker.admit();
            assert_eq!(admitted, Admit::Yes);
            assert_eq!(breaker.record(admitted, ok), None);
        }
        let admitted = breaker.admit();
        assert_eq!(breaker.record(admitted, false), Some(Change::Opened));
        assert_eq!(breaker.admit(), Admit::No);
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(breaker.admit(), Admit::No);
        tokio::time::advance(Duration::from_secs(1)).await;
        // One probe; others still fail fast while it is out.
        let probe = breaker.admit();
        assert_eq!(probe, Admit::Probe);
        assert_eq!(breaker.admit(), Admit::No);
        // A failed probe opens it again for the whole period.
        assert_eq!(breaker.record(probe, false), None);
        assert_eq!(breaker.admit(), Admit::No);
        tokio::time::advance(Duration::from_secs(5)).await;
        let probe = breaker.admit();
        assert_eq!(probe, Admit::Probe);
        assert_eq!(breaker.record(probe, true), Some(Change::Closed));
        assert!(!breaker.is_open());
        assert_eq!(breaker.admit(), Admit::Yes);
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_lets_the_next_request_probe() {
        let breaker = Breaker::new(1, Duration::from_secs(1));
        let admitted = breaker.admit();
        breaker.record(admitted, false);
        tokio::time::advance(Duration::from_secs(1)).await;
        let probe = breaker.admit();
        breaker.abandon(probe);
        assert_eq!(breaker.admit(), Admit::Probe);
        // A late answer of a request admitted before the circuit opened
        // changes nothing.
        assert_eq!(breaker.record(Admit::Yes, true), None);
        assert!(breaker.is_open());
    }
}
