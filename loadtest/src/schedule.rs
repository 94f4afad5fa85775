//! Open-loop publishing: a fixed rate, sent in 1 ms ticks, each message
//! stamped with the tick it belongs to, however late the sender runs.

/// How many messages tick `n` (from 0) sends so that after `n + 1` ticks
/// exactly `rate * (n + 1) / 1000` have gone, rounding evenly.
pub fn due_in_tick(rate_per_second: u64, n: u64) -> u64 {
    let total = |ticks: u64| rate_per_second * ticks / 1000;
    total(n + 1) - total(n)
}

#[cfg(test)]
mod tests {
    use super::due_in_tick;

    #[test]
    fn rates_are_kept_exactly() {
        for rate in [1, 250, 1000, 1500, 123_457] {
            let sent: u64 = (0..1000).map(|n| due_in_tick(rate, n)).sum();
            assert_eq!(sent, rate, "rate {rate}");
            assert!((0..1000).all(|n| due_in_tick(rate, n) <= rate / 1000 + 1));
        }
    }
}
