//! The open-loop publisher: `rate` publications per second in 1 ms ticks,
//! each stamped with the time its tick was due, however late the loop runs.

use crate::connection::Publisher;
use crate::{progress, schedule, stamp};
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};

/// Publishes for `duration`; publication `k` goes to `channel_for(k)`.
/// Returns how many were sent and how long that took.
pub async fn open_loop(
    publisher: &mut Publisher,
    rate: u64,
    duration: Duration,
    payload_bytes: usize,
    mut channel_for: impl FnMut(u64) -> String,
) -> anyhow::Result<(u64, Duration)> {
    let started = Instant::now();
    let ticks = duration.as_millis() as u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let origin_us = stamp::now_us();
    let mut sent = 0u64;
    let progress = progress::bar(ticks, "publishing");
    for n in 0..ticks {
        tick.tick().await;
        if n % 100 == 0 {
            progress.set_position(n);
        }
        let due = origin_us + n * 1000;
        for _ in 0..schedule::due_in_tick(rate, n) {
            publisher.publish(&channel_for(sent), &stamp::payload(due, payload_bytes)).await?;
            sent += 1;
        }
    }
    progress.finish_and_clear();
    Ok((sent, started.elapsed()))
}
