//! The time as the web UI's sessions and sign-in limits see it: the real clock, which tests may move forward.
//!
//! Sessions end after an idle and an absolute timeout measured in minutes
//! and hours; a test cannot wait that long, so it keeps a clone of the
//! server's [`Clock`] (through `Config::clock`) and advances it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};

/// The real time plus an offset that only ever grows. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_micros: Arc<AtomicI64>,
}

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        crate::now() + TimeDelta::microseconds(self.offset_micros.load(Ordering::Relaxed))
    }

    /// Moves this clock (and every clone of it) forward by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.offset_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_move_together() {
        let clock = Clock::default();
        let twin = clock.clone();
        let before = twin.now();
        clock.advance(std::time::Duration::from_secs(3600));
        assert!(twin.now() - before >= TimeDelta::hours(1));
    }
}
