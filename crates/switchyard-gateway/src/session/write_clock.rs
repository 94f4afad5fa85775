//! The node's write clock, for `client.write_delay`: one timer for every
//! connection instead of one each. A writer with frames queued waits for
//! the clock's next tick and writes them then, so what comes meanwhile goes
//! in the same write. The clock ticks every `write_delay` while anyone
//! waits, and stops when nobody does: the first frame after a quiet spell
//! waits a whole `write_delay`, and under load a frame waits for the tick
//! already running, from nothing up to `write_delay` (half of it on
//! average), where a timer per writer, started at its first frame, would
//! make each of them wait the whole delay and round it up.

use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::MissedTickBehavior;

pub struct WriteClock {
    period: Duration,
    ticks: Mutex<Ticks>,
    /// Wakes the ticking task when a writer comes to a stopped clock.
    wanted: Notify,
}

struct Ticks {
    /// Ticks so far: a waiter is done once this has moved on.
    count: u64,
    /// The writers waiting for the next tick.
    waiting: Vec<Waker>,
    /// The ticking task has been started (by the first writer, in the
    /// runtime that writer runs in).
    started: bool,
    /// The ticking task waits for a writer.
    stopped: bool,
}

impl WriteClock {
    pub fn new(period: Duration) -> Arc<Self> {
        Arc::new(WriteClock {
            period,
            ticks: Mutex::new(Ticks { count: 0, waiting: Vec::new(), started: false, stopped: false }),
            wanted: Notify::new(),
        })
    }

    fn ticks(&self) -> MutexGuard<'_, Ticks> {
        // A panic while holding this lock leaves valid counts behind.
        self.ticks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves at the clock's next tick.
    pub async fn next_tick(self: &Arc<Self>) {
        let mut registered: Option<u64> = None;
        std::future::poll_fn(|cx| {
            let mut ticks = self.ticks();
            if registered.is_some_and(|count| ticks.count != count) {
                return Poll::Ready(());
            }
            // Pushed again on a wake-up from elsewhere (a close): waking a
            // writer twice at the tick is harmless.
            ticks.waiting.push(cx.waker().clone());
            registered = Some(ticks.count);
            if !ticks.started {
                ticks.started = true;
                tokio::spawn(self.clone().run());
            } else if ticks.stopped {
                ticks.stopped = false;
                self.wanted.notify_one();
            }
            Poll::Pending
        })
        .await
    }

    /// Ticks while anyone waits. Runs as long as the runtime does (the node
    /// holds the clock for its life).
    async fn run(self: Arc<Self>) {
        let mut interval = tokio::time::interval(self.period);
        // After a busy spell, tick on from now rather than catch up.
        interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
        interval.reset();
        loop {
            interval.tick().await;
            let (waiting, stopped) = {
                let mut ticks = self.ticks();
                ticks.count += 1;
                let waiting = std::mem::take(&mut ticks.waiting);
                ticks.stopped = waiting.is_empty();
                (waiting, ticks.stopped)
            };
            for waker in waiting {
                waker.wake();
            }
            if stopped {
                self.wanted.notified().await;
                // The first writer after the stop waits a whole period.
                interval.reset();
            }
        }
    }
}
