//! The worker pool: claims queued jobs, runs each with the local executor,
//! stores its output as it comes, keeps its lease alive, and reports how it ended.
//!
//! One step is [`Workers::tick`]: claim jobs while a slot is free and start
//! them. [`Workers::run`] loops it until cancelled. Every report a running
//! job makes (log lines, heartbeats, the result) carries its [`Fence`], so
//! once its lease has been recovered elsewhere nothing it says is stored.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use cronium_core::job::retry_delay;
use cronium_core::{EventId, JobId, JobStatus};
use cronium_store::{Claim, Fence, Job, JobOutcome, LogLine, LogStream, Store, StoreError};
use serde_json::json;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::executor::{LocalExecutor, OutputLine, RunReport, RunRequest, Stream};
use crate::live::LogHub;
use crate::payloads::PayloadFiles;
use crate::scheduler::random_fraction;
use crate::secrets::Sealer;

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
    /// Bytes of output stored per attempt; the rest is dropped with a marker.
    pub log_limit: u64,
}

pub struct Workers {
    store: Arc<dyn Store>,
    executor: Arc<LocalExecutor>,
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
}

/// The jobs running on this node, and what the rest of the server may do
/// to them: stop them at once, where a heartbeat would learn of a
/// cancellation only seconds later.
#[derive(Clone, Default)]
pub struct RunningJobs(Arc<Mutex<HashMap<JobId, (EventId, CancellationToken)>>>);

impl RunningJobs {
    fn insert(&self, job: JobId, event: EventId, token: CancellationToken) {
        self.0
            .lock()
            .expect("running jobs lock")
            .insert(job, (event, token));
    }

    fn remove(&self, job: JobId) {
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

    pub fn count(&self) -> usize {
        self.0.lock().expect("running jobs lock").len()
    }
}

impl Workers {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        executor: Arc<LocalExecutor>,
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
            executor,
            payloads,
            sealer,
            hub,
            config,
            wake,
            running,
        }
    }

    /// Claims and starts jobs while slots are free; returns how many started.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut started = 0;
        while let Ok(permit) = self.slots.clone().try_acquire_owned() {
            let Some(claim) = self
                .store
                .claim_job(&self.config.owner, now, self.config.lease)
                .await?
            else {
                break;
            };
            started += 1;
            let cancel = CancellationToken::new();
            self.running
                .insert(claim.job.id, claim.job.event_id, cancel.clone());
            let attempt = Attempt {
                store: self.store.clone(),
                executor: self.executor.clone(),
                payloads: self.payloads.clone(),
                sealer: self.sealer.clone(),
                hub: self.hub.clone(),
                lease: self.config.lease,
                log_limit: self.config.log_limit,
            };
            let running = self.running.clone();
            let wake = self.wake.clone();
            tokio::spawn(async move {
                let id = claim.job.id;
                attempt.run(claim, cancel).await;
                running.remove(id);
                drop(permit);
                // A slot is free, and a job queued behind this one may start.
                wake.notify_one();
            });
        }
        Ok(started)
    }

    /// Ticks until `cancel`, waking when jobs are queued or slots free up.
    /// On cancel, running jobs are left to their runners: the runner stops
    /// its script when this process goes away, and the lease expires.
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            if let Err(e) = self.tick(crate::now()).await {
                tracing::error!(error = %e, "cannot claim jobs; retrying");
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
            }
        }
    }
}

/// Everything one attempt needs, owned, so it runs in a task of its own.
struct Attempt {
    store: Arc<dyn Store>,
    executor: Arc<LocalExecutor>,
    payloads: PayloadFiles,
    sealer: Sealer,
    hub: Arc<LogHub>,
    lease: Duration,
    log_limit: u64,
}

impl Attempt {
    async fn run(self, claim: Claim, cancel: CancellationToken) {
        let Claim { job, event, fence } = claim;
        let mut log = LogWriter::new(
            self.store.clone(),
            self.hub.clone(),
            fence.clone(),
            self.log_limit,
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
        let report = match self.request(&job, &event) {
            Ok(request) => self.execute(request, &mut log, &fence, cancel).await,
            Err(reason) => Some(RunReport::failed(reason)),
        };
        let Some(report) = report else {
            // The job was taken from this worker (lease lost, event deleted):
            // whoever holds it now reports.
            log.finish().await;
            self.hub.close(job.id);
            return;
        };
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
        let outcome = JobOutcome {
            status: report.status,
            exit_code: report.exit_code,
            error: report.error.clone(),
            metadata: json!({ "signal": report.signal, "durationMs": report.duration_ms }),
        };
        match self.store.finish_job(&fence, outcome, retry_at, now).await {
            Ok(done) if done.status == JobStatus::Queued => {
                tracing::info!(job = job.id.0, attempt = job.attempt, retry_at = %done.run_after, "job failed; retrying");
            }
            Ok(done) => {
                tracing::info!(job = job.id.0, status = %done.status, exit_code = ?done.exit_code, "job finished");
            }
            Err(e) => tracing::warn!(job = job.id.0, error = %e, "cannot record the job's result"),
        }
        self.hub.close(job.id);
    }

    /// What to run: the payload the job pinned, and the environment that
    /// only ever travels on the runner's stdin.
    fn request(&self, job: &Job, event: &cronium_store::Event) -> Result<RunRequest, String> {
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
        env.insert("CRONIUM_JOB_ID".into(), job.id.to_string());
        env.insert(
            "CRONIUM_EXECUTION_ID".into(),
            format!("{}-{}", job.id, job.attempt),
        );
        if let Some(input) = job.metadata.get("input") {
            env.insert("CRONIUM_INPUT".into(), input.to_string());
        }
        Ok(RunRequest {
            payload: self.payloads.resolve(payload),
            sha256: checksum.to_string(),
            timeout: event.spec.timeout,
            env,
        })
    }

    /// Runs the request while storing its output and heartbeating. `None`
    /// when the job stopped being this worker's.
    async fn execute(
        &self,
        request: RunRequest,
        log: &mut LogWriter,
        fence: &Fence,
        cancel: CancellationToken,
    ) -> Option<RunReport> {
        let (tx, mut rx) = mpsc::channel::<OutputLine>(1024);
        let run = self.executor.run(request, tx, cancel.clone());
        tokio::pin!(run);
        let mut heartbeat = tokio::time::interval(self.lease / 3);
        heartbeat.tick().await;
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        let mut lost = false;
        let mut output_open = true;
        let report = loop {
            tokio::select! {
                report = &mut run => break report,
                line = rx.recv(), if output_open => match line {
                    Some(line) => {
                        log.line(line);
                        if log.pending() >= FLUSH_LINES {
                            log.flush().await;
                        }
                    }
                    None => output_open = false,
                },
                _ = flush.tick() => log.flush().await,
                _ = heartbeat.tick() => {
                    let until = crate::now() + self.lease;
                    match self.store.heartbeat(fence, until).await {
                        Ok(beat) if beat.cancel_requested => cancel.cancel(),
                        Ok(_) => {}
                        Err(StoreError::Fenced { .. } | StoreError::NotFound { .. }) => {
                            tracing::warn!(job = fence.job.0, "lost the job (lease recovered or event deleted); stopping it");
                            lost = true;
                            cancel.cancel();
                        }
                        Err(e) => tracing::warn!(job = fence.job.0, error = %e, "heartbeat failed"),
                    }
                }
            }
        };
        // The executor has returned, so its sender is gone: drain what is left.
        while let Some(line) = rx.recv().await {
            log.line(line);
        }
        (!lost).then_some(report)
    }
}

/// Numbers, caps and batches a job's output lines on their way to the store.
struct LogWriter {
    store: Arc<dyn Store>,
    hub: Arc<LogHub>,
    fence: Fence,
    limit: u64,
    next_seq: u64,
    bytes: u64,
    dropped: u64,
    batch: Vec<LogLine>,
}

impl LogWriter {
    fn new(store: Arc<dyn Store>, hub: Arc<LogHub>, fence: Fence, limit: u64) -> LogWriter {
        LogWriter {
            store,
            hub,
            fence,
            limit,
            next_seq: 1,
            bytes: 0,
            dropped: 0,
            batch: Vec::new(),
        }
    }

    /// Continues the job's log after earlier attempts.
    async fn start(&mut self) -> Result<(), StoreError> {
        self.next_seq = self.store.last_log_seq(self.fence.job).await? + 1;
        Ok(())
    }

    fn push(&mut self, stream: LogStream, data: Vec<u8>) {
        self.batch.push(LogLine {
            seq: self.next_seq,
            stream,
            at: crate::now(),
            data,
            server: None,
        });
        self.next_seq += 1;
    }

    fn system(&mut self, message: String) {
        let mut data = message.into_bytes();
        data.push(b'\n');
        self.push(LogStream::System, data);
    }

    fn line(&mut self, line: OutputLine) {
        let size = line.data.len() as u64;
        if self.bytes + size > self.limit {
            if self.dropped == 0 {
                self.system(format!(
                    "output truncated: this attempt wrote more than {} bytes; the rest is not stored",
                    self.limit
                ));
            }
            self.dropped += size;
            return;
        }
        self.bytes += size;
        let stream = match line.stream {
            Stream::Stdout => LogStream::Stdout,
            Stream::Stderr => LogStream::Stderr,
        };
        self.push(stream, line.data);
    }

    fn pending(&self) -> usize {
        self.batch.len()
    }

    /// Stores the batch. A failure is logged and the lines dropped: output
    /// must never stop the job, and retrying could store them twice.
    async fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        let (first, last) = (batch[0].seq, batch[batch.len() - 1].seq);
        match self.store.append_logs(&self.fence, &batch).await {
            Ok(()) => self.hub.publish(self.fence.job, last),
            Err(e) => {
                // Nothing of the batch was stored: number on from its start
                // so the log keeps no gap.
                self.next_seq = first;
                tracing::warn!(job = self.fence.job.0, lines = batch.len(), error = %e, "cannot store output lines")
            }
        }
    }

    async fn finish(&mut self) {
        if self.dropped > 0 {
            let dropped = self.dropped;
            self.system(format!("output truncated: {dropped} bytes were not stored"));
        }
        self.flush().await;
    }
}
