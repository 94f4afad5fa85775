//! Leases of one process (the embedded single node).

use crate::broker::BrokerError;
use crate::leases::LeaseStore;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Default)]
pub struct MemoryLeases {
    held: Mutex<HashMap<String, (String, Instant)>>,
}

#[async_trait]
impl LeaseStore for MemoryLeases {
    async fn acquire(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, BrokerError> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match held.get(name) {
            Some((other, until)) if other != holder && *until > now => Ok(false),
            _ => {
                held.insert(name.to_owned(), (holder.to_owned(), now + ttl));
                Ok(true)
            }
        }
    }

    async fn release(&self, name: &str, holder: &str) -> Result<(), BrokerError> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.get(name).is_some_and(|(h, _)| h == holder) {
            held.remove(name);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_holder_at_a_time_until_it_expires_or_is_released() {
        let leases = MemoryLeases::default();
        let ttl = Duration::from_secs(5);
        assert!(leases.acquire("p0", "a", ttl).await.unwrap());
        assert!(!leases.acquire("p0", "b", ttl).await.unwrap());
        assert!(leases.acquire("p0", "a", ttl).await.unwrap(), "renewed");
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(leases.acquire("p0", "b", ttl).await.unwrap(), "expired");
        leases.release("p0", "a").await.unwrap();
        assert!(!leases.acquire("p0", "a", ttl).await.unwrap(), "not a's to release");
        leases.release("p0", "b").await.unwrap();
        assert!(leases.acquire("p0", "a", ttl).await.unwrap());
    }
}
