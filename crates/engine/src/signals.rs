//! Hears what other servers on the same database announce (PostgreSQL `LISTEN`) and wakes the loops here: workers when jobs became claimable, log followers when lines were stored or a job ended, the scheduler when schedules changed.
//!
//! The signals are hints (`cronium_store::signals`): every loop re-reads the
//! tables when woken and keeps a slow poll besides. What the listener cannot
//! hear is what was announced while it was not connected, so every connect
//! (the first one too) is followed by a [`Signal::Resync`] that wakes
//! everyone to read. Any error (a reset, `pg_terminate_backend`, a database
//! restart, a connection that stopped answering) drops the connection and
//! connects again after a backoff.

use std::sync::Arc;
use std::time::Duration;

use cronium_store::{Signal, SignalListener, Store};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::live::LogHub;

/// The first wait before connecting again; doubled after each failure.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// The longest wait between two tries.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A connection that lasted this long resets the backoff: the next loss is
/// a new incident, not the same flapping one.
const STABLE: Duration = Duration::from_secs(60);

/// What signals wake on this server.
#[derive(Clone)]
pub struct Wakers {
    /// The workers' wake-up (`worker::Workers`).
    pub jobs_queued: Arc<Notify>,
    /// The scheduler's wake-up (`scheduler::Scheduler`).
    pub schedules_changed: Arc<Notify>,
    /// Followers of job logs.
    pub hub: Arc<LogHub>,
}

impl Wakers {
    /// Wakes whoever `signal` concerns. A log or end signal for a job nobody
    /// here follows is dropped by the hub (a map lookup).
    pub fn route(&self, signal: Signal) {
        match signal {
            Signal::JobsQueued => self.jobs_queued.notify_one(),
            Signal::LogStored { job, seq } => self.hub.publish(job, seq),
            Signal::JobEnded(job) => self.hub.wake(job),
            Signal::SchedulesChanged => self.schedules_changed.notify_one(),
            Signal::Resync => {
                self.jobs_queued.notify_one();
                self.schedules_changed.notify_one();
                self.hub.wake_all();
            }
        }
    }
}

/// The listening loop: connect, resync, route signals until an error, wait,
/// connect again.
pub struct SignalRouter {
    listener: Box<dyn SignalListener>,
    wakers: Wakers,
    connects: watch::Sender<u64>,
}

impl SignalRouter {
    /// The router for `store`'s signals; `None` when the store has none to
    /// offer (SQLite: this server is the only one).
    pub fn new(store: &dyn Store, wakers: Wakers) -> Option<SignalRouter> {
        Some(SignalRouter {
            listener: store.signal_listener()?,
            wakers,
            connects: watch::channel(0).0,
        })
    }

    /// Counts the connections made so far; each was followed by a resync.
    pub fn connects(&self) -> watch::Receiver<u64> {
        self.connects.subscribe()
    }

    /// Listens until `cancel`, reconnecting after any error.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut backoff = BACKOFF_FIRST;
        let mut failures = 0u32;
        loop {
            let connected = tokio::select! {
                () = cancel.cancelled() => return,
                connected = self.listener.connect() => connected,
            };
            if let Err(e) = connected {
                failures += 1;
                tracing::warn!(error = %e, failures, retry_in = ?backoff, "cannot listen for other servers' signals; followers and workers poll meanwhile");
                if wait(&cancel, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
            if failures > 0 || *self.connects.borrow() > 0 {
                tracing::info!(failures, "listening for other servers' signals again");
            } else {
                tracing::info!("listening for other servers' signals");
            }
            failures = 0;
            let up = Instant::now();
            self.wakers.hub.set_listening(true);
            self.connects.send_modify(|n| *n += 1);
            // Whatever was announced while not listening is read now.
            self.wakers.route(Signal::Resync);
            let lost = loop {
                let received = tokio::select! {
                    () = cancel.cancelled() => {
                        self.wakers.hub.set_listening(false);
                        return;
                    }
                    received = self.listener.recv() => received,
                };
                match received {
                    Ok(signal) => self.wakers.route(signal),
                    Err(e) => break e,
                }
            };
            self.wakers.hub.set_listening(false);
            // Followers still waiting re-read now and poll fast until the
            // next connect.
            self.wakers.hub.wake_all();
            if up.elapsed() >= STABLE {
                backoff = BACKOFF_FIRST;
            }
            tracing::warn!(error = %lost, retry_in = ?backoff, "lost the connection listening for other servers' signals; reconnecting");
            if wait(&cancel, backoff).await {
                return;
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

/// Sleeps `pause`; `true` when cancelled meanwhile.
async fn wait(cancel: &CancellationToken, pause: Duration) -> bool {
    tokio::select! {
        () = cancel.cancelled() => true,
        () = tokio::time::sleep(pause) => false,
    }
}
