//! Redis Sentinel: the sentinels say which server is the primary of a
//! named group, and the node follows them when they promote another.
//!
//! A connection manager reconnects to the address it was made with; after
//! a failover that address is a dead or demoted server. So the node keeps
//! its connections behind a swappable handle ([`Followed`]): the health
//! loop asks the sentinels every second where the primary is, and when the
//! answer changes it connects to the new primary, subscribes there to
//! everything the node listens to, and swaps the new connections in. Every
//! holder of a handle (the broker, sessions, registry, presence, the
//! subscription and delivery tasks) uses the new primary from then on.

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisFuture, Value};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How long one sentinel may take to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// The sentinels of one group, and how to reach its servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentinels {
    /// URLs of the sentinels (`redis://host:26379`; credentials in them are
    /// the sentinels' own).
    pub sentinels: Vec<String>,
    /// The group's name (`sentinel monitor <name> ...`).
    pub master: String,
    /// Scheme, credentials and database for the primary (its host and port
    /// come from the sentinels); None: `redis://` without credentials.
    pub primary: Option<String>,
}

impl Sentinels {
    /// The primary's URL, from the first sentinel that answers.
    pub async fn primary_url(&self, tls: &super::client::RedisTls) -> redis::RedisResult<String> {
        let mut last = None;
        for sentinel in &self.sentinels {
            match tokio::time::timeout(ASK_TIMEOUT, self.ask(sentinel, tls)).await {
                Ok(Ok(url)) => return Ok(url),
                Ok(Err(e)) => last = Some(e),
                Err(_) => last = Some(redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))),
            }
        }
        Err(last.unwrap_or_else(|| redis::RedisError::from((redis::ErrorKind::Client, "no sentinels configured"))))
    }

    async fn ask(&self, sentinel: &str, tls: &super::client::RedisTls) -> redis::RedisResult<String> {
        let client = super::client::client(sentinel, tls)?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let address: Option<(String, u16)> =
            redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(&self.master).query_async(&mut conn).await?;
        let (host, port) = address.ok_or_else(|| {
            redis::RedisError::from((
                redis::ErrorKind::Client,
                "the sentinel does not know the group",
                self.master.clone(),
            ))
        })?;
        Ok(self.url_for(&host, port))
    }

    /// The primary's URL at `host:port`, with the scheme, credentials and
    /// database of [`Sentinels::primary`].
    fn url_for(&self, host: &str, port: u16) -> String {
        let Some(template) = &self.primary else { return format!("redis://{host}:{port}") };
        let Ok(info) = template.as_str().into_connection_info() else { return format!("redis://{host}:{port}") };
        let scheme = if template.starts_with("rediss://") { "rediss" } else { "redis" };
        let settings = info.redis_settings();
        let credentials = match (settings.username(), settings.password()) {
            (Some(user), Some(password)) => format!("{}:{}@", encode(user), encode(password)),
            (None, Some(password)) => format!(":{}@", encode(password)),
            _ => String::new(),
        };
        format!("{scheme}://{credentials}{host}:{port}/{}", settings.db())
    }
}

/// Percent-encodes what a URL's user info cannot hold as it is.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A connection manager that can be replaced under its holders: each use
/// takes a clone of the current one (cheap: it is a handle), so no lock is
/// held across an await.
#[derive(Clone)]
pub struct Followed {
    current: Arc<RwLock<(String, ConnectionManager)>>,
}

impl Followed {
    pub fn new(url: String, manager: ConnectionManager) -> Followed {
        Followed { current: Arc::new(RwLock::new((url, manager))) }
    }

    pub fn manager(&self) -> ConnectionManager {
        self.current.read().unwrap_or_else(|e| e.into_inner()).1.clone()
    }

    pub fn url(&self) -> String {
        self.current.read().unwrap_or_else(|e| e.into_inner()).0.clone()
    }

    pub fn replace(&self, url: String, manager: ConnectionManager) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = (url, manager);
    }
}

impl ConnectionLike for Followed {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let mut manager = self.manager();
        Box::pin(async move { manager.req_packed_command(cmd).await })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let mut manager = self.manager();
        Box::pin(async move { manager.req_packed_commands(pipeline, offset, count).await })
    }

    fn get_db(&self) -> i64 {
        self.manager().get_db()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_primary_gets_the_credentials_of_the_template() {
        let mut sentinels = Sentinels { sentinels: vec![], master: "m".into(), primary: None };
        assert_eq!(sentinels.url_for("10.0.0.2", 6380), "redis://10.0.0.2:6380");
        sentinels.primary = Some("rediss://app:p%40ss@ignored:1/2".into());
        assert_eq!(sentinels.url_for("10.0.0.2", 6380), "rediss://app:p%40ss@10.0.0.2:6380/2");
    }
}
