//! The worker pool: claims queued jobs, runs each through the executors (on
//! this host, or on its servers over SSH), stores its output as it comes,
//! keeps its lease alive, and reports how it ended.
//!
//! One step is [`Workers::tick`]: claim jobs while a slot is free and start
//! them. [`Workers::run`] loops it until cancelled. Every report a running
//! job makes (log lines, heartbeats, the result) carries its [`Fence`], so
//! once its lease has been recovered elsewhere nothing it says is stored.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cronium_core::job::retry_delay;
use cronium_core::{HttpSpec, JobStatus, RunLocation, WorkflowRunId};
use cronium_store::{Claim, Fence, Job, JobOutcome, LogLine, LogStream, Store, StoreError};
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;

use cronium_exec::http::HttpCall;
use cronium_exec::{
    Attempt, Executors, Helpers, OutputLine, RunReport, RunRequest, Secrets, Stream,
};

use crate::helpers::AttemptHelpers;
use crate::live::LogHub;
use crate::payloads::PayloadFiles;
use crate::retry::random_fraction;
use crate::running::RunningJobs;
use crate::secrets::Sealer;
use crate::servers::{Resolved, open_server, resolve_targets};

/// How often an idle pool looks for work it was not told about (retries
/// whose time has come, jobs queued by other nodes).
const IDLE_POLL: Duration = Duration::from_millis(250);
/// Output is stored at least this often while a job runs, so followers see
/// it live; and in batches, so a chatty script costs few transactions.
const FLUSH_EVERY: Duration = Duration::from_millis(50);
const FLUSH_LINES: usize = 256;

/// What the pool needs to know; everything else it gets from the store.
pub struct WorkerConfig {
    /// This node's lease owner name (unique per process).
    pub owner: String,
    /// Jobs run at once by this node (the global concurrency limit).
    pub slots: usize,
    /// How long a claim or heartbeat holds a job; heartbeats come at a third of it.
    pub lease: Duration,
    /// Bytes of output stored per attempt: past it, the first and last
    /// halves are kept with a marker line between.
    pub log_limit: u64,
    /// After a shutdown, how long running jobs may go on before they are
    /// stopped and handed back.
    pub drain: Duration,
    /// Where this server writes payloads and work dirs: with less than
    /// [`MIN_FREE_SPACE`] free there it claims no job, which would only fail
    /// here and use up a retry another server could have run.
    pub data_dir: Option<std::path::PathBuf>,
}

/// Free space a server's data dir needs for it to claim jobs.
pub const MIN_FREE_SPACE: u64 = 8 << 20;

/// After the drain, how long stopped jobs get to end and be handed back:
/// the runner's SIGTERM-to-SIGKILL grace and a margin.
const HAND_BACK_WITHIN: Duration = Duration::from_secs(15);

pub struct Workers {
    store: Arc<dyn Store>,
    executors: Arc<Executors>,
    payloads: PayloadFiles,
    sealer: Sealer,
    hub: Arc<LogHub>,
    config: WorkerConfig,
    slots: Arc<Semaphore>,
    /// Notified when jobs are queued or a slot frees up.
    wake: Arc<Notify>,
    /// The jobs running here, so a cancel can stop one at once rather than
    /// at its next heartbeat.
    running: RunningJobs,
    /// Notified when a job starts or reaches its final result and
    /// notifications are owed, so the delivery worker need not wait for its
    /// next poll.
    ended: Arc<Notify>,
    /// Cancelled once the jobs still running at shutdown are to be stopped
    /// and handed back to the database for another server.
    hand_back: CancellationToken,
    /// Set while the data dir is too full to claim jobs.
    full: std::sync::atomic::AtomicBool,
}

/// Bytes an unprivileged writer may still use on the file system of `dir`.
fn free_space(dir: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: a NUL-terminated path and a pointer to a statvfs to fill.
    if unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs succeeded, so it filled the struct.
    let stat = unsafe { stat.assume_init() };
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

impl Workers {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        executors: Arc<Executors>,
        payloads: PayloadFiles,
        sealer: Sealer,
        hub: Arc<LogHub>,
        running: RunningJobs,
        wake: Arc<Notify>,
        config: WorkerConfig,
    ) -> Workers {
        Workers {
            slots: Arc::new(Semaphore::new(config.slots)),
            store,
            executors,
            payloads,
            sealer,
            hub,
            config,
            wake,
            running,
            ended: Arc::new(Notify::new()),
            hand_back: CancellationToken::new(),
            full: Default::default(),
        }
    }

    /// Whether the data dir has room for another job; says so in the log
    /// when that changes.
    fn has_room(&self) -> bool {
        let Some(dir) = &self.config.data_dir else {
            return true;
        };
        let room = match free_space(dir) {
            Ok(free) => free >= MIN_FREE_SPACE,
            Err(e) => {
                tracing::debug!(dir = %dir.display(), error = %e, "cannot read the data dir's free space");
                true
            }
        };
        let was = self.full.swap(!room, std::sync::atomic::Ordering::Relaxed);
        match (was, room) {
            (false, false) => {
                tracing::warn!(dir = %dir.display(), "the data dir is full: claiming no jobs until it has room")
            }
            (true, true) => {
                tracing::info!(dir = %dir.display(), "the data dir has room again: claiming jobs")
            }
            _ => {}
        }
        room
    }

    /// Cancelling this token during a shutdown ends the drain at once: the
    /// jobs still running are stopped and handed back (a second SIGTERM).
    pub fn hand_back_token(&self) -> CancellationToken {
        self.hand_back.clone()
    }

    /// Notifies `ended` whenever a job this pool runs starts or reaches its
    /// final result with notifications owed.
    pub fn wake_deliveries(mut self, ended: Arc<Notify>) -> Workers {
        self.ended = ended;
        self
    }

    /// Claims and starts jobs while slots are free; returns how many started.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        if !self.has_room() {
            return Ok(0);
        }
        let mut started = 0;
        while let Ok(permit) = self.slots.clone().try_acquire_owned() {
            let asked = tokio::time::Instant::now();
            let Some(claim) = self
                .store
                .claim_job(&self.config.owner, now, self.config.lease)
                .await?
            else {
                break;
            };
            started += 1;
            if claim.owes_deliveries {
                self.ended.notify_one();
            }
            let cancel = CancellationToken::new();
            self.running
                .insert(claim.job.id, claim.job.event_id, cancel.clone());
            let attempt = JobRun {
                store: self.store.clone(),
                executors: self.executors.clone(),
                payloads: self.payloads.clone(),
                sealer: self.sealer.clone(),
                hub: self.hub.clone(),
                lease: self.config.lease,
                held: watch::channel(asked + runs_for(self.config.lease)).0,
                log_limit: self.config.log_limit,
                ended: self.ended.clone(),
                hand_back: self.hand_back.clone(),
            };
            let running = self.running.clone();
            let wake = self.wake.clone();
            let store = self.store.clone();
            tokio::spawn(async move {
                let id = claim.job.id;
                let run = claim.job.metadata["workflow"]["run"].as_i64();
                let ended = attempt.run(claim, cancel).await;
                running.remove(id);
                drop(permit);
                // A slot is free, and a job queued behind this one (the next
                // node of a workflow, say) may start.
                wake.notify_one();
                // Only a node that did not succeed can have made its run
                // stop the others (fail fast).
                if let (Some(run), Some(status)) = (run, ended)
                    && status.is_terminal()
                    && status != JobStatus::Succeeded
                {
                    stop_asked(&*store, &running, WorkflowRunId(run)).await;
                }
            });
        }
        Ok(started)
    }

    /// Ticks until `cancel`, waking when jobs are queued or slots free up,
    /// and closes SSH connections that have been idle for long; then
    /// [drains](Workers::drain).
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            if let Err(e) = self.tick(crate::now()).await {
                tracing::error!(error = %e, "cannot claim jobs; retrying");
            }
            self.executors.close_idle(tokio::time::Instant::now()).await;
            tokio::select! {
                () = cancel.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
            }
        }
        self.drain().await;
    }

    /// A shutdown: no more claims; the running jobs get `config.drain` to
    /// finish, then are stopped and handed back to the database, so another
    /// server runs them at once instead of after their lease. Returns once
    /// every job has ended or been handed back (or, if the database is
    /// gone, after a bound: their leases then expire as after a crash).
    pub async fn drain(&self) {
        let running = self.running.count();
        if running == 0 {
            return;
        }
        let slots = u32::try_from(self.config.slots).unwrap_or(u32::MAX);
        let all_ended = self.slots.acquire_many(slots);
        tokio::pin!(all_ended);
        tracing::info!(
            jobs = running,
            within = ?self.config.drain,
            "stopping: waiting for the running jobs to finish"
        );
        tokio::select! {
            _ = &mut all_ended => return,
            () = tokio::time::sleep(self.config.drain) => {}
            () = self.hand_back.cancelled() => {}
        }
        tracing::info!(
            jobs = self.running.count(),
            "stopping: handing the jobs still running back for another server"
        );
        self.hand_back.cancel();
        self.running.cancel_all();
        if tokio::time::timeout(HAND_BACK_WITHIN, all_ended)
            .await
            .is_err()
        {
            tracing::warn!(
                jobs = self.running.count(),
                "jobs did not end in time; their leases will expire"
            );
        }
    }
}

/// A node's end may have asked the other nodes of its run to stop (fail
/// fast): those running here stop now rather than at their next heartbeat.
async fn stop_asked(store: &dyn Store, running: &RunningJobs, run: WorkflowRunId) {
    let Ok(run) = store.get_workflow_run(run).await else {
        return;
    };
    for node in run.nodes {
        if let Some((job, JobStatus::Running)) = node.job
            && running.contains(job)
            && store.get_job(job).await.is_ok_and(|j| j.cancel_requested)
        {
            running.cancel(job);
        }
    }
}

/// Everything one attempt needs, owned, so it runs in a task of its own.
struct JobRun {
    store: Arc<dyn Store>,
    executors: Arc<Executors>,
    payloads: PayloadFiles,
    sealer: Sealer,
    hub: Arc<LogHub>,
    lease: Duration,
    /// Until when the attempt may run: moved forward by each renewal of
    /// the lease, followed by its runners (who stop the script by then).
    held: watch::Sender<tokio::time::Instant>,
    log_limit: u64,
    ended: Arc<Notify>,
    /// Set when this server shuts down: a stopped attempt is handed back,
    /// not reported cancelled.
    hand_back: CancellationToken,
}

/// Between two tries of a write the database could not take.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Runs `write` again while the database cannot be reached and the attempt
/// still holds its lease (`held`): a result or a batch of output is not lost
/// to a moment without the database. Any other error is final.
async fn while_held<T, F, Fut>(
    held: &watch::Receiver<tokio::time::Instant>,
    mut write: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    loop {
        match write().await {
            Err(StoreError::Backend(e))
                if tokio::time::Instant::now() + RETRY_PAUSE < *held.borrow() =>
            {
                tracing::debug!(error = %e, "the database did not take a write; trying again");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            done => return done,
        }
    }
}

/// The worker gives an attempt up this long before its runners stop the
/// script for want of a renewal. Their lease is counted in whole
/// milliseconds from when it was sent, so a runner may stop a moment before
/// the worker's own timer fires; a script stopped that way must never be
/// reported as the job's end (it is recovered and run again).
const GIVE_UP_EARLY: Duration = Duration::from_millis(100);

/// How long after a renewal of its lease an attempt may go on running: the
/// lease less a fifth. With a lease of at least 5 s that leaves its runner
/// the 1 s it takes to stop a script that ignores SIGTERM, before any other
/// server may recover the job; the clocks agree (both are the database's).
fn runs_for(lease: Duration) -> Duration {
    lease - lease / 5
}

impl JobRun {
    /// Runs one attempt and records its result; the job's status as
    /// recorded, `None` when this worker recorded none.
    async fn run(self, claim: Claim, cancel: CancellationToken) -> Option<JobStatus> {
        let Claim {
            job, event, fence, ..
        } = claim;
        let mut log = LogWriter::new(
            self.store.clone(),
            self.hub.clone(),
            fence.clone(),
            self.log_limit,
            self.held.subscribe(),
        );
        if let Err(e) = log.start().await {
            tracing::warn!(job = job.id.0, error = %e, "cannot read the job's log position");
        }
        log.system(format!(
            "attempt {} of {} started on {}",
            job.attempt,
            event.spec.retries + 1,
            fence.owner
        ));
        let result = match &event.spec.http {
            Some(http) => match self.http_call(http, &event) {
                Ok(call) => self.run_http(&call, &mut log, &fence, cancel).await,
                Err(reason) => Some((RunReport::failed(reason), Value::Null)),
            },
            None => match self
                .local_payload(&job)
                .await
                .and_then(|()| self.request(&job, &event, &fence))
            {
                Ok(request) if event.spec.run_location == RunLocation::Remote => {
                    self.run_remote(request, &event, &mut log, &fence, cancel)
                        .await
                }
                Ok(request) => {
                    let (tx, rx) = mpsc::channel(1024);
                    let run = self
                        .executors
                        .run(Attempt::Local(&request), tx, cancel.clone());
                    self.execute(run, label(None, rx), &mut log, &fence, cancel)
                        .await
                        .map(|execution| (execution.report, Value::Null))
                }
                Err(reason) => Some((RunReport::failed(reason), Value::Null)),
            },
        };
        let Some((report, metadata)) = result else {
            // The job was taken from this worker (lease lost, event deleted):
            // whoever holds it now reports.
            log.finish().await;
            self.hub.close(job.id);
            return None;
        };
        if self.hand_back.is_cancelled() && report.status == JobStatus::Cancelled {
            log.system(format!(
                "{} is shutting down: the job is handed back for another server",
                fence.owner
            ));
            log.finish().await;
            self.hub.close(job.id);
            let now = crate::now();
            return match self.store.hand_back_job(&fence, now, now).await {
                Ok(back) => {
                    tracing::info!(
                        job = job.id.0,
                        retried = back.retried,
                        "handed the job back"
                    );
                    Some(back.job.status)
                }
                Err(e) => {
                    tracing::warn!(job = job.id.0, error = %e, "cannot hand the job back; its lease will expire");
                    None
                }
            };
        }
        if let Some(error) = &report.error {
            log.system(error.clone());
        }
        log.finish().await;
        let now = crate::now();
        let retry_at = now
            + retry_delay(
                event.spec.policy.retry_delay,
                job.attempt,
                random_fraction(),
            );
        let mut metadata = match metadata {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        metadata.insert("signal".into(), json!(report.signal));
        metadata.insert("durationMs".into(), json!(report.duration_ms));
        let outcome = JobOutcome {
            status: report.status,
            exit_code: report.exit_code,
            error: report.error.clone(),
            metadata: Value::Object(metadata),
        };
        let finish = || {
            self.store
                .finish_job(&fence, outcome.clone(), retry_at, now)
        };
        let recorded = match while_held(&self.held.subscribe(), finish).await {
            Ok(done) if done.status == JobStatus::Queued => {
                tracing::info!(job = job.id.0, attempt = job.attempt, retry_at = %done.run_after, "job failed; retrying");
                Some(done.status)
            }
            Ok(done) => {
                tracing::info!(job = job.id.0, status = %done.status, exit_code = ?done.exit_code, "job finished");
                self.ended.notify_one();
                Some(done.status)
            }
            Err(e) => {
                tracing::warn!(job = job.id.0, error = %e, "cannot record the job's result");
                None
            }
        };
        self.hub.close(job.id);
        recorded
    }

    /// Runs the job on every target server at once, one execution each,
    /// their lines labelled with the server's name. `None` when the job
    /// stopped being this worker's.
    async fn run_remote(
        &self,
        request: RunRequest,
        event: &cronium_store::Event,
        log: &mut LogWriter,
        fence: &Fence,
        cancel: CancellationToken,
    ) -> Option<(RunReport, Value)> {
        // Tags are resolved now, against the servers as they are when the
        // job starts; the job records what they resolved to.
        let resolved = match self.store.list_servers().await {
            Ok(all) => resolve_targets(&event.spec, &all),
            Err(e) => Err(format!("cannot load the servers: {e}")),
        };
        let resolved = match resolved {
            Ok(resolved) => resolved,
            Err(reason) => {
                let metadata = json!({ "phase": "targets", "resolvedTargets": [] });
                return Some((RunReport::failed(format!("targets: {reason}")), metadata));
            }
        };
        if !event.spec.target_tags.is_empty() {
            log.system(format!(
                "running on {}",
                resolved
                    .iter()
                    .map(|r| r.server.spec.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let mut servers = Vec::new();
        for target in &resolved {
            match open_server(&target.server, &self.sealer) {
                Ok(server) => servers.push(server),
                Err(reason) => {
                    let metadata = json!({ "phase": "targets", "resolvedTargets": [] });
                    return Some((RunReport::failed(format!("targets: {reason}")), metadata));
                }
            }
        }
        let (tx, rx) = mpsc::channel(1024);
        let runs = servers.iter().map(|server| {
            let (lines, forward) = mpsc::channel(256);
            let name: Arc<str> = server.name.as_str().into();
            let tx = tx.clone();
            let execution =
                self.executors
                    .run(Attempt::Remote(server, &request), lines, cancel.clone());
            async move {
                let forwarding = forward_labelled(Some(name), forward, tx);
                let (execution, ()) = tokio::join!(execution, forwarding);
                execution
            }
        });
        let all = futures_util::future::join_all(runs);
        drop(tx);
        let executions = self.execute(all, rx, log, fence, cancel).await?;
        for (server, execution) in servers.iter().zip(&executions) {
            if execution.report.status != JobStatus::Succeeded {
                log.system(format!(
                    "{}: {}{}",
                    server.name,
                    execution.report.status,
                    execution
                        .report
                        .error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ));
            }
        }
        let metadata = json!({
            "resolvedTargets": resolved.iter().map(Resolved::to_json).collect::<Vec<_>>(),
            "executions": servers
                .iter()
                .zip(&executions)
                .map(|(server, execution)| execution.to_json(server))
                .collect::<Vec<_>>(),
        });
        let reports: Vec<(&str, &RunReport)> = servers
            .iter()
            .map(|s| s.name.as_str())
            .zip(executions.iter().map(|e| &e.report))
            .collect();
        Some((fleet_report(&reports), metadata))
    }

    /// Sends an HTTP event's request from this node; the response is the
    /// job's output. `None` when the job stopped being this worker's.
    async fn run_http(
        &self,
        call: &HttpCall,
        log: &mut LogWriter,
        fence: &Fence,
        cancel: CancellationToken,
    ) -> Option<(RunReport, Value)> {
        let (tx, rx) = mpsc::channel(1024);
        let run = self.executors.run(Attempt::Http(call), tx, cancel.clone());
        let execution = self
            .execute(run, label(None, rx), log, fence, cancel)
            .await?;
        let metadata = json!({
            "http": {
                "status": execution.http_status,
                "bodyTruncated": execution.body_truncated,
            },
        });
        Some((execution.report, metadata))
    }

    /// The request an HTTP event makes, its secret headers opened (they
    /// travel only in the request itself).
    fn http_call(&self, http: &HttpSpec, event: &cronium_store::Event) -> Result<HttpCall, String> {
        let secret_headers = self
            .sealer
            .open_headers(&http.secret_headers)
            .map_err(|e| format!("cannot open the event's secret headers: {e}"))?
            .into_iter()
            .map(|(k, v)| (k.as_str().to_string(), v))
            .collect();
        Ok(HttpCall {
            method: http.method.as_str().to_string(),
            url: http.url.clone(),
            headers: http
                .headers
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.clone()))
                .collect(),
            secret_headers,
            body: http.body.clone().map(String::into_bytes),
            expect_status: http.expect_status.clone(),
            timeout: event.spec.timeout,
        })
    }

    /// Puts the payload the job pinned on this server's disk if it is not
    /// there (another server on the database wrote it).
    async fn local_payload(&self, job: &Job) -> Result<(), String> {
        let text = |key: &str| job.metadata.get(key).and_then(|v| v.as_str());
        if let (Some(payload), Some(checksum)) = (text("payloadPath"), text("checksum")) {
            self.payloads
                .ensure_local(&*self.store, payload, checksum)
                .await?;
        }
        Ok(())
    }

    /// What to run: the payload the job pinned, and the environment that
    /// only ever travels on the runner's stdin.
    fn request(
        &self,
        job: &Job,
        event: &cronium_store::Event,
        fence: &Fence,
    ) -> Result<RunRequest, String> {
        let text = |key: &str| job.metadata.get(key).and_then(|v| v.as_str());
        let (Some(payload), Some(checksum)) = (text("payloadPath"), text("checksum")) else {
            return Err("the job has no payload to run".into());
        };
        let mut env: BTreeMap<String, String> = self
            .sealer
            .open_env(&event.spec.secret_env)
            .map_err(|e| format!("cannot open the event's secrets: {e}"))?
            .into_iter()
            .map(|(k, v)| (k.as_str().to_string(), v))
            .collect();
        // The secret environment only: the `CRONIUM_*` values added below
        // are not secret, and masking a job id would garble the log.
        let secrets = Secrets::new();
        for value in env.values() {
            secrets.add(value);
        }
        env.insert("CRONIUM_JOB_ID".into(), job.id.to_string());
        env.insert(
            "CRONIUM_EXECUTION_ID".into(),
            format!("{}-{}", job.id, job.attempt),
        );
        Ok(RunRequest {
            payload: self.payloads.resolve(payload),
            sha256: checksum.to_string(),
            timeout: event.spec.timeout,
            env,
            helpers: Some(Helpers::new(AttemptHelpers::new(
                self.store.clone(),
                self.sealer.clone(),
                fence.clone(),
                job,
                event.spec.name.as_str(),
                secrets.clone(),
            ))),
            secrets,
            lease: Some(self.held.subscribe()),
        })
    }

    /// Drives `run` while storing its output and heartbeating. `None` when
    /// the job stopped being this worker's.
    async fn execute<T>(
        &self,
        run: impl Future<Output = T>,
        mut rx: mpsc::Receiver<Labelled>,
        log: &mut LogWriter,
        fence: &Fence,
        cancel: CancellationToken,
    ) -> Option<T> {
        tokio::pin!(run);
        let mut heartbeat = tokio::time::interval(self.lease / 3);
        heartbeat.tick().await;
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        let mut lost = false;
        let mut output_open = true;
        // When the attempt's time runs out unless a renewal moves it.
        let held = tokio::time::sleep_until(*self.held.borrow() - GIVE_UP_EARLY);
        tokio::pin!(held);
        let report = loop {
            tokio::select! {
                report = &mut run => break report,
                line = rx.recv(), if output_open => match line {
                    Some((server, line)) => {
                        log.line(server, line);
                        if log.pending() >= FLUSH_LINES {
                            log.flush().await;
                        }
                    }
                    None => output_open = false,
                },
                _ = flush.tick() => log.flush().await,
                _ = heartbeat.tick() => {
                    let sent = tokio::time::Instant::now();
                    let until = crate::now() + self.lease;
                    // Bounded, so a database that does not answer cannot
                    // hold this loop past the time the attempt may run.
                    let beat = tokio::time::timeout(self.lease / 3, self.store.heartbeat(fence, until));
                    match beat.await {
                        Ok(Ok(_)) if tokio::time::Instant::now() + GIVE_UP_EARLY >= *self.held.borrow() => {
                            // Renewed too late (the database answered after
                            // the attempt's time ran out): its runners may
                            // have stopped the script already.
                            tracing::warn!(job = fence.job.0, "could not renew the job's lease in time; stopping it");
                            lost = true;
                            cancel.cancel();
                        }
                        Ok(Ok(beat)) => {
                            let runs_until = sent + runs_for(self.lease);
                            self.held.send_replace(runs_until);
                            held.as_mut().reset(runs_until - GIVE_UP_EARLY);
                            if beat.cancel_requested {
                                cancel.cancel();
                            }
                        }
                        Ok(Err(StoreError::Fenced { .. } | StoreError::NotFound { .. })) => {
                            tracing::warn!(job = fence.job.0, "lost the job (lease recovered or event deleted); stopping it");
                            lost = true;
                            cancel.cancel();
                        }
                        Ok(Err(e)) => tracing::warn!(job = fence.job.0, error = %e, "cannot renew the job's lease"),
                        Err(_) => tracing::warn!(job = fence.job.0, "cannot renew the job's lease: the database did not answer"),
                    }
                }
                () = &mut held, if !lost => {
                    // Another server may recover the job soon: its runners
                    // stop the script by themselves now, and nothing this
                    // attempt says any more is stored.
                    tracing::warn!(job = fence.job.0, "could not renew the job's lease in time; stopping it");
                    lost = true;
                    cancel.cancel();
                }
            }
        };
        // A result that came after the lease ran out (the server was paused)
        // is not this worker's to report: another server may hold the job.
        if !lost && tokio::time::Instant::now() + GIVE_UP_EARLY >= *self.held.borrow() {
            tracing::warn!(
                job = fence.job.0,
                "could not renew the job's lease in time; its result is not reported"
            );
            lost = true;
        }
        // Every execution has returned, so the senders are gone: drain what is left.
        while let Some((server, line)) = rx.recv().await {
            log.line(server, line);
        }
        (!lost).then_some(report)
    }
}

/// An output line and the server it came from (`None` on this host).
type Labelled = (Option<Arc<str>>, OutputLine);

/// Labels every line from `lines` with `server`.
fn label(server: Option<Arc<str>>, lines: mpsc::Receiver<OutputLine>) -> mpsc::Receiver<Labelled> {
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(forward_labelled(server, lines, tx));
    rx
}

async fn forward_labelled(
    server: Option<Arc<str>>,
    mut lines: mpsc::Receiver<OutputLine>,
    tx: mpsc::Sender<Labelled>,
) {
    while let Some(line) = lines.recv().await {
        // A sender that waits here slows its script: backpressure, not loss.
        if tx.send((server.clone(), line)).await.is_err() {
            break;
        }
    }
}

/// One job's result from its servers' results. A single server's result
/// is the job's. Several: all succeeded is `succeeded`; some succeeded is
/// `partial`; none is `cancelled` if any was cancelled, `timed_out` if all
/// timed out, else `failed`. The exit code is the first server's non-zero
/// one (0 when all succeeded).
pub fn fleet_report(reports: &[(&str, &RunReport)]) -> RunReport {
    if let [(_, only)] = reports {
        return (*only).clone();
    }
    let status_of = |s: JobStatus| reports.iter().filter(move |(_, r)| r.status == s);
    let succeeded = status_of(JobStatus::Succeeded).count();
    let status = if succeeded == reports.len() {
        JobStatus::Succeeded
    } else if succeeded > 0 {
        JobStatus::Partial
    } else if status_of(JobStatus::Cancelled).count() > 0 {
        JobStatus::Cancelled
    } else if status_of(JobStatus::TimedOut).count() == reports.len() {
        JobStatus::TimedOut
    } else {
        JobStatus::Failed
    };
    let failed: Vec<String> = reports
        .iter()
        .filter(|(_, r)| r.status != JobStatus::Succeeded)
        .map(|(name, r)| match &r.error {
            Some(error) => format!("{name}: {error}"),
            None => format!("{name}: {}", r.status),
        })
        .collect();
    RunReport {
        status,
        exit_code: if status == JobStatus::Succeeded {
            Some(0)
        } else {
            reports
                .iter()
                .filter_map(|(_, r)| r.exit_code)
                .find(|&code| code != 0)
        },
        signal: None,
        duration_ms: reports
            .iter()
            .map(|(_, r)| r.duration_ms)
            .max()
            .unwrap_or(0),
        error: (!failed.is_empty()).then(|| {
            format!(
                "{} of {} servers did not succeed: {}",
                failed.len(),
                reports.len(),
                failed.join("; ")
            )
        }),
    }
}

/// Numbers, caps and batches a job's output lines on their way to the store.
struct LogWriter {
    store: Arc<dyn Store>,
    hub: Arc<LogHub>,
    fence: Fence,
    cap: HeadTail<LogLine>,
    next_seq: u64,
    /// Numbered lines not stored yet.
    batch: Vec<LogLine>,
    /// After a failed flush, when to try again.
    retry_at: Option<tokio::time::Instant>,
    /// Until when the attempt holds its job: the last lines are retried
    /// until then.
    held: watch::Receiver<tokio::time::Instant>,
}

impl LogWriter {
    fn new(
        store: Arc<dyn Store>,
        hub: Arc<LogHub>,
        fence: Fence,
        limit: u64,
        held: watch::Receiver<tokio::time::Instant>,
    ) -> LogWriter {
        LogWriter {
            store,
            hub,
            fence,
            cap: HeadTail::new(limit),
            next_seq: 1,
            batch: Vec::new(),
            retry_at: None,
            held,
        }
    }

    /// Continues the job's log after earlier attempts.
    async fn start(&mut self) -> Result<(), StoreError> {
        self.next_seq = self.store.last_log_seq(self.fence.job).await? + 1;
        Ok(())
    }

    fn push(&mut self, stream: LogStream, data: Vec<u8>, server: Option<&str>) {
        self.batch.push(LogLine {
            seq: self.next_seq,
            stream,
            at: crate::now(),
            data,
            server: server.map(str::to_string),
        });
        self.next_seq += 1;
    }

    fn system(&mut self, message: String) {
        let mut data = message.into_bytes();
        data.push(b'\n');
        self.push(LogStream::System, data, None);
    }

    fn line(&mut self, server: Option<Arc<str>>, line: OutputLine) {
        let stream = match line.stream {
            Stream::Stdout => LogStream::Stdout,
            Stream::Stderr => LogStream::Stderr,
        };
        let size = line.data.len() as u64;
        let line = LogLine {
            seq: 0, // numbered when stored
            stream,
            at: crate::now(),
            data: line.data,
            server: server.map(|s| s.to_string()),
        };
        if let Some(mut line) = self.cap.take(size, line) {
            line.seq = self.next_seq;
            self.next_seq += 1;
            self.batch.push(line);
        }
    }

    fn pending(&self) -> usize {
        self.batch.len()
    }

    /// Stores the batch. Lines the database could not take stay in it and
    /// go with the next flush (output must never stop the job, nor be
    /// lost to a moment without the database); the seq check in the store
    /// keeps a batch whose commit went unanswered from being stored twice.
    async fn flush(&mut self) {
        if self.batch.is_empty()
            || self
                .retry_at
                .is_some_and(|t| tokio::time::Instant::now() < t)
        {
            return;
        }
        let last = self.batch[self.batch.len() - 1].seq;
        match self.store.append_logs(&self.fence, &self.batch).await {
            Ok(()) => {
                self.batch.clear();
                self.retry_at = None;
                self.hub.publish(self.fence.job, last);
            }
            Err(StoreError::Conflict { .. }) => {
                // An earlier flush committed although its answer was lost:
                // what the log holds now is not sent again.
                match self.store.last_log_seq(self.fence.job).await {
                    Ok(stored) => self.batch.retain(|line| line.seq > stored),
                    Err(e) => {
                        tracing::warn!(job = self.fence.job.0, error = %e, "cannot read the job's log position")
                    }
                }
            }
            Err(e @ StoreError::Backend(_)) => {
                self.retry_at = Some(tokio::time::Instant::now() + RETRY_PAUSE);
                tracing::warn!(job = self.fence.job.0, lines = self.batch.len(), error = %e, "cannot store output lines yet; keeping them")
            }
            Err(e) => {
                // The job is no longer this worker's: nothing it says counts.
                tracing::warn!(job = self.fence.job.0, lines = self.batch.len(), error = %e, "cannot store output lines");
                self.batch.clear();
            }
        }
    }

    /// Stores what is left: past the cap, one line saying what was left
    /// out, then the end of the output.
    async fn finish(&mut self) {
        let (left_out, tail) = self.cap.finish();
        if let Some((lines, bytes)) = left_out {
            self.system(format!(
                "… {lines} lines ({bytes} bytes) left out: this attempt wrote more than {} bytes; the first and last halves are kept …",
                self.cap.limit
            ));
        }
        for mut line in tail {
            line.seq = self.next_seq;
            self.next_seq += 1;
            self.batch.push(line);
        }
        let mut held = self.held.clone();
        loop {
            self.retry_at = None;
            self.flush().await;
            if self.batch.is_empty() {
                return;
            }
            if tokio::time::Instant::now() + RETRY_PAUSE >= *held.borrow_and_update() {
                tracing::warn!(
                    job = self.fence.job.0,
                    lines = self.batch.len(),
                    "the job's lease ran out before its last output lines could be stored"
                );
                return;
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}

/// The per-attempt output cap: the first half of the allowance is stored
/// as it comes; after that the newest lines that fit the rest are held
/// back, older ones falling out, and stored when the attempt ends,
/// since the error a failed job shows is usually in its last lines. Once
/// a line has been held back all later ones are too, so the order stays.
/// The price: output past the first half reaches followers at the end.
#[derive(Debug)]
struct HeadTail<T> {
    limit: u64,
    head: u64,
    tail: std::collections::VecDeque<(u64, T)>,
    tail_bytes: u64,
    left_lines: u64,
    left_bytes: u64,
}

impl<T> HeadTail<T> {
    fn new(limit: u64) -> HeadTail<T> {
        HeadTail {
            limit,
            head: 0,
            tail: Default::default(),
            tail_bytes: 0,
            left_lines: 0,
            left_bytes: 0,
        }
    }

    /// The item to store now, or `None` when it is held back (or left out).
    fn take(&mut self, size: u64, item: T) -> Option<T> {
        let holding = !self.tail.is_empty() || self.left_lines > 0;
        if !holding && self.head + size <= self.limit / 2 {
            self.head += size;
            return Some(item);
        }
        self.tail.push_back((size, item));
        self.tail_bytes += size;
        while self.tail_bytes > self.limit - self.head {
            let Some((size, _)) = self.tail.pop_front() else {
                break;
            };
            self.tail_bytes -= size;
            self.left_lines += 1;
            self.left_bytes += size;
        }
        None
    }

    /// How many lines and bytes were left out (if any), and the held-back
    /// end of the output, oldest first.
    fn finish(&mut self) -> (Option<(u64, u64)>, Vec<T>) {
        let left = (self.left_lines > 0).then_some((self.left_lines, self.left_bytes));
        self.left_lines = 0;
        self.left_bytes = 0;
        self.tail_bytes = 0;
        (left, self.tail.drain(..).map(|(_, item)| item).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds lines `0..n` of `size` bytes each; returns what was stored at
    /// once, what was left out, and the held-back tail.
    fn feed(limit: u64, sizes: &[u64]) -> (Vec<usize>, Option<(u64, u64)>, Vec<usize>) {
        let mut cap = HeadTail::new(limit);
        let now: Vec<usize> = sizes
            .iter()
            .enumerate()
            .filter_map(|(i, &size)| cap.take(size, i))
            .collect();
        let (left, tail) = cap.finish();
        (now, left, tail)
    }

    #[test]
    fn output_past_the_cap_keeps_its_head_and_its_tail() {
        // (limit, line sizes, stored at once, left out, tail)
        type Case<'a> = (u64, &'a [u64], &'a [usize], Option<(u64, u64)>, &'a [usize]);
        let table: &[Case] = &[
            // Within the first half: everything at once.
            (100, &[10, 10, 10], &[0, 1, 2], None, &[]),
            // Past the first half but within the cap: nothing lost, the
            // rest stored at the end.
            (100, &[30, 30, 30], &[0], None, &[1, 2]),
            // Ten lines of 10 bytes in a cap of 50: 20 head, 30 tail.
            (50, &[10; 10], &[0, 1], Some((5, 50)), &[7, 8, 9]),
            // A line larger than half the cap never fits the tail.
            (100, &[10, 200, 10], &[0], Some((1, 200)), &[2]),
            // A limit of zero keeps nothing.
            (0, &[1, 1], &[], Some((2, 2)), &[]),
        ];
        for (limit, sizes, now, left, tail) in table {
            let got = feed(*limit, sizes);
            assert_eq!(
                got,
                (now.to_vec(), *left, tail.to_vec()),
                "limit {limit}, sizes {sizes:?}"
            );
            let stored: u64 = got.0.iter().chain(&got.2).map(|&i| sizes[i]).sum();
            assert!(stored <= *limit, "never more than the cap");
        }
    }
}
