//! Upgrading a database that has data: a store opened on a database left at migration 0006 (notifications) with a channel, an event action, a job with its log and a delivery keeps them all through 0007 (email channels), 0008 (chains), 0011 (server tags) and 0015 (workflow runs), on SQLite and PostgreSQL.
//!
//! SQLite's 0007 rebuilds `channels`, its 0008 `event_actions` and
//! `jobs`, and its 0015 `jobs` again (it cannot change a CHECK in place); done with foreign keys on,
//! dropping an old table would delete every delivery and log line
//! (`ON DELETE CASCADE`) and fail on every action (`RESTRICT`).
//! These tests stop sqlx's migrator at 0006, write rows as that schema
//! has them (plain SQL: the store's own code speaks the newest schema),
//! then open the store, which applies the rest.

use std::path::Path;

use cronium_core::{ChannelId, ChannelKind, EventId, JobId};
use cronium_store::testing::{TestPostgres, sqlite_url};
use cronium_store::{DeliveryStatus, Store};
use sqlx::migrate::Migrator;

/// The rows 0006 knows, each backend's time written as `{T}`.
const ROWS_AT_0006: &[&str] = &[
    "INSERT INTO users (id, name, role, created_at) VALUES (1, 'admin', 'admin', {T})",
    "INSERT INTO events (id, owner_id, name, name_folded, kind, content, schedule, status, \
     run_location, timeout_secs, retries, created_at, updated_at) VALUES (1, 1, 'backup', \
     'backup', 'script', 'exit 3', '{}', 'paused', 'local', 60, 0, {T}, {T})",
    // The store backfills a schedule for an event without one, which would
    // parse this hand-made row; one is there already.
    "INSERT INTO schedule_state (event_id, anchor, next_fire_at) VALUES (1, {T}, NULL)",
    "INSERT INTO jobs (id, event_id, \"trigger\", status, scheduled_at, run_after, exit_code, \
     created_at, updated_at) VALUES (1, 1, 'manual', 'failed', {T}, {T}, 3, {T}, {T})",
    "INSERT INTO job_logs (job_id, seq, stream, at, data) VALUES (1, 1, 'stdout', {T}, '\\x010203')",
    "INSERT INTO channels (id, name, kind, url, sealed_secret, created_at, updated_at) \
     VALUES (7, 'ops', 'webhook', 'https://hooks.example.com/ops', '\\x010203', {T}, {T})",
    "INSERT INTO event_actions (id, event_id, fire_when, channel_id, created_at) \
     VALUES (5, 1, 'failure', 7, {T})",
    "INSERT INTO deliveries (id, job_id, action_id, channel_id, status, attempts, \
     next_attempt_at, last_status, last_error, created_at, updated_at) \
     VALUES (9, 1, 5, 7, 'failed', 2, {T}, 500, 'upstream down', {T}, {T})",
    "INSERT INTO servers (id, name, host, port, username, auth_kind, sealed_credentials, \
     created_at, updated_at) VALUES (3, 'web-1', '10.0.0.5', 22, 'deploy', 'key', '\\x010203', {T}, {T})",
];

fn statements(time: &str, bytes: &str) -> Vec<String> {
    ROWS_AT_0006
        .iter()
        .map(|s| s.replace("{T}", time).replace("'\\x010203'", bytes))
        .collect()
}

async fn migrator(dialect: &str) -> Migrator {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(dialect);
    Migrator::new(dir).await.unwrap()
}

#[tokio::test]
async fn sqlite_keeps_channels_actions_jobs_and_deliveries_through_the_rebuilds() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    {
        use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
        use std::str::FromStr;
        // Foreign keys on, as the store's own connections have them.
        let options = SqliteConnectOptions::from_str(&url)
            .unwrap()
            .create_if_missing(true)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        migrator("sqlite").await.run_to(6, &pool).await.unwrap();
        for statement in statements("1772366400000000", "x'010203'") {
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&pool)
                .await
                .unwrap();
        }
        // A channel made and deleted before the upgrade: its id is never
        // given again.
        sqlx::query(
            "INSERT INTO channels (id, name, kind, url, sealed_secret, created_at, updated_at) \
             VALUES (8, 'gone', 'slack', 'https://hooks.slack.com/services/…', x'01', 1, 1)",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("DELETE FROM channels WHERE id = 8")
            .execute(&pool)
            .await
            .unwrap();
        // Likewise a job since pruned.
        sqlx::query(
            "INSERT INTO jobs (id, event_id, \"trigger\", status, scheduled_at, run_after, \
             created_at, updated_at) VALUES (4, 1, 'manual', 'failed', 1, 1, 1, 1)",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("DELETE FROM jobs WHERE id = 4")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    let store = cronium_store::open(&url).await.unwrap();
    kept(&*store).await;
    let store_pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let (jobs_seq,): (i64,) = sqlx::query_as("SELECT seq FROM sqlite_sequence WHERE name = 'jobs'")
        .fetch_one(&store_pool)
        .await
        .unwrap();
    assert_eq!(
        jobs_seq, 4,
        "the next job id goes on after the highest ever given"
    );
    let next = store
        .create_channel(email_channel(), chrono::Utc::now(), &audit())
        .await
        .unwrap();
    assert_eq!(
        next.id,
        ChannelId(9),
        "ids go on after the highest ever given"
    );
}

#[tokio::test]
async fn postgres_keeps_channels_actions_jobs_and_deliveries_through_the_rebuilds() {
    let url = tokio::task::spawn_blocking(TestPostgres::fresh_database)
        .await
        .unwrap();
    {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        migrator("postgres").await.run_to(6, &pool).await.unwrap();
        for statement in statements("now()", "'\\x010203'::bytea") {
            // Identity columns take the ids these rows name.
            let statement = statement.replace(") VALUES (", ") OVERRIDING SYSTEM VALUE VALUES (");
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.close().await;
    }
    let store = cronium_store::open(&url).await.unwrap();
    kept(&*store).await;
    store
        .create_channel(email_channel(), chrono::Utc::now(), &audit())
        .await
        .unwrap();
}

/// The channel, its action and its delivery are as they were, still
/// linked, and the channel still cannot go while the action uses it.
async fn kept(store: &dyn Store) {
    let channel = store.get_channel(ChannelId(7)).await.unwrap();
    assert_eq!(channel.spec.name.as_str(), "ops");
    assert_eq!(channel.spec.kind, ChannelKind::Webhook);
    assert_eq!(channel.spec.url, "https://hooks.example.com/ops");
    assert_eq!(channel.spec.sealed_secret, vec![1, 2, 3]);
    assert_eq!(channel.spec.email, None);

    let actions = store.list_actions(EventId(1)).await.unwrap();
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert_eq!(
        actions[0].spec.target,
        cronium_core::ActionTarget::Notify(ChannelId(7))
    );
    let job = store.get_job(JobId(1)).await.unwrap();
    assert_eq!(job.exit_code, Some(3));
    assert_eq!(store.job_logs(JobId(1), 0, 10).await.unwrap().len(), 1);

    let deliveries = store.job_deliveries(JobId(1)).await.unwrap();
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    let d = &deliveries[0];
    assert_eq!(d.channel_id, ChannelId(7));
    assert_eq!(d.reason, cronium_store::DeliveryReason::End);
    assert_eq!(
        (d.status, d.attempts, d.last_status, d.last_error.as_deref()),
        (DeliveryStatus::Failed, 2, Some(500), Some("upstream down"))
    );

    // A server from before tags (0011) has none.
    let server = store.get_server(cronium_core::ServerId(3)).await.unwrap();
    assert_eq!(server.spec.name.as_str(), "web-1");
    assert!(server.spec.tags.is_empty());

    // The foreign keys hold on the rebuilt table.
    let in_use = store.delete_channel(ChannelId(7), &audit()).await;
    assert!(in_use.is_err(), "a channel in use was deleted");
}

fn email_channel() -> cronium_core::ChannelSpec {
    use cronium_core::{EmailAddress, EmailSettings, SmtpTls};
    let email = EmailSettings {
        to: vec![EmailAddress::new("ops@example.com", "to").unwrap()],
        from: EmailAddress::new("cronium@example.com", "from").unwrap(),
        host: "mail.example.com".into(),
        port: 587,
        tls: SmtpTls::Starttls,
        username: None,
        ca_cert: None,
    };
    cronium_core::ChannelSpec {
        name: cronium_core::ChannelName::new("mail").unwrap(),
        kind: ChannelKind::Email,
        url: email.relay_url(),
        sealed_secret: Vec::new(),
        email: Some(email),
    }
}

fn audit() -> cronium_store::AuditEntry {
    cronium_store::AuditEntry {
        at: chrono::Utc::now(),
        actor: None,
        action: "test".into(),
        target_type: "channel".into(),
        target_id: None,
        detail: serde_json::json!({}),
    }
}
