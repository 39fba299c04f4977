//! The PostgreSQL dialect: row locks (`SELECT ... FOR UPDATE`) serialize what must not interleave, so several nodes may share one database; times are TIMESTAMPTZ, JSON is JSONB.
//!
//! Transactions run at READ COMMITTED. `update_event`, `prune_payloads`,
//! `delete_event`, `update_server` and the job queue lock their row first
//! (`Backend::lock_event`, `Backend::lock`), so every later statement of
//! the transaction sees the state the previous holder committed. Lock order
//! is always an event before its jobs. Claimers take jobs of unlimited
//! events with `SKIP LOCKED`; for an event with a concurrency limit they take
//! turns on the event's row (`claim_limited`).
//!
//! What this module must not hold: any SQL the store runs on both backends
//! (that is `store.rs`'s), or any decision about what the store does.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cronium_core::EventId;
use sqlx::migrate::Migrator;
use sqlx::postgres::{
    PgArguments, PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions, PgRow,
};
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, Postgres, Row};

use crate::db::{Arg, Backend, Conn, Lock, Sql, Tx, sql};
use crate::jobs as rules;
use crate::rows::{self, Reader, StoreRow};
use crate::signals::{CHANNEL, Signal, SignalListener};
use crate::store::{SqlStore, event_exists, jobs::backfill_schedules};
use crate::{Result, StoreError};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a request waits for a pooled connection before it fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// The PostgreSQL store. Cheap to clone: it is a handle on a connection pool.
pub type PgStore = SqlStore<PgBackend>;

/// Ends a session left idle inside a transaction this long, releasing its
/// locks: well under the shortest job lease (5 s).
const IDLE_IN_TRANSACTION_TIMEOUT: &str = "SET idle_in_transaction_session_timeout = '3s'";

/// PostgreSQL's connection pool, and how PostgreSQL differs (`Backend`).
#[derive(Debug, Clone)]
pub struct PgBackend {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `postgres://...` and applies the migrations (sqlx holds an
    /// advisory lock meanwhile, so nodes starting together do not race).
    pub async fn connect(url: &str) -> Result<PgStore> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Backend(format!("invalid PostgreSQL URL: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // A server paused in the middle of a transaction
                    // (SIGSTOP, a frozen VM) must not hold its row locks
                    // for ever: another server could neither recover its
                    // jobs (skipped as locked) nor claim their events.
                    // Every transaction here runs its statements back to
                    // back, so a session this long idle in one is stuck.
                    sqlx::Executor::execute(&mut *conn, IDLE_IN_TRANSACTION_TIMEOUT).await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            // The URL may hold a password: name the host only.
            .map_err(|e| StoreError::Backend(format!("cannot connect to PostgreSQL: {e}")))?;
        MIGRATOR.run(&pool).await?;
        let store = SqlStore {
            db: PgBackend { pool },
        };
        // Events created before schedules were kept get one, starting now.
        // This is the one place the store reads the clock: no caller knows
        // those events exist.
        backfill_schedules(&store, Utc::now()).await?;
        Ok(store)
    }

    /// The pool, for code that needs SQL the trait does not offer (tests, jobs).
    pub fn pool(&self) -> &PgPool {
        &self.db.pool
    }
}

impl StoreRow for PgRow {
    rows::primitive_getters!();

    fn time(&self, column: &str) -> std::result::Result<Option<DateTime<Utc>>, String> {
        self.try_get(column).map_err(|e| e.to_string())
    }
}

/// The statement with its values as PostgreSQL stores them. Every value is
/// sent with its type, a NULL too, so shared SQL needs no casts.
fn query(q: Sql) -> Query<'static, Postgres, PgArguments> {
    q.args
        .into_iter()
        .fold(sqlx::query(AssertSqlSafe(q.text)), |query, arg| match arg {
            Arg::Int(v) => query.bind(v),
            Arg::Text(v) => query.bind(v),
            Arg::Bytes(v) => query.bind(v),
            Arg::Bool(v) => query.bind(v),
            Arg::Time(v) => query.bind(v),
            // JSONB, which the columns are: text would need a cast in the SQL.
            Arg::Json(v) => query.bind(v.map(sqlx::types::Json)),
        })
}

#[async_trait]
impl Conn for PgConnection {
    type Row = PgRow;

    async fn execute(&mut self, q: Sql) -> Result<u64, sqlx::Error> {
        Ok(query(q).execute(self).await?.rows_affected())
    }

    async fn fetch_all(&mut self, q: Sql) -> Result<Vec<PgRow>, sqlx::Error> {
        query(q).fetch_all(self).await
    }

    async fn fetch_optional(&mut self, q: Sql) -> Result<Option<PgRow>, sqlx::Error> {
        query(q).fetch_optional(self).await
    }

    async fn notify(&mut self, channel: &str, payload: &str) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(self)
            .await
            .map(drop)
    }
}

#[async_trait]
impl Backend for PgBackend {
    const NAME: &'static str = "postgres";
    /// The protocol counts parameters in 16 bits.
    const MAX_BINDS: usize = 65535;

    type Db = Postgres;

    fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    async fn begin(&self) -> Result<Tx<Self>, sqlx::Error> {
        self.pool.begin().await
    }

    fn lock(select: &'static str, lock: Lock) -> Cow<'static, str> {
        let clause = match lock {
            Lock::Update => "FOR UPDATE",
            Lock::Exclusive => "FOR NO KEY UPDATE",
            Lock::Share => "FOR SHARE",
            Lock::UpdateSkipLocked => "FOR UPDATE SKIP LOCKED",
        };
        Cow::Owned(format!("{select} {clause}"))
    }

    async fn lock_event(tx: &mut Tx<Self>, id: EventId) -> Result<()> {
        event_exists::<Self, _>(tx, id, Some(Lock::Exclusive)).await
    }

    async fn clock(tx: &mut Tx<Self>) -> Result<DateTime<Utc>> {
        let row = sql("SELECT clock_timestamp() AS now").fetch_one(tx).await?;
        crate::rows::Reader::new(&row, "clock")
            .opt_time("now")?
            .ok_or_else(|| StoreError::Backend("the database has no clock".into()))
    }

    fn json_array(value: &str, order: &str, from: &str) -> String {
        format!("(SELECT COALESCE(json_agg({value} ORDER BY {order}), '[]')::text FROM {from})")
    }

    fn contains(haystack: &str, needle: &str) -> String {
        format!("strpos({haystack}, {needle}) > 0")
    }

    /// Several claimers may run at once, on several nodes. Each try looks for
    /// the oldest claimable job as its snapshot sees it, without locking, and
    /// then locks: for an unlimited event, the oldest such job no other
    /// claimer holds (`SKIP LOCKED`); for a limited one, the event's row, then
    /// its oldest queued job if it is below its limit (`claim_limited`).
    /// A try that finds its candidate taken gives up that event (or all
    /// unlimited ones) and tries again, at most `CLAIM_ATTEMPTS` times.
    fn listener(&self) -> Option<Box<dyn SignalListener>> {
        let options = (*self.pool.connect_options()).clone();
        Some(Box::new(PgSignalListener {
            options: options.application_name(LISTENER_APPLICATION_NAME),
            listener: None,
        }))
    }

    async fn claim_candidate(&self, now: DateTime<Utc>) -> Result<Option<(Tx<Self>, i64)>> {
        // Events this call gave up on: full, or their candidate was taken.
        let mut passed: Vec<i64> = Vec::new();
        // Every claimable job of an unlimited event is held by another claimer.
        let mut unlimited_held = false;
        for _ in 0..rules::CLAIM_ATTEMPTS {
            // One transaction per try: a try that gives up releases its locks
            // before the next waits for any, so claimers never wait in a circle.
            let mut tx = self.begin().await?;
            // The oldest claimable job as this snapshot sees it; nothing locked
            // yet. (sqlx directly: it binds an array, which `Arg` does not
            // have, since SQLite has no arrays.)
            let candidate: Option<(i64, Option<i64>)> = sqlx::query_as(concat!(
                "SELECT j.event_id, ",
                concurrency_limit!(),
                " AS lim ",
                claimable!(),
                "AND NOT (j.event_id = ANY($2)) AND (NOT $3::BOOLEAN OR ",
                concurrency_limit!(),
                " IS NOT NULL) ORDER BY j.run_after, j.id LIMIT 1"
            ))
            .bind(now)
            .bind(&passed)
            .bind(unlimited_held)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((event, limit)) = candidate else {
                return Ok(None);
            };
            let id = if limit.is_none() {
                // No limit to keep: the oldest such job no other claimer holds.
                let id = sql(concat!(
                    "SELECT j.id ",
                    claimable!(),
                    "AND ",
                    concurrency_limit!(),
                    " IS NULL ORDER BY j.run_after, j.id LIMIT 1 FOR UPDATE OF j SKIP LOCKED"
                ))
                .bind(now)
                .fetch_optional(&mut tx)
                .await?
                .map(|row| Reader::new(&row, "jobs").int("id"))
                .transpose()?;
                if id.is_none() {
                    unlimited_held = true;
                }
                id
            } else {
                let id = claim_limited(&mut tx, EventId(event), now).await?;
                if id.is_none() {
                    passed.push(event);
                }
                id
            };
            match id {
                Some(id) => return Ok(Some((tx, id))),
                None => tx.rollback().await?,
            }
        }
        Ok(None)
    }
}

/// The oldest queued job of an event with a concurrency limit, locked, if
/// the event is below its limit. The event is locked first (claimers of one
/// event take turns here; the transaction holds nothing else yet) and its
/// running jobs are counted under that lock, so two claimers never both see
/// room for one more.
async fn claim_limited(
    tx: &mut Tx<PgBackend>,
    event: EventId,
    now: DateTime<Utc>,
) -> Result<Option<i64>> {
    // NO KEY UPDATE: claimers exclude each other and every writer that locks
    // the event, but not the key-share locks of job inserts.
    let Some(row) = sql(concat!(
        "SELECT ",
        concurrency_limit!(),
        " AS lim FROM events e WHERE e.id = $1 FOR NO KEY UPDATE"
    ))
    .bind(event.0)
    .fetch_optional(tx)
    .await?
    else {
        return Ok(None);
    };
    let limit = Reader::new(&row, "events").opt_int("lim")?;
    let row = sql("SELECT COUNT(*) AS n FROM jobs WHERE event_id = $1 AND status = 'running'")
        .bind(event.0)
        .fetch_one(tx)
        .await?;
    let running = Reader::new(&row, "jobs").int("n")?;
    if limit.is_some_and(|limit| running >= limit) {
        return Ok(None);
    }
    // Waiting here is safe: the event is locked first, the order every
    // writer of an event's jobs uses.
    sql(
        "SELECT id FROM jobs WHERE event_id = $1 AND status = 'queued' AND run_after <= $2 \
         ORDER BY run_after, id LIMIT 1 FOR UPDATE",
    )
    .bind(event.0)
    .bind(now)
    .fetch_optional(tx)
    .await?
    .map(|row| Reader::new(&row, "jobs").int("id"))
    .transpose()
}

/// The `application_name` of a server's listening connection, by which
/// `pg_stat_activity` tells it from the pool's.
pub const LISTENER_APPLICATION_NAME: &str = "cronium-listen";

/// How long the listening connection may stay silent before it is asked a
/// `SELECT 1`: a connection whose peer vanished without a word (a network
/// cut, a host gone) would otherwise wait for notifications forever.
const LISTENER_PING_AFTER: Duration = Duration::from_secs(30);
/// How long connecting, or that `SELECT 1`, may take.
const LISTENER_TIMEOUT: Duration = Duration::from_secs(10);

/// `LISTEN cronium` on a connection of its own, outside the store's pool
/// (which it would otherwise hold one connection of for good).
struct PgSignalListener {
    options: PgConnectOptions,
    listener: Option<PgListener>,
}

#[async_trait]
impl SignalListener for PgSignalListener {
    async fn connect(&mut self) -> Result<()> {
        self.listener = None;
        // A pool of one, which is how sqlx's listener holds its connection;
        // a new one per connect, so nothing of a lost connection is reused.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(LISTENER_TIMEOUT)
            .connect_lazy_with(self.options.clone());
        let mut listener = PgListener::connect_with(&pool)
            .await
            .map_err(|e| StoreError::Backend(format!("cannot connect to listen: {e}")))?;
        listener.ignore_pool_close_event(true);
        // A lost connection is the caller's to handle (with a resync), not
        // replaced quietly.
        listener.eager_reconnect(false);
        listener.listen(CHANNEL).await?;
        self.listener = Some(listener);
        Ok(())
    }

    async fn recv(&mut self) -> Result<Signal> {
        let result = match self.listener.as_mut() {
            Some(listener) => next_signal(listener).await,
            None => Err(StoreError::Backend("not listening".into())),
        };
        if result.is_err() {
            self.listener = None;
        }
        result
    }
}

/// The next signal `listener` hears, skipping payloads this version does
/// not know; an error once the connection is lost or stops answering.
/// (`try_recv` may be dropped mid-wait: sqlx reads a message whole or not
/// at all, and notifications arriving during the ping are buffered.)
async fn next_signal(listener: &mut PgListener) -> Result<Signal> {
    loop {
        let received = tokio::time::timeout(LISTENER_PING_AFTER, listener.try_recv()).await;
        match received {
            Ok(Ok(Some(notification))) => {
                if let Some(signal) = Signal::parse(notification.payload()) {
                    return Ok(signal);
                }
            }
            Ok(Ok(None)) => {
                return Err(StoreError::Backend(
                    "the listening connection was closed".into(),
                ));
            }
            Ok(Err(e)) => return Err(e.into()),
            Err(_silent) => {
                tokio::time::timeout(
                    LISTENER_TIMEOUT,
                    sqlx::query("SELECT 1").execute(&mut *listener),
                )
                .await
                .map_err(|_| {
                    StoreError::Backend("the listening connection stopped answering".into())
                })??;
            }
        }
    }
}
