//! Live log fan-out: workers here, and other servers through the database's
//! signals (`crate::signals`), announce the newest stored line of a job;
//! followers wait for the announcement and read the lines from the database.
//!
//! Only a sequence number travels here, never log data: the database stays
//! the one source of truth, so a follower that connects late, reconnects
//! with `Last-Event-ID`, or follows a job running on another node sees
//! exactly the same lines in the same order.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cronium_core::JobId;
use tokio::sync::watch;

/// How often a follower re-reads while nothing wakes it and other servers'
/// lines come only by reading (SQLite, `--poll-only`, or the listener
/// reconnecting).
pub const FOLLOW_POLL: Duration = Duration::from_millis(500);
/// How often a follower re-reads while the listener hears every server's
/// signals: a safety net only, since a line stored anywhere wakes it.
pub const FOLLOW_POLL_LISTENING: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct LogHub {
    jobs: Mutex<HashMap<JobId, watch::Sender<u64>>>,
    /// The signal listener is connected: lines stored on other servers wake
    /// followers here (`crate::signals`).
    listening: AtomicBool,
}

impl LogHub {
    /// Wakes the followers of `job`: lines up to `seq` are stored.
    pub fn publish(&self, job: JobId, seq: u64) {
        let jobs = self.jobs.lock().expect("log hub lock");
        if let Some(sender) = jobs.get(&job) {
            sender.send_replace(seq);
        }
    }

    /// Wakes the followers of `job` without news of a line: the job ended
    /// on another server, and they will find it so.
    pub fn wake(&self, job: JobId) {
        let jobs = self.jobs.lock().expect("log hub lock");
        if let Some(sender) = jobs.get(&job) {
            sender.send_modify(|_| {});
        }
    }

    /// Wakes every follower to re-read: signals may have been missed.
    pub fn wake_all(&self) {
        let jobs = self.jobs.lock().expect("log hub lock");
        for sender in jobs.values() {
            sender.send_modify(|_| {});
        }
    }

    /// Whether lines stored on other servers wake followers here (the
    /// signal listener is connected); set by the listener.
    pub fn set_listening(&self, listening: bool) {
        self.listening.store(listening, Ordering::Relaxed);
    }

    /// How long a follower waits for a wake-up before it re-reads anyway.
    pub fn follow_poll(&self) -> Duration {
        if self.listening.load(Ordering::Relaxed) {
            FOLLOW_POLL_LISTENING
        } else {
            FOLLOW_POLL
        }
    }

    /// A receiver that changes whenever lines of `job` are stored here, and
    /// whose `changed()` fails once the job is [`LogHub::close`]d.
    pub fn subscribe(&self, job: JobId) -> watch::Receiver<u64> {
        let mut jobs = self.jobs.lock().expect("log hub lock");
        jobs.entry(job)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// The job's run on this node is over: followers wake and find it done.
    pub fn close(&self, job: JobId) {
        self.jobs.lock().expect("log hub lock").remove(&job);
    }

    /// A follower is gone: forget the job when nobody else follows it (a
    /// follower of a job running elsewhere creates an entry no worker closes).
    pub fn release(&self, job: JobId) {
        let mut jobs = self.jobs.lock().expect("log hub lock");
        if jobs.get(&job).is_some_and(|s| s.receiver_count() == 0) {
            jobs.remove(&job);
        }
    }
}
