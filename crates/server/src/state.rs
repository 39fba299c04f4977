//! What every request handler shares: the store, the sealer, the payload files, the metrics, the handles to wake the scheduler and workers, and the web UI's settings and sign-in limits, the trusted proxies.

use std::ops::Deref;
use std::sync::Arc;

use cronium_store::Store;

use tokio::sync::Notify;

use cronium_engine::live::LogHub;
use cronium_engine::payloads::PayloadFiles;
use cronium_engine::running::RunningJobs;
use cronium_engine::secrets::Sealer;
use cronium_exec::guard::Guard;

use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub store: Arc<dyn Store>,
    pub sealer: Sealer,
    /// Where outgoing HTTP may go: checked when an HTTP event is saved (the
    /// executor checks again at every run, DNS may have changed).
    pub http_guard: Guard,
    pub payloads: PayloadFiles,
    /// Payload versions kept per event.
    pub retention: usize,
    pub metrics: Metrics,
    /// Serializes the mutations that write or delete payload files (event
    /// create, update, delete) within this process. Without it, a failed
    /// update's cleanup could remove a file that a concurrent update of the
    /// same event has just written under the same version number (the
    /// version is reused once the failed transaction rolls back). On SQLite
    /// writes are serialized anyway, so this costs nothing there.
    pub payload_lock: tokio::sync::Mutex<()>,
    /// Live log fan-out to followers.
    pub hub: Arc<LogHub>,
    /// The jobs running on this node, to cancel them at once.
    pub running: RunningJobs,
    /// Wakes the workers: a job was queued.
    pub jobs_queued: Arc<Notify>,
    /// Wakes the scheduler: an event (and so maybe its schedule) changed.
    pub schedules_changed: Arc<Notify>,
    /// The web UI's session settings, clock and failed sign-in counts.
    pub ui: crate::ui::UiState,
    /// Whose forwarded headers say who the client is.
    pub trusted_proxies: crate::client::TrustedProxies,
}

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}
