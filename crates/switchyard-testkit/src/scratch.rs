//! Scratch directories for tests, removed when dropped, even when the test
//! fails.

use std::path::{Path, PathBuf};

/// A fresh directory under the system's temp dir, named for `what`, this
/// process and a counter; removed with its contents on drop.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(what: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("switchyard-{what}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create a scratch dir");
        ScratchDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
