//! When to reconnect: the protocol's close-code table, and exponential
//! backoff with full jitter.

use std::time::Duration;

/// What a close means for a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconnect {
    /// 1001 (the node drains), 4012 (rebalance): reconnect and resume now.
    AtOnce,
    /// 1006, 1011, 4008, 4009, 4011, 4029 and anything unknown.
    Backoff,
    /// 1000, 1002, 1007, 1009, 4001, 4003: retrying would fail the same way.
    Never,
}

/// Whether and when to reconnect after a close with `code`.
pub fn reconnect_after(code: u16) -> Reconnect {
    match code {
        1001 | 4012 => Reconnect::AtOnce,
        1000 | 1002 | 1007 | 1009 | 4001 | 4003 => Reconnect::Never,
        _ => Reconnect::Backoff,
    }
}

/// Attempt `attempt`'s wait: uniformly random between zero and
/// min(`max`, `min` × 2^attempt), so clients that lost the same node spread
/// their reconnects.
pub fn backoff(attempt: u32, min: Duration, max: Duration) -> Duration {
    let ceiling = max.min(min.saturating_mul(1u32 << attempt.min(20)));
    ceiling.mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_close_code_table() {
        for code in [1001, 4012] {
            assert_eq!(reconnect_after(code), Reconnect::AtOnce);
        }
        for code in [1000, 1002, 1007, 1009, 4001, 4003] {
            assert_eq!(reconnect_after(code), Reconnect::Never);
        }
        for code in [1006, 1011, 4008, 4009, 4011, 4029, 4999] {
            assert_eq!(reconnect_after(code), Reconnect::Backoff);
        }
    }

    #[test]
    fn backoff_stays_within_doubling_bounds_and_spreads() {
        let (min, max) = (Duration::from_millis(500), Duration::from_secs(20));
        for attempt in 0..12 {
            let ceiling = max.min(min * 2u32.pow(attempt));
            for _ in 0..100 {
                assert!(backoff(attempt, min, max) <= ceiling);
            }
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| backoff(4, min, max)).collect();
        assert!(spread.len() > 40, "{} distinct waits of 50", spread.len());
    }
}
