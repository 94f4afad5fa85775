//! The `switchyard` Redis function library: its source, and loading it.

use crate::broker::PublishOptions;
use redis::aio::ConnectionLike;
use tracing::{info, warn};

/// The library's version; a node never replaces a newer one.
pub const VERSION: i64 = 11;

const SOURCE: &str = include_str!("library.lua");

/// The library's source for `prefix`, with `PUBLISH` or `SPUBLISH`, and
/// the history settings of `namespaces` (those that keep history).
pub fn source(
    prefix: &str,
    sharded: bool,
    namespaces: &[(String, PublishOptions)],
    idempotency: std::time::Duration,
) -> String {
    let table: Vec<String> = namespaces
        .iter()
        .filter(|(_, options)| options.keeps_history())
        .map(|(name, o)| {
            // Namespace names are [A-Za-z0-9_\-.@/=,]: safe in a Lua string.
            format!(
                "  ['{name}'] = {{size = {}, ttl_ms = {}, meta_ttl_ms = {}}},",
                o.history_size,
                o.history_ttl.as_millis().max(1),
                o.history_meta_ttl.max(o.history_ttl).as_millis().max(1)
            )
        })
        .collect();
    SOURCE
        .replace("@PREFIX@", prefix)
        .replace("@PUBLISH@", if sharded { "SPUBLISH" } else { "PUBLISH" })
        .replace("@NAMESPACES@", &table.join("\n"))
        .replace("@IDEMPOTENCY_MS@", &idempotency.as_millis().max(1).to_string())
}

/// Loads the library unless a newer version is there already. Safe to run
/// from many nodes at once: each load replaces the library atomically.
pub async fn load<C: ConnectionLike + Send>(
    conn: &mut C,
    prefix: &str,
    sharded: bool,
    namespaces: &[(String, PublishOptions)],
    idempotency: std::time::Duration,
) -> redis::RedisResult<()> {
    let current: Option<i64> = redis::cmd("FCALL_RO").arg("switchyard_version").arg(0).query_async(conn).await.ok();
    if let Some(current) = current
        && current > VERSION
    {
        warn!(current, ours = VERSION, "a newer switchyard function library is loaded; keeping it");
        return Ok(());
    }
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(source(prefix, sharded, namespaces, idempotency))
        .query_async(conn)
        .await?;
    info!(version = VERSION, previous = ?current, "loaded the switchyard function library");
    Ok(())
}

/// Whether an error means the library is not loaded (e.g. Redis restarted
/// without persistence).
pub fn is_missing(error: &redis::RedisError) -> bool {
    error.to_string().contains("Function not found")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn settings_are_filled_in() {
        let chat = PublishOptions {
            history_size: 100,
            history_ttl: Duration::from_secs(600),
            history_meta_ttl: Duration::from_secs(86400),
        };
        let namespaces = [("chat".into(), chat), ("default".into(), PublishOptions::default())];
        let s = source("sy", true, &namespaces, Duration::from_secs(300));
        assert!(s.contains("local IDEMPOTENCY_MS = 300000"));
        assert!(s.contains("['chat'] = {size = 100, ttl_ms = 600000, meta_ttl_ms = 86400000},"));
        assert!(!s.contains("['default']"));
        assert!(s.contains("local PREFIX = 'sy'"));
        assert!(s.contains("local PUBLISH = 'SPUBLISH'"));
        assert!(!s.contains("@PREFIX@") && !s.contains("@PUBLISH@") && !s.contains("@NAMESPACES@"));
        assert!(!s.contains("@IDEMPOTENCY_MS@"));
    }
}
