//! Saved sessions in this process: the single-node default.

use crate::broker::BrokerError;
use crate::sessions::SessionStore;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Default)]
pub struct MemorySessions {
    /// Saved sessions and when they expire.
    sessions: Mutex<HashMap<String, (Vec<u8>, Instant)>>,
}

#[async_trait]
impl SessionStore for MemorySessions {
    async fn save(&self, token: &str, state: &[u8], ttl: Duration, update_only: bool) -> Result<(), BrokerError> {
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, (_, expires)| *expires > now);
        if !update_only || sessions.contains_key(token) {
            sessions.insert(token.to_owned(), (state.to_vec(), now + ttl));
        }
        Ok(())
    }

    async fn take(&self, token: &str) -> Result<Option<Vec<u8>>, BrokerError> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        Ok(sessions.remove(token).filter(|(_, expires)| *expires > Instant::now()).map(|(state, _)| state))
    }

    async fn get(&self, token: &str) -> Result<Option<Vec<u8>>, BrokerError> {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        Ok(sessions.get(token).filter(|(_, expires)| *expires > Instant::now()).map(|(state, _)| state.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sessions_expire() {
        let sessions = MemorySessions::default();
        sessions.save("t", b"state", Duration::from_secs(120), false).await.unwrap();
        tokio::time::advance(Duration::from_secs(119)).await;
        sessions.save("u", b"state", Duration::from_secs(120), false).await.unwrap();
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(sessions.take("t").await.unwrap(), None);
        assert_eq!(sessions.take("u").await.unwrap().as_deref(), Some(&b"state"[..]));
    }
}
