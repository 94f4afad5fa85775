//! Wall-clock time as the protocol states it: Unix seconds and
//! microseconds. Envelopes carry microseconds (delivery latency), tokens
//! and the node registry seconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch; 0 if the clock is before it.
pub fn unix_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// Seconds since the Unix epoch; 0 if the clock is before it.
pub fn unix_seconds() -> u64 {
    unix_micros() / 1_000_000
}
