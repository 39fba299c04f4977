//! The jobs running on this node, so a cancel (or a replacing run) stops one at once instead of at its next heartbeat.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cronium_core::{EventId, JobId};
use tokio_util::sync::CancellationToken;

/// The jobs running on this node, and what the rest of the server may do
/// to them: stop them at once, where a heartbeat would learn of a
/// cancellation only seconds later.
#[derive(Clone, Default)]
pub struct RunningJobs(Arc<Mutex<HashMap<JobId, (EventId, CancellationToken)>>>);

impl RunningJobs {
    pub(crate) fn insert(&self, job: JobId, event: EventId, token: CancellationToken) {
        self.0
            .lock()
            .expect("running jobs lock")
            .insert(job, (event, token));
    }

    pub(crate) fn remove(&self, job: JobId) {
        self.0.lock().expect("running jobs lock").remove(&job);
    }

    /// Stops the job if it runs on this node; says whether it did.
    pub fn cancel(&self, job: JobId) -> bool {
        match self.0.lock().expect("running jobs lock").get(&job) {
            Some((_, token)) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    /// Stops every run of `event` on this node (a new run replaced them);
    /// returns how many.
    pub fn cancel_event(&self, event: EventId) -> usize {
        let jobs = self.0.lock().expect("running jobs lock");
        let mut stopped = 0;
        for (of, token) in jobs.values() {
            if *of == event {
                token.cancel();
                stopped += 1;
            }
        }
        stopped
    }

    /// Stops every job running on this node (it is shutting down).
    pub(crate) fn cancel_all(&self) {
        for (_, token) in self.0.lock().expect("running jobs lock").values() {
            token.cancel();
        }
    }

    pub fn contains(&self, job: JobId) -> bool {
        self.0.lock().expect("running jobs lock").contains_key(&job)
    }

    pub fn count(&self) -> usize {
        self.0.lock().expect("running jobs lock").len()
    }
}
