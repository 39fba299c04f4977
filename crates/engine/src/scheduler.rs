//! The scheduler: turns due fire times into job rows, and recovers jobs whose worker died.
//!
//! One step is [`Scheduler::tick`]: for every active event whose next fire
//! time has come it plans the fires (`Schedule::plan`: misfire policy,
//! max executions) and records them with a compare-and-set on the event's
//! schedule state, so any number of schedulers (one per node) may tick at
//! once and each fire is recorded once. [`Scheduler::run`] loops `tick` until
//! cancelled, sleeping until the next fire time or a wake-up.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cronium_core::{JobStatus, OverlapPolicy, WorkflowSpec};
use cronium_store::{JobRetention, RunTrigger, Store, StoreError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::retry::jittered;
use crate::running::RunningJobs;
use crate::workflows::{RunStart, StartError, start_run};

/// Events handled per database round trip; a tick repeats until none is due.
const BATCH: u32 = 200;
/// The longest the loop sleeps with nothing due: fires recorded by other
/// nodes, lease expiries and edits missed by a wake-up are noticed this late.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// What one tick did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    /// Jobs recorded (queued, skipped and missed).
    pub recorded: usize,
    /// Jobs whose expired lease was recovered.
    pub recovered: usize,
    /// Workflow runs brought up to date with their nodes' jobs.
    pub reconciled: usize,
    /// Workflow runs started by their `cron` or `every` trigger.
    pub workflow_runs: usize,
}

/// How much job history the scheduler keeps (pruned every [`PRUNE_EVERY`]).
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub age: Duration,
    pub keep_per_event: u32,
}

const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// The lease whose holder does the housekeeping (pruning history): one
/// server at a time, however many share the database. Held for two rounds,
/// so a holder that died hands it on within 20 minutes.
pub const HOUSEKEEPING_LEASE: &str = "housekeeping";

pub struct Scheduler {
    store: Arc<dyn Store>,
    retention: Retention,
    /// Woken when an event changes, so a new schedule is seen at once.
    wake: Arc<Notify>,
    /// Notified when jobs were queued, so idle workers claim them at once.
    jobs_queued: Arc<Notify>,
    /// A fire of an event with overlap `replace` stops its runs here at once.
    running: RunningJobs,
    /// Who this scheduler is when it takes the housekeeping lease.
    owner: String,
}

impl Scheduler {
    pub fn new(
        store: Arc<dyn Store>,
        wake: Arc<Notify>,
        jobs_queued: Arc<Notify>,
        running: RunningJobs,
        retention: Retention,
    ) -> Scheduler {
        let mut tag = [0u8; 4];
        let _ = getrandom::fill(&mut tag);
        Scheduler {
            store,
            running,
            retention,
            wake,
            jobs_queued,
            owner: format!("scheduler-{}", u32::from_le_bytes(tag)),
        }
    }

    /// Names this scheduler as `owner` (the server's lease owner name) for
    /// the housekeeping lease.
    pub fn owned_by(mut self, owner: &str) -> Scheduler {
        self.owner = owner.to_string();
        self
    }

    /// Records every fire due at `now` and recovers expired leases.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<TickReport, StoreError> {
        let mut report = TickReport::default();
        let recovered = self
            .store
            .recover_expired_leases(now, now + jittered(Duration::from_secs(1)))
            .await?;
        for r in &recovered {
            tracing::warn!(
                job = r.job.id.0,
                event = r.job.event_id.0,
                retried = r.retried,
                reason = r.job.error.as_deref().unwrap_or(""),
                "recovered a job whose worker stopped reporting"
            );
        }
        report.recovered = recovered.len();
        // A node whose job ended without its run hearing (a lease
        // recovered above, a job replaced or pruned): its run advances now.
        report.reconciled = self.store.reconcile_workflow_runs(now).await?;
        if report.reconciled > 0 {
            self.jobs_queued.notify_one();
        }
        report.workflow_runs = self.fire_workflows(now).await?;
        loop {
            let due = self.store.due_schedules(now, BATCH).await?;
            let mut progressed = false;
            for (event, state) in &due {
                let Some(expected) = state.next_fire_at else {
                    continue;
                };
                let spec = &event.spec;
                let plan =
                    spec.schedule
                        .plan(&spec.policy, state.anchor, expected, state.fire_count, now);
                if plan.unrecorded_misses > 0 {
                    tracing::warn!(
                        event = event.id.0,
                        missed = plan.unrecorded_misses,
                        "too many missed fires to record one by one; only the newest are recorded"
                    );
                }
                let jobs = self
                    .store
                    .record_fires(event.id, expected, &plan.fires, plan.next, now)
                    .await?;
                // An empty result means another scheduler recorded this step.
                progressed |= !jobs.is_empty() || plan.next != Some(expected);
                report.recorded += jobs.len();
                if jobs.iter().any(|j| j.status == JobStatus::Queued) {
                    if spec.policy.overlap == OverlapPolicy::Replace {
                        self.running.cancel_event(event.id);
                    }
                    // Workers start on this one while the rest are recorded.
                    self.jobs_queued.notify_one();
                }
                for job in &jobs {
                    tracing::debug!(event = event.id.0, job = job.id.0, status = %job.status, at = %job.scheduled_at, "fire recorded");
                }
            }
            if (due.len() as u32) < BATCH || !progressed {
                break;
            }
        }
        Ok(report)
    }

    /// Starts a run for every workflow whose trigger is due, then moves its
    /// next fire past `now` (one run for fires missed while no scheduler
    /// ran). Each fire time starts one run however many schedulers tick:
    /// the store records a fire time once per workflow.
    async fn fire_workflows(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut started = 0;
        for (workflow, anchor) in self.store.due_workflows(now, BATCH).await? {
            let Some(due) = workflow.next_fire_at else {
                continue;
            };
            let next = WorkflowSpec::from_json_value(workflow.definition.clone())
                .ok()
                .and_then(|spec| spec.trigger().schedule())
                .and_then(|schedule| schedule.next_fire(anchor, now));
            let start = RunStart {
                fire_at: Some(due),
                ..RunStart::default()
            };
            match start_run(
                &*self.store,
                &workflow,
                RunTrigger::Schedule,
                start,
                now,
                None,
            )
            .await
            {
                Ok(run) if run.created => {
                    started += 1;
                    for job in &run.stop {
                        self.running.cancel(*job);
                    }
                    tracing::info!(workflow = workflow.id.0, run = run.run.id.0, status = %run.run.status, at = %due, "workflow fire recorded");
                }
                Ok(_) => {}
                Err(StartError::Invalid(e)) => tracing::warn!(
                    workflow = workflow.id.0,
                    error = %e,
                    "a scheduled workflow run cannot start: its definition no longer resolves"
                ),
                Err(StartError::Store(e)) => return Err(e),
            }
            self.store
                .set_workflow_next_fire(workflow.id, due, next)
                .await?;
        }
        if started > 0 {
            self.jobs_queued.notify_one();
        }
        Ok(started)
    }

    /// Ticks until `cancel`, sleeping until the next fire time (at most
    /// [`IDLE_POLL`]) or until woken. A failing tick is logged and retried:
    /// the database may come back.
    pub async fn run(self, cancel: CancellationToken) {
        let mut pruned_at: Option<DateTime<Utc>> = None;
        loop {
            let now = crate::now();
            if let Err(e) = self.tick(now).await {
                tracing::error!(error = %e, "scheduler step failed; retrying");
            }
            if pruned_at.is_none_or(|at| {
                now - at >= chrono::TimeDelta::from_std(PRUNE_EVERY).expect("small")
            }) {
                pruned_at = Some(now);
                match self.housekeeping(now).await {
                    Ok(None) => tracing::debug!("another server holds the housekeeping lease"),
                    Ok(Some(0)) => {}
                    Ok(Some(n)) => {
                        tracing::info!(rows = n, "pruned old job and workflow run history")
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot prune job history"),
                }
            }
            let sleep = self.until_next_fire().await;
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Prunes history ([`Scheduler::prune`]) if this scheduler holds (or
    /// takes) the housekeeping lease; `None` when another one holds it.
    pub async fn housekeeping(&self, now: DateTime<Utc>) -> Result<Option<u64>, StoreError> {
        if !self
            .store
            .try_lease(HOUSEKEEPING_LEASE, &self.owner, PRUNE_EVERY * 2)
            .await?
        {
            return Ok(None);
        }
        self.prune(now).await.map(Some)
    }

    /// Deletes finished jobs and workflow runs past the retention (the
    /// newest per event and per workflow stay); returns how many.
    pub async fn prune(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let age = chrono::TimeDelta::from_std(self.retention.age).unwrap_or(chrono::TimeDelta::MAX);
        let older_than = now
            .checked_sub_signed(age)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        // Workflow runs are kept like jobs: by age, the newest of each stay.
        let runs = self
            .store
            .prune_workflow_runs(older_than, self.retention.keep_per_event)
            .await?;
        let jobs = self
            .store
            .prune_jobs(JobRetention {
                older_than,
                keep_per_event: self.retention.keep_per_event,
            })
            .await?;
        Ok(runs + jobs)
    }

    /// How long until the soonest fire time, if one is within [`IDLE_POLL`].
    async fn until_next_fire(&self) -> Duration {
        let now = crate::now();
        let horizon = now + IDLE_POLL;
        let event = match self.store.due_schedules(horizon, 1).await {
            Ok(soonest) => soonest.first().and_then(|(_, s)| s.next_fire_at),
            Err(_) => None,
        };
        let workflow = match self.store.due_workflows(horizon, 1).await {
            Ok(soonest) => soonest.first().and_then(|(w, _)| w.next_fire_at),
            Err(_) => None,
        };
        event
            .into_iter()
            .chain(workflow)
            .min()
            .map_or(IDLE_POLL, |at| {
                (at - now).to_std().unwrap_or(Duration::ZERO)
            })
    }
}
