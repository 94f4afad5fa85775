//! When the peer last showed a sign of life (any frame counts), and whether
//! it has connected yet (its first command).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::time::{Duration, Instant};

pub struct Liveness {
    start: Instant,
    /// Milliseconds after `start` of the last frame received.
    last_seen_ms: AtomicU64,
    connected: AtomicBool,
}

impl Liveness {
    pub fn new() -> Self {
        Liveness { start: Instant::now(), last_seen_ms: AtomicU64::new(0), connected: AtomicBool::new(false) }
    }

    pub fn mark_connected(&self) {
        self.connected.store(true, Ordering::Relaxed);
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_seen_ms.store(ms, Ordering::Relaxed);
    }

    /// How long the peer has been silent.
    pub fn silent_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_seen_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}
