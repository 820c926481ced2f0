//! Free disk space on the data directory's file system, and whether the store accepts writes.
//!
//! sled 0.34 cannot go on after a failed write (it keeps the I/O error and fails every later
//! operation), so a full disk must never reach it: below a reserve of free space
//! (`[storage] min_free_mb`), document actors refuse new edits with `StorageFull` (HTTP 507)
//! while reads go on, and writing resumes by itself once space returns. The reserve absorbs
//! what is already accepted and in flight (edits, audit records) when the limit is crossed.
//!
//! Invariants:
//! - [`DiskSpace::writable`] is a lock-free read, cheap enough for every submit.
//! - The state flips to refusing at `min_free` and back to writable only above `min_free` plus
//!   [`RESUME_MARGIN_FRACTION`] of it, so it does not flap at the boundary.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::metrics::metrics;

/// Default free space kept on the data directory's file system.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 64 * 1024 * 1024;
/// How often free space is checked (by the store writer).
pub const DISK_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Writes resume once free space exceeds the reserve by this fraction of it.
pub const RESUME_MARGIN_FRACTION: u64 = 4;

/// The free-space guard. See the module documentation.
#[derive(Debug)]
pub struct DiskSpace {
    dir: Option<PathBuf>,
    min_free: u64,
    writable: AtomicBool,
    free: AtomicU64,
}

impl DiskSpace {
    /// A guard for the file system holding `dir`, keeping `min_free` bytes free.
    pub fn new(dir: &Path, min_free: u64) -> Arc<Self> {
        let d = DiskSpace {
            dir: Some(dir.to_path_buf()),
            min_free,
            writable: AtomicBool::new(true),
            free: AtomicU64::new(u64::MAX),
        };
        d.check();
        Arc::new(d)
    }

    /// A guard that never refuses (memory backend, tests).
    pub fn unlimited() -> Arc<Self> {
        Arc::new(DiskSpace {
            dir: None,
            min_free: 0,
            writable: AtomicBool::new(true),
            free: AtomicU64::new(u64::MAX),
        })
    }

    /// Whether new writes are accepted.
    pub fn writable(&self) -> bool {
        self.writable.load(Ordering::Relaxed)
    }

    /// Free bytes at the last check.
    pub fn free_bytes(&self) -> u64 {
        self.free.load(Ordering::Relaxed)
    }

    /// The reserve, in bytes.
    pub fn min_free(&self) -> u64 {
        self.min_free
    }

    /// Reads the free space now and updates the state; returns whether writes are accepted.
    pub fn check(&self) -> bool {
        let Some(dir) = &self.dir else {
            return true;
        };
        let free = match rustix::fs::statvfs(dir) {
            Ok(s) => s.f_bavail.saturating_mul(s.f_frsize),
            Err(e) => {
                warn!(error = %e, dir = %dir.display(), "cannot read free disk space");
                return self.writable();
            }
        };
        self.update(free)
    }

    /// Applies a reading of `free` bytes.
    fn update(&self, free: u64) -> bool {
        self.free.store(free, Ordering::Relaxed);
        metrics()
            .storage_free_bytes
            .set(i64::try_from(free).unwrap_or(i64::MAX));
        let was = self.writable();
        let resume_at = self
            .min_free
            .saturating_add(self.min_free / RESUME_MARGIN_FRACTION);
        let now = if was {
            free > self.min_free
        } else {
            free > resume_at
        };
        if now != was {
            self.writable.store(now, Ordering::Relaxed);
            metrics().storage_writable.set(i64::from(now));
            if now {
                info!(free, "disk space is back: accepting edits again");
            } else {
                warn!(
                    free,
                    min_free = self.min_free,
                    "disk space is below the reserve: refusing edits until space is freed \
                     ([storage] min_free_mb)"
                );
            }
        }
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_below_the_reserve_and_resumes_above_the_margin() {
        let d = DiskSpace {
            dir: None,
            min_free: 1000,
            writable: AtomicBool::new(true),
            free: AtomicU64::new(0),
        };
        assert!(d.update(5000));
        assert!(!d.update(1000));
        assert!(!d.writable());
        // Not yet: within the margin.
        assert!(!d.update(1200));
        assert!(d.update(1251));
        assert!(d.update(1001));
        assert_eq!(d.free_bytes(), 1001);
    }

    #[test]
    fn reads_the_real_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let d = DiskSpace::new(dir.path(), 0);
        assert!(d.writable());
        assert!(d.free_bytes() > 0 && d.free_bytes() < u64::MAX);
        let huge = DiskSpace::new(dir.path(), u64::MAX / 2);
        assert!(!huge.writable());
    }
}
