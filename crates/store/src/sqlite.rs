//! The SQLite dialect: one file in WAL mode, writers serialized by `BEGIN IMMEDIATE` on one connection, times stored as INTEGER microseconds.
//!
//! Every write transaction starts with `BEGIN IMMEDIATE`, which takes SQLite's
//! single write lock up front: a deferred transaction that reads and then
//! writes can fail with `SQLITE_BUSY` instead of waiting, and the lock is also
//! what makes every read-decide-write of the store (`update_event`'s
//! read-compute-write, the overlap policy, the schedule's compare-and-set,
//! the per-event concurrency limit) atomic. So this backend needs no row
//! locks: `Backend::lock` and `Backend::lock_event` do nothing here.
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
use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row, Sqlite};

use crate::db::{Arg, Backend, Conn, Lock, Sql, Tx, sql};
use crate::rows::{self, Reader, StoreRow};
use crate::store::{SqlStore, jobs::backfill_schedules};
use crate::{Result, StoreError};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a writer waits for SQLite's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The SQLite store. Cheap to clone: it is a handle on connection pools.
pub type SqliteStore = SqlStore<SqliteBackend>;

/// SQLite's connection pools, and how SQLite differs (`Backend`).
#[derive(Debug, Clone)]
pub struct SqliteBackend {
    /// Reads.
    pool: SqlitePool,
    /// Writes: one connection, so this process's writers queue here in
    /// order instead of colliding on SQLite's lock, where the losers would
    /// sleep in the busy handler (milliseconds each) and throughput with
    /// them. Other processes (a second server on the same file) still wait
    /// in the busy handler.
    writer: SqlitePool,
}

impl SqliteStore {
    /// Opens `sqlite://PATH` (the file is created if missing; its directory
    /// must exist) or `sqlite::memory:`, and applies the migrations.
    pub async fn connect(url: &str) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Backend(format!("invalid SQLite URL {url:?}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // In WAL mode NORMAL never corrupts the database; a power cut may
            // lose the last commits, which the payload sweep tolerates.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let (pool, writer) = if url.contains(":memory:") {
            // An in-memory database lives as long as a connection to it: keep
            // exactly one, forever, for reads and writes alike.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options)
                .await
                .map_err(|e| StoreError::Backend(format!("cannot open {url}: {e}")))?;
            (pool.clone(), pool)
        } else {
            let open = |max| {
                SqlitePoolOptions::new()
                    .max_connections(max)
                    .connect_with(options.clone())
            };
            let pool = open(8)
                .await
                .map_err(|e| StoreError::Backend(format!("cannot open {url}: {e}")))?;
            let writer = open(1)
                .await
                .map_err(|e| StoreError::Backend(format!("cannot open {url}: {e}")))?;
            (pool, writer)
        };
        MIGRATOR.run(&pool).await?;
        let store = SqlStore {
            db: SqliteBackend { pool, writer },
        };
        // Events created before schedules were kept get one, starting now.
        // This is the one place the store reads the clock: no caller knows
        // those events exist.
        backfill_schedules(&store, Utc::now()).await?;
        Ok(store)
    }

    /// The pool, for code that needs SQL the trait does not offer (tests, jobs).
    pub fn pool(&self) -> &SqlitePool {
        &self.db.pool
    }
}

impl StoreRow for SqliteRow {
    rows::primitive_getters!();

    fn time(&self, column: &str) -> std::result::Result<Option<DateTime<Utc>>, String> {
        let micros: Option<i64> = self.try_get(column).map_err(|e| e.to_string())?;
        micros
            .map(|m| {
                DateTime::from_timestamp_micros(m).ok_or_else(|| format!("{m} is out of range"))
            })
            .transpose()
    }
}

/// The statement with its values as SQLite stores them.
fn query(q: Sql) -> Query<'static, Sqlite, SqliteArguments> {
    q.args
        .into_iter()
        .fold(sqlx::query(AssertSqlSafe(q.text)), |query, arg| match arg {
            Arg::Int(v) => query.bind(v),
            Arg::Text(v) => query.bind(v),
            Arg::Bytes(v) => query.bind(v),
            // INTEGER 0 or 1.
            Arg::Bool(v) => query.bind(v),
            // INTEGER microseconds since the epoch: SQLite has no time type,
            // and integers compare and sort as times do.
            Arg::Time(v) => query.bind(v.map(|t| t.timestamp_micros())),
            // TEXT: SQLite has no JSON type.
            Arg::Json(v) => query.bind(v.map(|v| v.to_string())),
        })
}

#[async_trait]
impl Conn for SqliteConnection {
    type Row = SqliteRow;

    async fn execute(&mut self, q: Sql) -> Result<u64, sqlx::Error> {
        Ok(query(q).execute(self).await?.rows_affected())
    }

    async fn fetch_all(&mut self, q: Sql) -> Result<Vec<SqliteRow>, sqlx::Error> {
        query(q).fetch_all(self).await
    }

    async fn fetch_optional(&mut self, q: Sql) -> Result<Option<SqliteRow>, sqlx::Error> {
        query(q).fetch_optional(self).await
    }

    /// Nothing: one server uses a SQLite database, and it wakes its own
    /// loops in-process.
    async fn notify(&mut self, _channel: &str, _payload: &str) -> Result<(), sqlx::Error> {
        Ok(())
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    const NAME: &'static str = "sqlite";
    /// SQLITE_MAX_VARIABLE_NUMBER's default since 3.32.
    const MAX_BINDS: usize = 32766;

    type Db = Sqlite;

    fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    async fn begin(&self) -> Result<Tx<Self>, sqlx::Error> {
        self.writer.begin_with("BEGIN IMMEDIATE").await
    }

    /// Unchanged: the write transaction holds the whole database already.
    fn lock(select: &'static str, _lock: Lock) -> Cow<'static, str> {
        Cow::Borrowed(select)
    }

    /// Nothing to do: no other writer runs until this transaction ends.
    async fn lock_event(_tx: &mut Tx<Self>, _id: EventId) -> Result<()> {
        Ok(())
    }

    async fn clock(_tx: &mut Tx<Self>) -> Result<DateTime<Utc>> {
        Ok(Utc::now())
    }

    fn json_array(value: &str, order: &str, from: &str) -> String {
        format!("(SELECT json_group_array({value} ORDER BY {order}) FROM {from})")
    }

    fn contains(haystack: &str, needle: &str) -> String {
        format!("instr({haystack}, {needle}) > 0")
    }

    /// The oldest claimable job: under the write lock the count of running
    /// jobs cannot change between this choice and the caller's update.
    async fn claim_candidate(&self, now: DateTime<Utc>) -> Result<Option<(Tx<Self>, i64)>> {
        let mut tx = self.begin().await?;
        let candidate = sql(concat!(
            "SELECT j.id ",
            claimable!(),
            "ORDER BY j.run_after, j.id LIMIT 1"
        ))
        .bind(now)
        .fetch_optional(&mut tx)
        .await?;
        let Some(row) = candidate else {
            return Ok(None);
        };
        let id = Reader::new(&row, "jobs").int("id")?;
        Ok(Some((tx, id)))
    }

    /// None: no other server shares the database.
    fn listener(&self) -> Option<Box<dyn crate::signals::SignalListener>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    /// `sqlite::memory:` is one database for the store's whole life, not
    /// one per pooled connection, and it outlives idle periods.
    #[tokio::test]
    async fn an_in_memory_store_is_one_database() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        let admin = store.ensure_admin(Utc::now()).await.unwrap();
        let (a, b) = tokio::join!(store.get_user(admin.id), store.get_user(admin.id));
        assert_eq!((a.unwrap(), b.unwrap()), (admin.clone(), admin));
    }
}
