//! This server's heartbeat: its row in the database's list of servers (nodes), stamped with the database's clock, which every server shares and this process's clock follows, and a warning when its own wall clock is far from it.

use std::time::{Duration, Instant};

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
/// A heartbeat answered slower than this says nothing of the clocks.
const SLOW_BEAT: Duration = Duration::from_millis(500);
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

    /// One heartbeat at `local_now` (this server's wall clock); anchors
    /// [`crate::clock`] to the database's time, returns how far the wall
    /// clock is from it, in milliseconds, and logs a warning past
    /// [`CLOCK_SKEW_LIMIT`].
    pub async fn tick(&self, local_now: DateTime<Utc>) -> Result<i64, StoreError> {
        let beat = NodeBeat {
            id: self.id.clone(),
            address: self.address.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: self.started_at,
            local_now,
            running_jobs: self.running.count() as u64,
        };
        let asked = Instant::now();
        let database = self.store.node_heartbeat(&beat).await?;
        let answered = Instant::now();
        crate::clock::anchor(database, asked, answered);
        let round_trip = answered - asked;
        if round_trip > SLOW_BEAT {
            // The database answered late (it was away, or busy): when it
            // read its clock is unknown, so the offset says nothing.
            tracing::debug!(
                ?round_trip,
                "a slow heartbeat; the clock offset is not judged"
            );
            return Ok(0);
        }
        let offset = (local_now - database).num_milliseconds();
        if offset.unsigned_abs() > CLOCK_SKEW_LIMIT.as_millis() as u64 {
            tracing::warn!(
                offset_ms = offset,
                "this server's clock is far from the database's: leases, fire times and the times it records follow the database's"
            );
        }
        Ok(offset)
    }

    /// Heartbeats every [`HEARTBEAT_EVERY`] until `cancel`, the first one
    /// [`HEARTBEAT_EVERY`] from now (the caller beat once on start, to set
    /// the clock); a failed one is logged and the next tried (the database
    /// may come back).
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(HEARTBEAT_EVERY) => {}
            }
            if let Err(e) = self.tick(Utc::now()).await {
                tracing::warn!(error = %e, "cannot record this server's heartbeat");
            }
        }
    }
}
