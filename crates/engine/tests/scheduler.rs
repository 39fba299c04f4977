//! The scheduler and the workers driven step by step with an injected clock
//! (no sleeping): fires recorded once, misfire policies after a downtime,
//! racing schedulers, expired leases recovered, worker slots honoured; on
//! SQLite and PostgreSQL.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use cronium_core::{
    EventKind, EventName, EventSpec, EventStatus, JobStatus, MisfirePolicy, OverlapPolicy,
    RunLocation, RunPolicy, Schedule, SealedSecrets, UserId,
};
use cronium_engine::payloads::PayloadFiles;
use cronium_engine::scheduler::{Retention, Scheduler};
use cronium_exec::remote::{Pool, RemoteExecutor, RunnerArtifacts};
use cronium_payload::Interpreter;
use cronium_store::testing::{TestPostgres, sqlite_url};
use cronium_store::{AuditEntry, Event, Job, JobFilter, PageRequest, Store};
use tokio::sync::Notify;

/// Makes `name::sqlite` and `name::postgres` tokio tests from `async fn name(url)`.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                super::$name(&super::sqlite_url(dir.path()), dir.path()).await;
            }

            #[tokio::test]
            async fn postgres() {
                let dir = tempfile::tempdir().unwrap();
                super::$name(&super::TestPostgres::fresh_database(), dir.path()).await;
            }
        }
    )*};
}

on_both!(
    a_fire_is_recorded_once_when_its_time_comes,
    misfire_skip_records_every_missed_fire,
    misfire_run_once_runs_the_latest_missed_fire,
    misfire_catch_up_runs_every_missed_fire,
    racing_schedulers_record_each_fire_once,
    an_expired_lease_is_recovered_by_a_tick,
    workers_fill_their_slots_and_no_more,
    a_workflow_trigger_starts_one_run_per_fire_however_many_schedulers_tick,
    a_heartbeat_is_stamped_by_the_database_and_reports_a_clock_far_off,
    one_scheduler_at_a_time_does_the_housekeeping,
);

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn minutes(n: i64) -> TimeDelta {
    TimeDelta::minutes(n)
}

fn audit(action: &str) -> AuditEntry {
    AuditEntry {
        at: t0(),
        actor: None,
        action: action.into(),
        target_type: "event".into(),
        target_id: None,
        detail: serde_json::json!({}),
    }
}

fn scheduler(store: &Arc<dyn Store>) -> Scheduler {
    Scheduler::new(
        store.clone(),
        Arc::new(Notify::new()),
        Arc::new(Notify::new()),
        Default::default(),
        Retention {
            age: Duration::from_secs(86_400),
            keep_per_event: 10,
        },
    )
}

/// An active bash event every minute from `t0`, with the given policy.
async fn every_minute(
    url: &str,
    dir: &std::path::Path,
    policy: RunPolicy,
    retries: u32,
) -> (Arc<dyn Store>, Event) {
    every(url, dir, "1m", policy, retries).await
}

/// An active bash event on a fixed interval from `t0`.
async fn every(
    url: &str,
    dir: &std::path::Path,
    interval: &str,
    policy: RunPolicy,
    retries: u32,
) -> (Arc<dyn Store>, Event) {
    let store = cronium_store::open(url).await.unwrap();
    let admin = store.ensure_admin(t0()).await.unwrap();
    assert_eq!(admin.id, UserId(1));
    let spec = EventSpec {
        name: EventName::new("minutely").unwrap(),
        description: String::new(),
        kind: EventKind::Script,
        interpreter: Some(Interpreter::Bash),
        content: "true\n".into(),
        env: Default::default(),
        secret_env: SealedSecrets::default(),
        schedule: Schedule::every(interval).unwrap(),
        status: EventStatus::Active,
        run_location: RunLocation::Local,
        target_servers: vec![],
        target_tags: Default::default(),
        timeout: Duration::from_secs(60),
        retries,
        tags: BTreeSet::new(),
        policy,
        http: None,
    };
    let mut writer = PayloadFiles::new(dir).writer();
    let event = store
        .create_event(admin.id, spec, &mut writer, t0(), &audit("event.create"))
        .await
        .unwrap();
    writer.commit();
    (store, event)
}

async fn jobs(store: &Arc<dyn Store>) -> Vec<Job> {
    let page = PageRequest {
        limit: 500,
        offset: 0,
    };
    let mut jobs = store
        .list_jobs(&JobFilter::default(), page)
        .await
        .unwrap()
        .items;
    jobs.reverse();
    jobs
}

/// `(minutes after t0, status)` of every job, oldest first.
async fn fires(store: &Arc<dyn Store>) -> Vec<(i64, JobStatus)> {
    jobs(store)
        .await
        .iter()
        .map(|j| ((j.scheduled_at - t0()).num_minutes(), j.status))
        .collect()
}

async fn a_fire_is_recorded_once_when_its_time_comes(url: &str, dir: &std::path::Path) {
    let (store, _) = every_minute(url, dir, RunPolicy::default(), 0).await;
    let s = scheduler(&store);
    assert_eq!(
        s.tick(t0() + TimeDelta::seconds(59))
            .await
            .unwrap()
            .recorded,
        0
    );
    assert_eq!(s.tick(t0() + minutes(1)).await.unwrap().recorded, 1);
    // The same moment again, and a clock that jumped back: nothing new.
    assert_eq!(s.tick(t0() + minutes(1)).await.unwrap().recorded, 0);
    assert_eq!(
        s.tick(t0() + TimeDelta::seconds(30))
            .await
            .unwrap()
            .recorded,
        0
    );
    assert_eq!(fires(&store).await, vec![(1, JobStatus::Queued)]);
    assert_eq!(
        s.tick(t0() + minutes(2) + TimeDelta::seconds(1))
            .await
            .unwrap()
            .recorded,
        1
    );
    let recorded = fires(&store).await;
    assert_eq!(recorded.len(), 2);
    // Overlap forbid (the default): the first run is still queued.
    assert_eq!(recorded[1], (2, JobStatus::Skipped));
}

async fn misfire_skip_records_every_missed_fire(url: &str, dir: &std::path::Path) {
    let policy = RunPolicy {
        misfire: MisfirePolicy::Skip,
        overlap: OverlapPolicy::Allow,
        ..RunPolicy::default()
    };
    let (store, event) = every_minute(url, dir, policy, 0).await;
    // Down for ten minutes: the fire at 10m is 5 s late (on time), the
    // nine before it are more than a minute late.
    scheduler(&store)
        .tick(t0() + minutes(10) + TimeDelta::seconds(5))
        .await
        .unwrap();
    let mut want: Vec<(i64, JobStatus)> = (1..=9).map(|m| (m, JobStatus::Missed)).collect();
    want.push((10, JobStatus::Queued));
    assert_eq!(fires(&store).await, want);
    let missed = &jobs(&store).await[0];
    assert!(
        missed.error.as_deref().unwrap().contains("missed"),
        "{missed:?}"
    );
    let state = store.get_schedule_state(event.id).await.unwrap();
    assert_eq!(state.next_fire_at, Some(t0() + minutes(11)));
}

async fn misfire_run_once_runs_the_latest_missed_fire(url: &str, dir: &std::path::Path) {
    let policy = RunPolicy {
        misfire: MisfirePolicy::RunOnce,
        overlap: OverlapPolicy::Allow,
        ..RunPolicy::default()
    };
    let (store, _) = every(url, dir, "5m", policy.clone(), 0).await;
    // Fires at 5..=50m, all more than a minute late: only the latest runs.
    scheduler(&store).tick(t0() + minutes(52)).await.unwrap();
    let fired: Vec<(i64, JobStatus)> = fires(&store).await;
    let mut want: Vec<(i64, JobStatus)> = (1..=9).map(|k| (5 * k, JobStatus::Missed)).collect();
    want.push((50, JobStatus::Queued));
    assert_eq!(fired, want);

    // When a fire is on time, it stands for the missed ones.
    let dir = tempfile::tempdir().unwrap();
    let url = if url.starts_with("sqlite") {
        sqlite_url(dir.path())
    } else {
        TestPostgres::fresh_database()
    };
    let (store, _) = every_minute(&url, dir.path(), policy, 0).await;
    scheduler(&store)
        .tick(t0() + minutes(11) + TimeDelta::seconds(30))
        .await
        .unwrap();
    let mut want: Vec<(i64, JobStatus)> = (1..=10).map(|m| (m, JobStatus::Missed)).collect();
    want.push((11, JobStatus::Queued));
    assert_eq!(fires(&store).await, want);
}

async fn misfire_catch_up_runs_every_missed_fire(url: &str, dir: &std::path::Path) {
    let policy = RunPolicy {
        misfire: MisfirePolicy::CatchUp,
        overlap: OverlapPolicy::Queue,
        ..RunPolicy::default()
    };
    let (store, _) = every_minute(url, dir, policy, 0).await;
    scheduler(&store)
        .tick(t0() + minutes(5) + TimeDelta::seconds(90))
        .await
        .unwrap();
    let want: Vec<(i64, JobStatus)> = (1..=6).map(|m| (m, JobStatus::Queued)).collect();
    assert_eq!(fires(&store).await, want);
}

async fn racing_schedulers_record_each_fire_once(url: &str, dir: &std::path::Path) {
    let policy = RunPolicy {
        overlap: OverlapPolicy::Allow,
        misfire: MisfirePolicy::CatchUp,
        ..RunPolicy::default()
    };
    let (store, _) = every_minute(url, dir, policy, 0).await;
    // Four nodes tick at the same moments, each with its own scheduler.
    for minute in 1..=5 {
        let now = t0() + minutes(minute);
        let ticks = (0..4).map(|_| {
            let s = scheduler(&store);
            tokio::spawn(async move { s.tick(now).await.unwrap().recorded })
        });
        let mut recorded = 0;
        for t in ticks {
            recorded += t.await.unwrap();
        }
        assert_eq!(recorded, 1, "minute {minute}");
    }
    let want: Vec<(i64, JobStatus)> = (1..=5).map(|m| (m, JobStatus::Queued)).collect();
    assert_eq!(fires(&store).await, want);
}

async fn an_expired_lease_is_recovered_by_a_tick(url: &str, dir: &std::path::Path) {
    let (store, _) = every_minute(url, dir, RunPolicy::default(), 1).await;
    let s = scheduler(&store);
    s.tick(t0() + minutes(1)).await.unwrap();
    let lease = Duration::from_secs(30);
    let claim = store
        .claim_job("node-a/1/dead", t0() + minutes(1), lease)
        .await
        .unwrap()
        .expect("the fire is claimable");
    // Within the lease nothing happens; after it, the job is retried.
    assert_eq!(
        s.tick(t0() + minutes(1) + TimeDelta::seconds(29))
            .await
            .unwrap()
            .recovered,
        0
    );
    let report = s
        .tick(t0() + minutes(1) + TimeDelta::seconds(31))
        .await
        .unwrap();
    assert_eq!(report.recovered, 1);
    let job = store.get_job(claim.job.id).await.unwrap();
    assert_eq!((job.status, job.attempt), (JobStatus::Queued, 2));
    // The dead worker's late heartbeat is fenced out.
    let late = store.heartbeat(&claim.fence, t0() + minutes(3)).await;
    assert!(
        matches!(late, Err(cronium_store::StoreError::Fenced { .. })),
        "{late:?}"
    );
    // Claimed again and lost again: no retries left, it fails with the reason.
    let again = store
        .claim_job(
            "node-b/2/dead",
            t0() + minutes(1) + TimeDelta::seconds(40),
            lease,
        )
        .await
        .unwrap()
        .expect("the retry is claimable");
    assert_eq!(again.job.id, claim.job.id);
    s.tick(t0() + minutes(2) + TimeDelta::seconds(30))
        .await
        .unwrap();
    let job = store.get_job(claim.job.id).await.unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    assert!(
        job.error.as_deref().unwrap().contains("stopped reporting"),
        "{job:?}"
    );
}

async fn workers_fill_their_slots_and_no_more(url: &str, dir: &std::path::Path) {
    use cronium_engine::live::LogHub;
    use cronium_engine::running::RunningJobs;
    use cronium_engine::secrets::{MasterKey, Sealer};
    use cronium_engine::worker::{WorkerConfig, Workers};
    use cronium_exec::{ExecutorConfig, Executors, LocalExecutor, Sandbox};

    let policy = RunPolicy {
        overlap: OverlapPolicy::Allow,
        misfire: MisfirePolicy::CatchUp,
        ..RunPolicy::default()
    };
    let (store, event) = every_minute(url, dir, policy, 0).await;
    // Runs that last: a `true` could end, and free its slot, while the same
    // tick is still claiming (seen on a loaded machine), and the test is
    // about the slots, not about how fast bash exits.
    let mut writer = PayloadFiles::new(dir).writer();
    store
        .update_event(
            event.id,
            &|e| {
                Ok(EventSpec {
                    content: "sleep 0.5\n".into(),
                    ..e.spec.clone()
                })
            },
            &mut writer,
            t0(),
            &audit("event.update"),
        )
        .await
        .unwrap();
    writer.commit();
    scheduler(&store).tick(t0() + minutes(3)).await.unwrap();
    assert_eq!(fires(&store).await.len(), 3);
    let executor = LocalExecutor::new(ExecutorConfig {
        runner: cronium_exec::testing::runner_binary(),
        work_dir: dir.join("work"),
        sandbox: Sandbox::None,
        kill_grace: Duration::from_secs(1),
    })
    .unwrap();
    let running = RunningJobs::default();
    let workers = Workers::new(
        store.clone(),
        // Local jobs only here: a remote executor with nothing to deploy.
        Arc::new(Executors::new(
            executor,
            RemoteExecutor::new(
                Pool::default(),
                RunnerArtifacts::default(),
                Duration::from_secs(1),
            ),
            cronium_exec::HttpExecutor::new(
                cronium_exec::Guard::default(),
                cronium_exec::HttpLimits::default(),
            ),
        )),
        PayloadFiles::new(dir),
        Sealer::new(&MasterKey::generate()),
        Arc::new(LogHub::default()),
        running.clone(),
        Arc::new(Notify::new()),
        WorkerConfig {
            owner: "node-a/1/test".into(),
            slots: 2,
            lease: Duration::from_secs(30),
            log_limit: 1 << 20,
            drain: Duration::from_secs(30),
            data_dir: None,
        },
    );
    // Two slots: two of the three queued jobs start, the third waits.
    let now = t0() + minutes(3);
    assert_eq!(workers.tick(now).await.unwrap(), 2);
    assert_eq!(workers.tick(now).await.unwrap(), 0, "no slot is free");
    // As the runs end, slots free up and the third job starts.
    let mut started = 2;
    for _ in 0..200 {
        started += workers.tick(now).await.unwrap();
        let done = jobs(&store)
            .await
            .iter()
            .filter(|j| j.status == JobStatus::Succeeded)
            .count();
        if done == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(started, 3);
    assert!(
        jobs(&store)
            .await
            .iter()
            .all(|j| j.status == JobStatus::Succeeded)
    );
    assert_eq!(running.count(), 0);
}

async fn a_workflow_trigger_starts_one_run_per_fire_however_many_schedulers_tick(
    url: &str,
    dir: &std::path::Path,
) {
    let (store, event) = every(url, dir, "1d", RunPolicy::default(), 0).await;
    let definition = serde_json::json!({
        "name": "minutely-flow", "trigger": { "type": "every", "every": "1m" }, "overlap": "allow",
        "nodes": [{ "id": "only", "event": event.id.0 }],
    });
    let (workflow, _) = store
        .apply_workflow(
            UserId(1),
            &cronium_core::WorkflowName::new("minutely-flow").unwrap(),
            &definition,
            &[event.id],
            t0(),
            &audit("workflow.apply"),
        )
        .await
        .unwrap();
    assert_eq!(workflow.next_fire_at, Some(t0() + minutes(1)));
    assert_eq!(
        scheduler(&store)
            .tick(t0() + TimeDelta::seconds(59))
            .await
            .unwrap()
            .workflow_runs,
        0
    );
    // Four nodes tick at the fire time: one run.
    let now = t0() + minutes(1);
    let ticks = (0..4).map(|_| {
        let s = scheduler(&store);
        tokio::spawn(async move { s.tick(now).await.unwrap().workflow_runs })
    });
    let mut started = 0;
    for t in ticks {
        started += t.await.unwrap();
    }
    assert_eq!(started, 1);
    // After a downtime over two fires: one run, for the first fire missed,
    // and the next fire after now.
    let report = scheduler(&store)
        .tick(t0() + minutes(3) + TimeDelta::seconds(30))
        .await
        .unwrap();
    assert_eq!(report.workflow_runs, 1);
    let runs = store
        .list_workflow_runs(
            &Default::default(),
            PageRequest {
                limit: 10,
                offset: 0,
            },
        )
        .await
        .unwrap();
    let fired: Vec<_> = runs
        .items
        .iter()
        .rev()
        .map(|r| (r.trigger, r.fire_at.map(|at| (at - t0()).num_minutes())))
        .collect();
    assert_eq!(
        fired,
        [
            (cronium_store::RunTrigger::Schedule, Some(1)),
            (cronium_store::RunTrigger::Schedule, Some(2)),
        ]
    );
    let workflow = store.get_workflow(workflow.id).await.unwrap().unwrap();
    assert_eq!(workflow.next_fire_at, Some(t0() + minutes(4)));
    // Each run queued its node's job.
    let node_jobs = jobs(&store)
        .await
        .iter()
        .filter(|j| j.trigger == cronium_core::Trigger::Workflow)
        .count();
    assert_eq!(node_jobs, 2);
}

async fn a_heartbeat_is_stamped_by_the_database_and_reports_a_clock_far_off(
    url: &str,
    _dir: &std::path::Path,
) {
    let store = cronium_store::open(url).await.unwrap();
    let beat = cronium_engine::nodes::Heartbeat::new(
        store.clone(),
        "host/1/ab".into(),
        "127.0.0.1:8080".into(),
        t0(),
        Default::default(),
    );
    // This server's clock an hour ahead: the row's time is the database's,
    // and the offset says how far off this one is.
    let ahead = Utc::now() + TimeDelta::hours(1);
    let offset = beat.tick(ahead).await.unwrap();
    assert!((offset - 3_600_000).abs() < 5_000, "{offset}");
    let (nodes, database_now) = store.list_nodes().await.unwrap();
    assert_eq!(nodes.len(), 1);
    let node = &nodes[0];
    assert_eq!(
        (node.id.as_str(), node.address.as_str(), node.started_at),
        ("host/1/ab", "127.0.0.1:8080", t0())
    );
    assert_eq!(node.clock_offset_ms, offset);
    assert!(
        node.heartbeat_at <= database_now && node.heartbeat_at < ahead - TimeDelta::minutes(59)
    );
    // The next heartbeat updates the same row.
    let offset = beat.tick(Utc::now()).await.unwrap();
    assert!(offset.abs() < 5_000, "{offset}");
    assert_eq!(store.list_nodes().await.unwrap().0.len(), 1);
}

async fn one_scheduler_at_a_time_does_the_housekeeping(url: &str, dir: &std::path::Path) {
    let (store, _) = every_minute(url, dir, RunPolicy::default(), 0).await;
    let a = scheduler(&store).owned_by("node-a");
    let b = scheduler(&store).owned_by("node-b");
    // Two nodes at once: one prunes, the other is told someone else does.
    let (first, second) = tokio::join!(a.housekeeping(t0()), b.housekeeping(t0()));
    let (first, second) = (first.unwrap(), second.unwrap());
    assert!(first.is_some() != second.is_some(), "{first:?} {second:?}");
    let (holder, other) = if first.is_some() { (&a, &b) } else { (&b, &a) };
    // The holder keeps it on its next round; the other still does not.
    assert!(holder.housekeeping(t0()).await.unwrap().is_some());
    assert_eq!(other.housekeeping(t0()).await.unwrap(), None);
    // A lease that expired (by the database's clock) passes to another.
    assert!(
        store
            .try_lease("short", "node-a", Duration::ZERO)
            .await
            .unwrap()
    );
    assert!(
        store
            .try_lease("short", "node-b", Duration::from_secs(60))
            .await
            .unwrap()
    );
    assert!(
        !store
            .try_lease("short", "node-a", Duration::from_secs(60))
            .await
            .unwrap()
    );
}
