//! What the connections count on every socket write (frames, bytes and the
//! delivery latency) and every message read (messages, bytes), kept per
//! thread and summed when it is read: by the `/metrics` route and by the
//! node's registry heartbeat.
//!
//! A busy node writes tens of thousands of times a second per core, and a
//! busy publisher sends as many messages. Through
//! the Prometheus recorder each write cost about ten atomic
//! read-modify-writes on lines shared by every thread (two counters and the
//! admin's total, each with a generation beside it, and a histogram sample
//! behind an epoch pin). Here a write changes only its own thread's cells,
//! with plain loads and stores: only that thread ever writes them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use switchyard_core::metric::{self, LATENCY_BUCKETS};

const BUCKETS: usize = LATENCY_BUCKETS.len();

/// The bucket bounds in microseconds. Every bound is a whole number of
/// microseconds, so `latency_us <= bound_us` is the exporter's `le`.
const BOUNDS_US: [u64; BUCKETS] = {
    let mut bounds = [0u64; BUCKETS];
    let mut i = 0;
    while i < BUCKETS {
        bounds[i] = (LATENCY_BUCKETS[i] * 1e6) as u64;
        i += 1;
    }
    bounds
};

/// The help text of the latency histogram, which this module renders.
const LATENCY_HELP: &str = "From the publish time in the Envelope to the socket write.";

/// One thread's counts. Written by that thread alone, read by anyone.
#[derive(Default)]
struct Cells {
    frames: AtomicU64,
    bytes: AtomicU64,
    messages_in: AtomicU64,
    bytes_in: AtomicU64,
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    /// Samples per bucket, not cumulative: `[i]` counts those above bound
    /// `i - 1` and at most bound `i`. Samples above the last bound are only
    /// in the count.
    buckets: [AtomicU64; BUCKETS],
}

impl Cells {
    /// Counts one write; `add` is how a cell grows (see [`owned_add`]).
    fn record(&self, frames: usize, bytes: usize, latency_us: Option<u64>, add: fn(&AtomicU64, u64)) {
        add(&self.frames, frames as u64);
        add(&self.bytes, bytes as u64);
        if let Some(us) = latency_us {
            add(&self.latency_count, 1);
            add(&self.latency_sum_us, us);
            if let Some(bucket) = BOUNDS_US.iter().position(|&bound| us <= bound) {
                add(&self.buckets[bucket], 1);
            }
        }
    }
}

impl Cells {
    fn record_read(&self, messages: u64, bytes: u64, add: fn(&AtomicU64, u64)) {
        add(&self.messages_in, messages);
        add(&self.bytes_in, bytes);
    }
}

/// Adds to a cell only its owner writes: no read-modify-write needed.
fn owned_add(cell: &AtomicU64, n: u64) {
    cell.store(cell.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

fn shared_add(cell: &AtomicU64, n: u64) {
    cell.fetch_add(n, Ordering::Relaxed);
}

struct Slot {
    cells: Cells,
    /// Held by a live thread. A thread that ends frees its slot for the
    /// next one, which goes on adding to it: the sums stay whole and the
    /// list stays as long as the most threads ever alive at once.
    taken: AtomicBool,
}

static SLOTS: Mutex<Vec<Arc<Slot>>> = Mutex::new(Vec::new());

/// A write counted while a thread is being torn down, after its own slot
/// is gone: shared, so counted with read-modify-writes. Practically never.
static LATE: Cells = Cells {
    frames: AtomicU64::new(0),
    bytes: AtomicU64::new(0),
    messages_in: AtomicU64::new(0),
    bytes_in: AtomicU64::new(0),
    latency_count: AtomicU64::new(0),
    latency_sum_us: AtomicU64::new(0),
    buckets: [const { AtomicU64::new(0) }; BUCKETS],
};

fn slots() -> std::sync::MutexGuard<'static, Vec<Arc<Slot>>> {
    SLOTS.lock().unwrap_or_else(|e| e.into_inner())
}

struct Owned(Arc<Slot>);

impl Owned {
    fn claim() -> Self {
        let mut slots = slots();
        if let Some(free) =
            slots.iter().find(|s| s.taken.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok())
        {
            return Owned(free.clone());
        }
        let slot = Arc::new(Slot { cells: Cells::default(), taken: AtomicBool::new(true) });
        slots.push(slot.clone());
        Owned(slot)
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        self.0.taken.store(false, Ordering::Release);
    }
}

thread_local! {
    static OWNED: Owned = Owned::claim();
}

/// Counts one write of `frames` frames and `bytes` bytes, and, when it
/// carried a publication, the latency of the oldest one (µs).
pub fn record_write(frames: usize, bytes: usize, latency_us: Option<u64>) {
    if OWNED.try_with(|owned| owned.0.cells.record(frames, bytes, latency_us, owned_add)).is_err() {
        LATE.record(frames, bytes, latency_us, shared_add);
    }
}

/// Counts what was read from a client: `messages` whole messages, or
/// `bytes` bytes of frames.
pub fn record_read(messages: u64, bytes: u64) {
    if OWNED.try_with(|owned| owned.0.cells.record_read(messages, bytes, owned_add)).is_err() {
        LATE.record_read(messages, bytes, shared_add);
    }
}

/// The sums over every thread, as of when they were read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Totals {
    pub frames: u64,
    pub bytes: u64,
    /// Messages received from clients.
    pub messages_in: u64,
    pub bytes_in: u64,
    pub latency_count: u64,
    pub latency_sum_us: u64,
    /// Per bucket, not cumulative.
    pub buckets: [u64; BUCKETS],
}

impl Totals {
    fn add(&mut self, cells: &Cells) {
        let read = |cell: &AtomicU64| cell.load(Ordering::Relaxed);
        self.frames += read(&cells.frames);
        self.bytes += read(&cells.bytes);
        self.messages_in += read(&cells.messages_in);
        self.bytes_in += read(&cells.bytes_in);
        self.latency_count += read(&cells.latency_count);
        self.latency_sum_us += read(&cells.latency_sum_us);
        for (total, cell) in self.buckets.iter_mut().zip(&cells.buckets) {
            *total += read(cell);
        }
    }

    /// The latency histogram in the Prometheus text format, as the
    /// exporter writes its own (cumulative buckets, `+Inf`, sum, count).
    pub fn render_latency(&self, out: &mut String) {
        let name = metric::DELIVERY_LATENCY;
        let _ = writeln!(out, "# HELP {name} {LATENCY_HELP}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, n) in LATENCY_BUCKETS.iter().zip(self.buckets) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.latency_count);
        let _ = writeln!(out, "{name}_sum {}", self.latency_sum_us as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {}", self.latency_count);
        out.push('\n');
    }
}

/// Sums every thread's counts.
pub fn totals() -> Totals {
    let mut totals = Totals::default();
    for slot in slots().iter() {
        totals.add(&slot.cells);
    }
    totals.add(&LATE);
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    // The tallies are process-wide: each test looks at what it added.

    #[test]
    fn sums_writes_from_every_thread() {
        let before = totals();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        record_write(3, 100, None);
                    }
                });
            }
        });
        let after = totals();
        assert_eq!(after.frames - before.frames, 12_000);
        assert_eq!(after.bytes - before.bytes, 400_000);
    }

    #[test]
    fn a_thread_that_ends_leaves_its_counts_and_its_slot() {
        let before = totals();
        std::thread::spawn(|| record_write(1, 10, Some(50))).join().unwrap();
        let slots_after_first = slots().len();
        std::thread::spawn(|| record_write(1, 10, Some(50))).join().unwrap();
        assert_eq!(slots().len(), slots_after_first, "the second thread reused the freed slot");
        let after = totals();
        assert_eq!(after.frames - before.frames, 2);
        assert_eq!(after.latency_count - before.latency_count, 2);
    }

    #[test]
    fn latencies_fall_in_the_exporters_buckets() {
        // le is inclusive: 100 µs is in the first bucket, 101 µs in the second.
        let cells = Cells::default();
        for us in [100, 101, 250, 20_000_000] {
            cells.record(1, 1, Some(us), owned_add);
        }
        let mut totals = Totals::default();
        totals.add(&cells);
        let mut text = String::new();
        totals.render_latency(&mut text);
        let name = metric::DELIVERY_LATENCY;
        assert!(text.contains(&format!("# TYPE {name} histogram\n")));
        assert!(text.contains(&format!("{name}_bucket{{le=\"0.0001\"}} 1\n")));
        assert!(text.contains(&format!("{name}_bucket{{le=\"0.00025\"}} 3\n")));
        assert!(text.contains(&format!("{name}_bucket{{le=\"10\"}} 3\n")));
        assert!(text.contains(&format!("{name}_bucket{{le=\"+Inf\"}} 4\n")));
        assert!(text.contains(&format!("{name}_count 4\n")));
        assert!(text.contains(&format!("{name}_sum 20.000451\n")));
    }
}
