//! A lease this node holds on a consumer's partition: renewed in the
//! background; valid, by this node's own clock, until a margin before the
//! store would let another node take it. The work under it checks
//! [`HeldLease::is_valid`] before every publication, so that a node that
//! was paused or cut off stops before its successor starts (the store
//! cannot tell it).

use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_broker::LeaseStore;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub struct HeldLease {
    name: String,
    holder: String,
    store: Arc<dyn LeaseStore>,
    valid_until: Arc<Mutex<Instant>>,
    lost: CancellationToken,
    renewer: JoinHandle<()>,
}

/// The part of the lease's time to live this node counts on: the rest
/// covers clocks that run at slightly different rates.
fn counted(ttl: Duration) -> Duration {
    ttl * 9 / 10
}

impl HeldLease {
    /// Takes `name` for `holder`; None if another holder has it (or the
    /// store is out of reach).
    pub async fn acquire(store: Arc<dyn LeaseStore>, name: String, holder: String, ttl: Duration) -> Option<HeldLease> {
        let asked = Instant::now();
        if !store.acquire(&name, &holder, ttl).await.unwrap_or(false) {
            return None;
        }
        let valid_until = Arc::new(Mutex::new(asked + counted(ttl)));
        let lost = CancellationToken::new();
        let renewer =
            tokio::spawn(renew(store.clone(), name.clone(), holder.clone(), ttl, valid_until.clone(), lost.clone()));
        Some(HeldLease { name, holder, store, valid_until, lost, renewer })
    }

    /// Whether this node may still act on it.
    pub fn is_valid(&self) -> bool {
        !self.lost.is_cancelled() && Instant::now() < *self.valid_until.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Completes when the lease is lost (taken, or not renewed in time).
    pub async fn lost(&self) {
        self.lost.cancelled().await;
    }

    /// Stops renewing and gives it up, so that another node takes it at
    /// once rather than after it expires.
    pub async fn release(self) {
        self.renewer.abort();
        let _ = self.store.release(&self.name, &self.holder).await;
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// Renews every third of `ttl`; marks the lease lost when another holder
/// has it, or when renewing failed until it ran out.
async fn renew(
    store: Arc<dyn LeaseStore>,
    name: String,
    holder: String,
    ttl: Duration,
    valid_until: Arc<Mutex<Instant>>,
    lost: CancellationToken,
) {
    loop {
        tokio::time::sleep(ttl / 3).await;
        let asked = Instant::now();
        match store.acquire(&name, &holder, ttl).await {
            Ok(true) => *valid_until.lock().unwrap_or_else(|e| e.into_inner()) = asked + counted(ttl),
            Ok(false) => break,
            Err(e) => {
                tracing::debug!(lease = %name, error = %e, "cannot renew the lease; trying again");
                if Instant::now() >= *valid_until.lock().unwrap_or_else(|e| e.into_inner()) {
                    break;
                }
            }
        }
    }
    lost.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_broker::MemoryLeases;

    #[tokio::test(start_paused = true)]
    async fn renewed_while_held_and_lost_when_taken() {
        let store: Arc<dyn LeaseStore> = Arc::new(MemoryLeases::default());
        let ttl = Duration::from_secs(3);
        let lease = HeldLease::acquire(store.clone(), "p".into(), "a".into(), ttl).await.unwrap();
        assert!(HeldLease::acquire(store.clone(), "p".into(), "b".into(), ttl).await.is_none());
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(lease.is_valid(), "renewed all along");
        // Another holder takes it (as after a pause longer than the ttl).
        store.release("p", "a").await.unwrap();
        assert!(store.acquire("p", "b", Duration::from_secs(60)).await.unwrap());
        tokio::time::timeout(Duration::from_secs(5), lease.lost()).await.expect("lost at the next renewal");
        assert!(!lease.is_valid());
    }
}
