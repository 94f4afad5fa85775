//! The node's write clock, for `client.write_delay`: one timer for every
//! connection instead of one each. A writer with frames queued waits for
//! the clock's next tick and writes them then, so what comes meanwhile goes
//! in the same write. The clock ticks every `write_delay` while anyone
//! waits, and idles when nobody does: the first frame after a quiet spell
//! waits a whole `write_delay`, and under load a frame waits for the tick
//! already running, from nothing up to `write_delay` (half of it on
//! average), where a timer per writer, started at its first frame, would
//! make each of them wait the whole delay and round it up.

use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

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
    /// The ticking task waits for a writer.
    idle: bool,
    /// The ticking task has ended (the node stops): writers wait no more.
    halted: bool,
}

impl WriteClock {
    pub fn new(period: Duration) -> Arc<Self> {
        Arc::new(WriteClock {
            period,
            ticks: Mutex::new(Ticks { count: 0, waiting: Vec::new(), idle: false, halted: false }),
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
            if ticks.halted || registered.is_some_and(|count| ticks.count != count) {
                return Poll::Ready(());
            }
            // Pushed again on a wake-up from elsewhere (a close): waking a
            // writer twice at the tick is harmless.
            ticks.waiting.push(cx.waker().clone());
            registered = Some(ticks.count);
            if ticks.idle {
                ticks.idle = false;
                self.wanted.notify_one();
            }
            Poll::Pending
        })
        .await
    }

    /// Ticks while anyone waits, until `stop`; then every writer waiting
    /// is let go, and later ones do not wait. The node's duties run it.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        tokio::select! {
            () = stop.cancelled() => {}
            () = self.clone().tick() => {}
        }
        let waiting = {
            let mut ticks = self.ticks();
            ticks.halted = true;
            std::mem::take(&mut ticks.waiting)
        };
        for waker in waiting {
            waker.wake();
        }
    }

    async fn tick(self: Arc<Self>) {
        let mut interval = tokio::time::interval(self.period);
        // After a busy spell, tick on from now rather than catch up.
        interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
        interval.reset();
        loop {
            interval.tick().await;
            let (waiting, idle) = {
                let mut ticks = self.ticks();
                ticks.count += 1;
                let waiting = std::mem::take(&mut ticks.waiting);
                ticks.idle = waiting.is_empty();
                (waiting, ticks.idle)
            };
            for waker in waiting {
                waker.wake();
            }
            if idle {
                self.wanted.notified().await;
                // The first writer after an idle spell waits a whole period.
                interval.reset();
            }
        }
    }
}
