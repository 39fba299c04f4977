//! Signals between servers on one PostgreSQL database: what a change announces, that it arrives at commit on another connection's listener, and that a listener whose connection is killed can connect again and hear later signals.

use std::time::Duration;

use chrono::Utc;
use cronium_core::{JobId, JobStatus, Trigger};
use cronium_store::postgres::LISTENER_APPLICATION_NAME;
use cronium_store::testing::{StubWriter, TestPostgres, manual_script, sqlite_url};
use cronium_store::{
    AuditEntry, JobOutcome, LogLine, LogStream, NewJob, PgStore, Signal, SignalListener, Store,
};
use serde_json::json;

const LEASE: Duration = Duration::from_secs(30);
/// Far longer than a notification takes on loopback; only a missing one waits this long.
const PATIENCE: Duration = Duration::from_secs(10);

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
        data: format!("line {seq}\n").into_bytes(),
        server: None,
    }
}

fn failed() -> JobOutcome {
    JobOutcome {
        status: JobStatus::Failed,
        exit_code: Some(1),
        error: Some("exit 1".into()),
        metadata: json!({}),
    }
}

async fn postgres() -> (String, PgStore) {
    let url = tokio::task::spawn_blocking(TestPostgres::fresh_database)
        .await
        .unwrap();
    let store = PgStore::connect(&url).await.unwrap();
    (url, store)
}

async fn next(listener: &mut Box<dyn SignalListener>) -> Signal {
    tokio::time::timeout(PATIENCE, listener.recv())
        .await
        .expect("a signal in time")
        .expect("the listener is connected")
}

async fn queue(store: &dyn Store, event: cronium_core::EventId) -> JobId {
    store
        .enqueue_job(
            NewJob {
                event_id: event,
                trigger: Trigger::Manual,
                scheduled_at: Utc::now(),
                input: None,
            },
            Utc::now(),
        )
        .await
        .unwrap()
        .id
}

#[tokio::test]
async fn sqlite_has_no_listener() {
    let dir = tempfile::tempdir().unwrap();
    let store = cronium_store::open(&sqlite_url(dir.path())).await.unwrap();
    assert!(store.signal_listener().is_none());
}

/// The listener and the writer are separate stores (separate connections,
/// as two servers would be). Each change is announced once, at its commit,
/// in the order of the commits; a refused write announces nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_announce_themselves_to_another_connection_at_commit() {
    let (url, writer) = postgres().await;
    let listening = PgStore::connect(&url).await.unwrap();
    let mut listener = listening.signal_listener().expect("postgres listens");
    listener.connect().await.unwrap();

    let owner = writer.ensure_admin(Utc::now()).await.unwrap().id;
    let event = writer
        .create_event(
            owner,
            manual_script("retrying", 1),
            &mut StubWriter,
            Utc::now(),
            &audit(),
        )
        .await
        .unwrap();
    assert_eq!(next(&mut listener).await, Signal::SchedulesChanged);

    let job = queue(&writer, event.id).await;
    assert_eq!(next(&mut listener).await, Signal::JobsQueued);

    let claim = writer
        .claim_job("node-a", Utc::now(), LEASE)
        .await
        .unwrap()
        .expect("the job is claimable");
    assert_eq!(claim.job.id, job);
    // Three lines in one transaction: one signal with the newest line.
    writer
        .append_logs(&claim.fence, &[line(1), line(2), line(3)])
        .await
        .unwrap();
    assert_eq!(next(&mut listener).await, Signal::LogStored { job, seq: 3 });
    // A batch that does not continue the sequence is refused whole, and
    // its transaction announces nothing.
    writer
        .append_logs(&claim.fence, &[line(7)])
        .await
        .unwrap_err();
    writer.append_logs(&claim.fence, &[line(4)]).await.unwrap();
    assert_eq!(next(&mut listener).await, Signal::LogStored { job, seq: 4 });

    // A failure with a retry left queues the job again: claimable.
    let retried = writer
        .finish_job(&claim.fence, failed(), Utc::now(), Utc::now())
        .await
        .unwrap();
    assert_eq!(retried.status, JobStatus::Queued);
    assert_eq!(next(&mut listener).await, Signal::JobsQueued);

    // The last attempt's failure ends it.
    let claim = writer
        .claim_job("node-a", Utc::now(), LEASE)
        .await
        .unwrap()
        .expect("the retry is claimable");
    let ended = writer
        .finish_job(&claim.fence, failed(), Utc::now(), Utc::now())
        .await
        .unwrap();
    assert_eq!(ended.status, JobStatus::Failed);
    assert_eq!(next(&mut listener).await, Signal::JobEnded(job));

    // Cancelling a queued job ends it too.
    let queued = queue(&writer, event.id).await;
    assert_eq!(next(&mut listener).await, Signal::JobsQueued);
    writer
        .cancel_job(queued, Utc::now(), &audit())
        .await
        .unwrap();
    assert_eq!(next(&mut listener).await, Signal::JobEnded(queued));
}

/// An expired lease recovered with a retry left makes the job claimable
/// again, and says so (the recovery itself is another server's doing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovered_lease_announces_its_job_claimable() {
    let (url, writer) = postgres().await;
    let listening = PgStore::connect(&url).await.unwrap();
    let owner = writer.ensure_admin(Utc::now()).await.unwrap().id;
    let event = writer
        .create_event(
            owner,
            manual_script("lost", 1),
            &mut StubWriter,
            Utc::now(),
            &audit(),
        )
        .await
        .unwrap();
    let job = queue(&writer, event.id).await;
    writer
        .claim_job("gone", Utc::now(), Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    let mut listener = listening.signal_listener().unwrap();
    listener.connect().await.unwrap();
    let later = Utc::now() + chrono::Duration::seconds(5);
    let recovered = writer.recover_expired_leases(later, later).await.unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].job.id, job);
    assert!(recovered[0].retried);
    assert_eq!(next(&mut listener).await, Signal::JobsQueued);
}

/// `pg_terminate_backend` of the listening connection is an error the
/// caller sees (not a silent reconnect that would lose what was sent
/// meanwhile); connecting again hears later signals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_listener_reports_it_and_hears_again_once_reconnected() {
    let (url, writer) = postgres().await;
    let listening = PgStore::connect(&url).await.unwrap();
    let mut listener = listening.signal_listener().unwrap();
    listener.connect().await.unwrap();
    let owner = writer.ensure_admin(Utc::now()).await.unwrap().id;
    let event = writer
        .create_event(
            owner,
            manual_script("kept", 0),
            &mut StubWriter,
            Utc::now(),
            &audit(),
        )
        .await
        .unwrap();
    assert_eq!(next(&mut listener).await, Signal::SchedulesChanged);

    let killed: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND datname = current_database()",
    )
    .bind(LISTENER_APPLICATION_NAME)
    .fetch_all(writer.pool())
    .await
    .unwrap();
    assert_eq!(killed, vec![(true,)], "one listening connection");
    let lost = tokio::time::timeout(PATIENCE, listener.recv())
        .await
        .expect("the loss is noticed");
    assert!(lost.is_err(), "{lost:?}");
    // Not connected until asked to.
    assert!(listener.recv().await.is_err());

    listener.connect().await.unwrap();
    queue(&writer, event.id).await;
    assert_eq!(next(&mut listener).await, Signal::JobsQueued);
}
