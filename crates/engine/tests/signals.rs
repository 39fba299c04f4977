//! The signal router on a real PostgreSQL database: another connection's changes wake the workers, the scheduler and the followers of a job here; after `pg_terminate_backend` of its listening connection, or a restart of the database, it connects again, wakes everyone to re-read, and hears later changes.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use cronium_core::{JobId, JobStatus, Trigger};
use cronium_engine::live::{FOLLOW_POLL, FOLLOW_POLL_LISTENING, LogHub};
use cronium_engine::signals::{SignalRouter, Wakers};
use cronium_store::postgres::LISTENER_APPLICATION_NAME;
use cronium_store::testing::{StubWriter, TestPostgres, manual_script, sqlite_url};
use cronium_store::{AuditEntry, Claim, JobOutcome, LogLine, LogStream, NewJob, PgStore, Store};
use serde_json::json;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

/// Far longer than a notification takes on loopback; only a missing one waits this long.
const PATIENCE: Duration = Duration::from_secs(10);
const LEASE: Duration = Duration::from_secs(30);

fn audit() -> AuditEntry {
    AuditEntry {
        at: Utc::now(),
        actor: None,
        action: "event.create".into(),
        target_type: "event".into(),
        target_id: None,
        detail: json!({}),
    }
}

fn line(seq: u64) -> LogLine {
    LogLine {
        seq,
        stream: LogStream::Stdout,
        at: Utc::now(),
        data: b"hello\n".to_vec(),
        server: None,
    }
}

async fn woken(notify: &Notify, what: &str) {
    tokio::time::timeout(PATIENCE, notify.notified())
        .await
        .unwrap_or_else(|_| panic!("{what} not woken"));
}

/// Consumes a wake-up left over from earlier, so the next check sees a new one.
async fn drain(notify: &Notify) {
    let _ = tokio::time::timeout(Duration::from_millis(200), notify.notified()).await;
}

async fn changed(follower: &mut watch::Receiver<u64>, what: &str) -> u64 {
    tokio::time::timeout(PATIENCE, follower.changed())
        .await
        .unwrap_or_else(|_| panic!("{what}: the follower was not woken"))
        .expect("the job is still followed");
    *follower.borrow_and_update()
}

async fn connects(counter: &mut watch::Receiver<u64>, n: u64) {
    tokio::time::timeout(PATIENCE, counter.wait_for(|c| *c >= n))
        .await
        .unwrap_or_else(|_| panic!("connection {n} was not made"))
        .unwrap();
}

async fn queue(store: &dyn Store, event: cronium_core::EventId) -> JobId {
    let new = NewJob {
        event_id: event,
        trigger: Trigger::Manual,
        scheduled_at: Utc::now(),
        input: None,
    };
    store.enqueue_job(new, Utc::now()).await.unwrap().id
}

async fn claim(store: &dyn Store) -> Claim {
    store
        .claim_job("node-a", Utc::now(), LEASE)
        .await
        .unwrap()
        .expect("a claimable job")
}

#[tokio::test]
async fn sqlite_has_nothing_to_listen_to() {
    let dir = tempfile::tempdir().unwrap();
    let store = cronium_store::open(&sqlite_url(dir.path())).await.unwrap();
    let hub = Arc::new(LogHub::default());
    let wakers = Wakers {
        jobs_queued: Arc::default(),
        schedules_changed: Arc::default(),
        hub: hub.clone(),
    };
    assert!(SignalRouter::new(&*store, wakers).is_none());
    assert_eq!(hub.follow_poll(), FOLLOW_POLL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_connections_changes_wake_loops_here_even_after_the_listener_is_killed() {
    let url = tokio::task::spawn_blocking(TestPostgres::fresh_database)
        .await
        .unwrap();
    // Two stores on one database, as two servers: `other` makes the changes.
    let here = PgStore::connect(&url).await.unwrap();
    let other = PgStore::connect(&url).await.unwrap();
    let hub = Arc::new(LogHub::default());
    let wakers = Wakers {
        jobs_queued: Arc::new(Notify::new()),
        schedules_changed: Arc::new(Notify::new()),
        hub: hub.clone(),
    };
    let router = SignalRouter::new(&here, wakers.clone()).expect("postgres listens");
    let mut counter = router.connects();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(router.run(cancel.clone()));

    // The first connect resyncs: workers and scheduler look at the tables.
    connects(&mut counter, 1).await;
    woken(&wakers.jobs_queued, "workers (resync)").await;
    woken(&wakers.schedules_changed, "scheduler (resync)").await;
    assert_eq!(hub.follow_poll(), FOLLOW_POLL_LISTENING);

    let owner = other.ensure_admin(Utc::now()).await.unwrap().id;
    let event = other
        .create_event(
            owner,
            manual_script("followed", 0),
            &mut StubWriter,
            Utc::now(),
            &audit(),
        )
        .await
        .unwrap();
    woken(&wakers.schedules_changed, "scheduler (event created)").await;
    let job = queue(&other, event.id).await;
    woken(&wakers.jobs_queued, "workers (job queued)").await;

    let mut follower = hub.subscribe(job);
    let running = claim(&other).await;
    other
        .append_logs(&running.fence, &[line(1), line(2)])
        .await
        .unwrap();
    assert_eq!(changed(&mut follower, "lines 1-2").await, 2);

    // The listening connection is killed: the router connects again, and
    // wakes everyone to read what it may have missed.
    drain(&wakers.jobs_queued).await;
    drain(&wakers.schedules_changed).await;
    let killed: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND datname = current_database()",
    )
    .bind(LISTENER_APPLICATION_NAME)
    .fetch_all(other.pool())
    .await
    .unwrap();
    assert_eq!(killed, vec![(true,)], "one listening connection");
    connects(&mut counter, 2).await;
    woken(&wakers.jobs_queued, "workers (resync after reconnect)").await;
    woken(
        &wakers.schedules_changed,
        "scheduler (resync after reconnect)",
    )
    .await;
    // Woken at least once by the loss or the resync, with no news of a line.
    assert_eq!(changed(&mut follower, "resync").await, 2);
    assert_eq!(hub.follow_poll(), FOLLOW_POLL_LISTENING);

    // Later changes are heard on the new connection.
    other.append_logs(&running.fence, &[line(3)]).await.unwrap();
    // The loss and the resync may both have woken it; the line comes after.
    let mut seen = changed(&mut follower, "line 3").await;
    while seen != 3 {
        seen = changed(&mut follower, "line 3").await;
    }
    let outcome = JobOutcome {
        status: JobStatus::Succeeded,
        exit_code: Some(0),
        error: None,
        metadata: json!({}),
    };
    other
        .finish_job(&running.fence, outcome, Utc::now(), Utc::now())
        .await
        .unwrap();
    changed(&mut follower, "the end").await;
    assert!(other.get_job(job).await.unwrap().status.is_terminal());

    cancel.cancel();
    tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
    assert_eq!(hub.follow_poll(), FOLLOW_POLL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_database_restarts_the_listener_connects_again_and_hears_changes() {
    // A cluster of this test's own: it is stopped and started again.
    let cluster = tokio::task::spawn_blocking(|| TestPostgres::start_owned(&[], &[]))
        .await
        .unwrap()
        .expect("start PostgreSQL");
    let url = cluster.create_database();
    let here = PgStore::connect(&url).await.unwrap();
    let hub = Arc::new(LogHub::default());
    let wakers = Wakers {
        jobs_queued: Arc::new(Notify::new()),
        schedules_changed: Arc::new(Notify::new()),
        hub: hub.clone(),
    };
    let router = SignalRouter::new(&here, wakers.clone()).expect("postgres listens");
    let mut counter = router.connects();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(router.run(cancel.clone()));
    connects(&mut counter, 1).await;

    // `pg_ctl stop -m immediate`, two seconds down, then up again.
    let restart = tokio::task::spawn_blocking(move || {
        cluster.stop_immediate().unwrap();
        std::thread::sleep(Duration::from_secs(2));
        cluster.start().unwrap();
        cluster
    });
    let cluster = restart.await.unwrap();
    connects(&mut counter, 2).await;
    drain(&wakers.jobs_queued).await;

    // Another server's change after the restart is heard.
    let other = PgStore::connect(&url).await.unwrap();
    let owner = other.ensure_admin(Utc::now()).await.unwrap().id;
    let event = other
        .create_event(
            owner,
            manual_script("after restart", 0),
            &mut StubWriter,
            Utc::now(),
            &audit(),
        )
        .await
        .unwrap();
    queue(&other, event.id).await;
    woken(
        &wakers.jobs_queued,
        "workers (a job queued after the restart)",
    )
    .await;

    cancel.cancel();
    tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
    drop(cluster);
}
