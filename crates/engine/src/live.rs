//! Live log fan-out within one process: workers announce the newest stored
//! line of a job, followers wait for the announcement and read the lines
//! from the database.
//!
//! Only a sequence number travels here, never log data: the database stays
//! the one source of truth, so a follower that connects late, reconnects
//! with `Last-Event-ID`, or follows a job running on another node (it then
//! polls) sees exactly the same lines in the same order.

use std::collections::HashMap;
use std::sync::Mutex;

use cronium_core::JobId;
use tokio::sync::watch;

#[derive(Default)]
pub struct LogHub {
    jobs: Mutex<HashMap<JobId, watch::Sender<u64>>>,
}

impl LogHub {
    /// Wakes the followers of `job`: lines up to `seq` are stored.
    pub fn publish(&self, job: JobId, seq: u64) {
        let jobs = self.jobs.lock().expect("log hub lock");
        if let Some(sender) = jobs.get(&job) {
            sender.send_replace(seq);
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
