//! The `switchyard` Redis function library: its source, and loading it.

use redis::aio::ConnectionLike;
use tracing::{info, warn};

/// The library's version; a node never replaces a newer one.
pub const VERSION: i64 = 1;

const SOURCE: &str = include_str!("library.lua");

/// The library's source for `prefix`, with `PUBLISH` or `SPUBLISH`.
pub fn source(prefix: &str, sharded: bool) -> String {
    SOURCE.replace("@PREFIX@", prefix).replace("@PUBLISH@", if sharded { "SPUBLISH" } else { "PUBLISH" })
}

/// Loads the library unless a newer version is there already. Safe to run
/// from many nodes at once: each load replaces the library atomically.
pub async fn load<C: ConnectionLike + Send>(conn: &mut C, prefix: &str, sharded: bool) -> redis::RedisResult<()> {
    let current: Option<i64> = redis::cmd("FCALL_RO").arg("switchyard_version").arg(0).query_async(conn).await.ok();
    if let Some(current) = current
        && current > VERSION
    {
        warn!(current, ours = VERSION, "a newer switchyard function library is loaded; keeping it");
        return Ok(());
    }
    let _: String =
        redis::cmd("FUNCTION").arg("LOAD").arg("REPLACE").arg(source(prefix, sharded)).query_async(conn).await?;
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
    #[test]
    fn settings_are_filled_in() {
        let s = super::source("sy", true);
        assert!(s.contains("local PREFIX = 'sy'"));
        assert!(s.contains("local PUBLISH = 'SPUBLISH'"));
        assert!(!s.contains("@PREFIX@") && !s.contains("@PUBLISH@"));
    }
}
