//! A server paused inside a transaction does not hold its locks for ever: PostgreSQL ends a store session left idle in a transaction after a few seconds, so other servers can recover and claim what it had locked.

use std::time::{Duration, Instant};

use cronium_store::PgStore;
use cronium_store::testing::TestPostgres;

#[tokio::test]
async fn a_session_left_idle_in_a_transaction_loses_its_locks() {
    let url = tokio::task::spawn_blocking(TestPostgres::fresh_database)
        .await
        .unwrap();
    let paused = PgStore::connect(&url).await.unwrap();
    let other = PgStore::connect(&url).await.unwrap();

    // A transaction takes a lock, then its server stops (SIGSTOP) before
    // the next statement.
    let mut tx = paused.pool().begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(16)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let taken = Instant::now();

    let free = || async {
        sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_xact_lock(16)")
            .fetch_one(other.pool())
            .await
            .unwrap()
    };
    assert!(
        !free().await,
        "the lock is held while the transaction lives"
    );
    let released = loop {
        if free().await {
            break taken.elapsed();
        }
        assert!(taken.elapsed() < Duration::from_secs(15), "never released");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(released >= Duration::from_secs(2), "{released:?}");
    println!("the idle transaction's lock was released after {released:?}");

    // The paused server finds its session gone when it resumes: nothing it
    // meant to write in that transaction is written.
    let late = sqlx::query("SELECT 1").execute(&mut *tx).await;
    assert!(late.is_err(), "the session survived: {late:?}");
}
