//! When the peer last showed a sign of life (any frame counts), whether it
//! has connected yet (its first command), and until when its token holds.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::time::{Duration, Instant};

pub struct Liveness {
    start: Instant,
    /// Milliseconds after `start` of the last frame received.
    last_seen_ms: AtomicU64,
    connected: AtomicBool,
    /// Milliseconds after `start` past which the connection must close,
    /// unless refreshed; 0 for never. Set by the session, in the task that
    /// runs the connection's timed duties, which read it after every
    /// command ([`super::duties`]).
    expires_ms: AtomicU64,
}

impl Default for Liveness {
    fn default() -> Self {
        Self::new()
    }
}

impl Liveness {
    pub fn new() -> Self {
        Liveness {
            start: Instant::now(),
            last_seen_ms: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            expires_ms: AtomicU64::new(0),
        }
    }

    /// The connection must close at `at` unless this is called again.
    pub fn expire_at(&self, at: Instant) {
        let ms = at.saturating_duration_since(self.start).as_millis().max(1) as u64;
        self.expires_ms.store(ms, Ordering::Relaxed);
    }

    pub fn expires_at(&self) -> Option<Instant> {
        match self.expires_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.start + Duration::from_millis(ms)),
        }
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
