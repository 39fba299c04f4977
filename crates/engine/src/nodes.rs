//! This server's heartbeat: its row in the database's list of servers (nodes), stamped with the database's clock, which every server shares, and a warning when its own clock is far from it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use cronium_store::{NodeBeat, Store, StoreError};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use crate::running::RunningJobs;

/// How often a server heartbeats.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// A server whose last heartbeat is older than this (by the database's
/// clock) is taken for gone.
pub const ALIVE_WITHIN: Duration = Duration::from_secs(15);
/// A clock further than this from the database's is reported.
pub const CLOCK_SKEW_LIMIT: Duration = Duration::from_secs(2);

/// One server's heartbeat.
pub struct Heartbeat {
    store: Arc<dyn Store>,
    id: String,
    address: String,
    started_at: DateTime<Utc>,
    running: RunningJobs,
}

impl Heartbeat {
    pub fn new(
        store: Arc<dyn Store>,
        id: String,
        address: String,
        started_at: DateTime<Utc>,
        running: RunningJobs,
    ) -> Heartbeat {
        Heartbeat {
            store,
            id,
            address,
            started_at,
            running,
        }
    }

    /// One heartbeat at `now` (this server's clock); returns how far this
    /// clock is from the database's, in milliseconds, and logs a warning
    /// past [`CLOCK_SKEW_LIMIT`].
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<i64, StoreError> {
        let beat = NodeBeat {
            id: self.id.clone(),
            address: self.address.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: self.started_at,
            local_now: now,
            running_jobs: self.running.count() as u64,
        };
        let database = self.store.node_heartbeat(&beat).await?;
        let offset = (now - database).num_milliseconds();
        if offset.unsigned_abs() > CLOCK_SKEW_LIMIT.as_millis() as u64 {
            tracing::warn!(
                offset_ms = offset,
                "this server's clock is far from the database's: leases and fire times follow the database"
            );
        }
        Ok(offset)
    }

    /// Heartbeats every [`HEARTBEAT_EVERY`] until `cancel`; a failed one is
    /// logged and the next tried (the database may come back).
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            if let Err(e) = self.tick(crate::now()).await {
                tracing::warn!(error = %e, "cannot record this server's heartbeat");
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(HEARTBEAT_EVERY) => {}
            }
        }
    }
}
