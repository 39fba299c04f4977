//! The backend-neutral access layer: SQL text with its values ([`Sql`]), what runs it ([`Conn`]), and every way SQLite and PostgreSQL differ ([`Backend`]).
//!
//! The store's SQL is written once, in `store.rs` and `store/jobs.rs`, with
//! `$N` placeholders (both backends take them) and values as [`Arg`]s. Each
//! backend module says only what its database does differently: how it binds
//! a time or a JSON value, how a write transaction starts, how rows are
//! locked, the few SQL functions the two spell differently, and how a worker
//! claims a job. Nothing in a backend module may decide what the store does;
//! the decisions live in `store.rs`, `store/jobs.rs` and `jobs.rs`.

use std::borrow::Cow;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cronium_core::EventId;
use sqlx::{Database, Pool, Transaction};

use crate::Result;
use crate::rows::StoreRow;

/// A value bound to a placeholder. The backend decides how it is stored:
/// a [`Arg::Time`] is INTEGER microseconds on SQLite and TIMESTAMPTZ on
/// PostgreSQL, a [`Arg::Json`] TEXT on SQLite and JSONB on PostgreSQL, a
/// [`Arg::Bool`] 0/1 on SQLite. A `None` is NULL, still typed (PostgreSQL
/// receives the parameter's type with every bind, so `$1 IS NULL` needs no
/// cast).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    Int(Option<i64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
    Bool(Option<bool>),
    Time(Option<DateTime<Utc>>),
    Json(Option<serde_json::Value>),
}

macro_rules! arg_from {
    ($($ty:ty => |$v:ident| $arg:expr),* $(,)?) => {
        $(impl From<$ty> for Arg {
            fn from($v: $ty) -> Arg {
                $arg
            }
        })*
    };
}

arg_from! {
    i64 => |v| Arg::Int(Some(v)),
    Option<i64> => |v| Arg::Int(v),
    i32 => |v| Arg::Int(Some(i64::from(v))),
    Option<i32> => |v| Arg::Int(v.map(i64::from)),
    &str => |v| Arg::Text(Some(v.to_string())),
    Option<&str> => |v| Arg::Text(v.map(str::to_string)),
    String => |v| Arg::Text(Some(v)),
    Option<String> => |v| Arg::Text(v),
    Vec<u8> => |v| Arg::Bytes(Some(v)),
    Option<Vec<u8>> => |v| Arg::Bytes(v),
    bool => |v| Arg::Bool(Some(v)),
    DateTime<Utc> => |v| Arg::Time(Some(v)),
    Option<DateTime<Utc>> => |v| Arg::Time(v),
    serde_json::Value => |v| Arg::Json(Some(v)),
    Option<serde_json::Value> => |v| Arg::Json(v),
}

/// A statement and the values of its placeholders, in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sql {
    /// Mostly a literal; built at run time where a dialect fragment or the
    /// number of rows (the bulk log insert) is part of the text.
    pub(crate) text: Cow<'static, str>,
    pub(crate) args: Vec<Arg>,
}

/// `text` with nothing bound yet: `sql("... WHERE id = $1").bind(id.0)`.
pub(crate) fn sql(text: impl Into<Cow<'static, str>>) -> Sql {
    Sql {
        text: text.into(),
        args: Vec::new(),
    }
}

impl Sql {
    /// Binds the next placeholder.
    pub(crate) fn bind(mut self, value: impl Into<Arg>) -> Sql {
        self.args.push(value.into());
        self
    }

    /// Runs the statement; returns how many rows it changed.
    pub(crate) async fn execute<C: Conn>(self, conn: &mut C) -> Result<u64, sqlx::Error> {
        conn.execute(self).await
    }

    pub(crate) async fn fetch_all<C: Conn>(self, conn: &mut C) -> Result<Vec<C::Row>, sqlx::Error> {
        conn.fetch_all(self).await
    }

    pub(crate) async fn fetch_optional<C: Conn>(
        self,
        conn: &mut C,
    ) -> Result<Option<C::Row>, sqlx::Error> {
        conn.fetch_optional(self).await
    }

    /// The first row; `RowNotFound` (as sqlx reports it) when there is none.
    pub(crate) async fn fetch_one<C: Conn>(self, conn: &mut C) -> Result<C::Row, sqlx::Error> {
        conn.fetch_optional(self)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }
}

/// The `VALUES` list of a multi-row insert: `rows` tuples of `width`
/// placeholders numbered in order, `($1, $2), ($3, $4)` for 2 by 2.
pub(crate) fn values_placeholders(rows: usize, width: usize) -> String {
    (0..rows)
        .map(|row| {
            let tuple: Vec<String> = (1..=width)
                .map(|i| format!("${}", row * width + i))
                .collect();
            format!("({})", tuple.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Something that runs a [`Sql`]: a backend's connection (which binds the
/// [`Arg`]s its own way), and through it a transaction or a pool. Errors stay
/// `sqlx::Error`, so callers can still tell a unique or foreign-key
/// violation (`rows::unique_violation`) from other failures.
#[async_trait]
pub(crate) trait Conn: Send {
    type Row: StoreRow + Send + Sync;

    async fn execute(&mut self, q: Sql) -> Result<u64, sqlx::Error>;
    async fn fetch_all(&mut self, q: Sql) -> Result<Vec<Self::Row>, sqlx::Error>;
    async fn fetch_optional(&mut self, q: Sql) -> Result<Option<Self::Row>, sqlx::Error>;

    /// Sends `payload` to the listeners of `channel` (`crate::signals`):
    /// PostgreSQL's `pg_notify`, delivered when the transaction commits;
    /// nothing on SQLite, whose database has one server. A connection's
    /// hook rather than a [`Backend`] one because the announcement must run
    /// on the transaction's own connection, which is all the shared code
    /// that changes a job holds.
    async fn notify(&mut self, channel: &str, payload: &str) -> Result<(), sqlx::Error>;
}

/// Statements inside a transaction run on its connection. (For any
/// lifetime, though the store's are all `'static`: the compiler checks that
/// futures are `Send` with lifetimes erased.)
#[async_trait]
impl<DB> Conn for Transaction<'_, DB>
where
    DB: Database<Connection: Conn>,
{
    type Row = <DB::Connection as Conn>::Row;

    async fn execute(&mut self, q: Sql) -> Result<u64, sqlx::Error> {
        Conn::execute(&mut **self, q).await
    }

    async fn fetch_all(&mut self, q: Sql) -> Result<Vec<Self::Row>, sqlx::Error> {
        Conn::fetch_all(&mut **self, q).await
    }

    async fn fetch_optional(&mut self, q: Sql) -> Result<Option<Self::Row>, sqlx::Error> {
        Conn::fetch_optional(&mut **self, q).await
    }

    async fn notify(&mut self, channel: &str, payload: &str) -> Result<(), sqlx::Error> {
        Conn::notify(&mut **self, channel, payload).await
    }
}

/// A statement on a pool runs on a connection taken from it for that
/// statement alone (what sqlx's own pool executor does).
#[async_trait]
impl<DB> Conn for &Pool<DB>
where
    DB: Database<Connection: Conn>,
{
    type Row = <DB::Connection as Conn>::Row;

    async fn execute(&mut self, q: Sql) -> Result<u64, sqlx::Error> {
        let mut conn = self.acquire().await?;
        Conn::execute(&mut *conn, q).await
    }

    async fn fetch_all(&mut self, q: Sql) -> Result<Vec<Self::Row>, sqlx::Error> {
        let mut conn = self.acquire().await?;
        Conn::fetch_all(&mut *conn, q).await
    }

    async fn fetch_optional(&mut self, q: Sql) -> Result<Option<Self::Row>, sqlx::Error> {
        let mut conn = self.acquire().await?;
        Conn::fetch_optional(&mut *conn, q).await
    }

    async fn notify(&mut self, channel: &str, payload: &str) -> Result<(), sqlx::Error> {
        let mut conn = self.acquire().await?;
        Conn::notify(&mut *conn, channel, payload).await
    }
}

/// A backend's write transaction.
pub(crate) type Tx<B> = Transaction<'static, <B as Backend>::Db>;

/// How a read locks the rows it returns until its transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lock {
    /// The rows are about to change.
    Update,
    /// One holder at a time, but rows that refer to these may still be
    /// inserted meanwhile (PostgreSQL `FOR NO KEY UPDATE`): how an event is
    /// held while its runs are decided, so that a transaction holding one
    /// event can queue a job of another event someone else holds without
    /// the two waiting on each other.
    Exclusive,
    /// Nothing may change the rows meanwhile (a job whose logs are being
    /// appended).
    Share,
    /// As [`Lock::Update`], passing over rows another transaction holds
    /// (lease recovery: a row someone holds is being dealt with).
    UpdateSkipLocked,
}

/// What differs between SQLite and PostgreSQL, and nothing else: the one
/// generic store (`store.rs`) asks its backend these questions and writes
/// every other statement once.
///
/// The two databases serialize writers differently, which is why most of
/// this trait exists. SQLite has one write lock for the whole database, and
/// every write transaction takes it up front (`BEGIN IMMEDIATE`), so a
/// transaction that reads and then writes sees nothing change in between and
/// needs no row locks. PostgreSQL runs transactions at READ COMMITTED with
/// row locks taken where a read must stay true until the commit, so several
/// nodes can share one database.
#[async_trait]
pub(crate) trait Backend: std::fmt::Debug + Clone + Send + Sync + 'static {
    /// `"sqlite"` or `"postgres"`, what [`crate::Store::backend`] says.
    const NAME: &'static str;

    /// The most values one statement may bind (SQLite 32766, PostgreSQL
    /// 65535); bulk inserts stay below it.
    const MAX_BINDS: usize;

    type Db: Database<Connection: Conn>;

    /// Where reads run.
    fn pool(&self) -> &Pool<Self::Db>;

    /// Where a write that is one statement runs outside a transaction.
    /// SQLite queues this process's writers on one connection (see
    /// `sqlite.rs`); PostgreSQL uses its one pool.
    fn writer(&self) -> &Pool<Self::Db>;

    /// Starts a write transaction: `BEGIN IMMEDIATE` on SQLite's writer
    /// connection (the database's write lock, held to the commit), a plain
    /// READ COMMITTED transaction on PostgreSQL.
    async fn begin(&self) -> Result<Tx<Self>, sqlx::Error>;

    /// `select` with its rows locked as `lock` says until the transaction
    /// ends. PostgreSQL appends the locking clause; SQLite returns the text
    /// unchanged, since its write transaction already holds the database.
    fn lock(select: &'static str, lock: Lock) -> Cow<'static, str>;

    /// Serializes the writers of one event for the rest of the transaction
    /// (PostgreSQL locks its row, and fails `NotFound` if there is none).
    /// Nothing on SQLite, where `BEGIN IMMEDIATE` serializes every writer.
    ///
    /// Lock order is always an event before its jobs (`enqueue_job`,
    /// `record_fires`, a limited claim, `delete_event`'s cascade); whatever
    /// holds a job lock never waits for an event, so the two cannot deadlock.
    async fn lock_event(tx: &mut Tx<Self>, id: EventId) -> Result<()>;

    /// The database's clock, which every server on it shares (SQLite's is
    /// this machine's: its one server's).
    async fn clock(tx: &mut Tx<Self>) -> Result<DateTime<Utc>>;

    /// A scalar subquery: the JSON array (as text) of `value` over the rows of
    /// `from`, ordered by `order`, `[]` when there are none. SQLite spells it
    /// `json_group_array`; PostgreSQL `json_agg`, which gives NULL for no
    /// rows and a `json` value, not text.
    fn json_array(value: &str, order: &str, from: &str) -> String;

    /// A condition: `haystack` contains `needle` (case-sensitive; both sides
    /// are folded already). SQLite has `instr`, PostgreSQL `strpos`; `LIKE`
    /// would treat `%` and `_` in the needle as wildcards.
    fn contains(haystack: &str, needle: &str) -> String;

    /// Picks the job `claim_job` takes (queued, due at `now`, its event below
    /// its concurrency limit), in a write transaction that keeps it claimable
    /// until the caller marks it running and commits; `None` when nothing is
    /// claimable. The shared part (the update, the event, the fence) is
    /// `store/jobs.rs`'s.
    ///
    /// The algorithms differ because the locking does: under SQLite's write
    /// lock the oldest claimable job simply stays claimable, while on
    /// PostgreSQL concurrent claimers must not wait for each other's rows nor
    /// both see room under an event's limit (see `postgres.rs`).
    async fn claim_candidate(&self, now: DateTime<Utc>) -> Result<Option<(Tx<Self>, i64)>>;

    /// A listener for the signals servers announce (`crate::signals`; the
    /// announcing half is [`Conn::notify`]): a `LISTEN` connection of its
    /// own on PostgreSQL, `None` on SQLite, which has one server.
    fn listener(&self) -> Option<Box<dyn crate::signals::SignalListener>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_every_value_in_order() {
        assert_eq!(values_placeholders(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(values_placeholders(1, 1), "($1)");
    }

    /// A bulk insert as large as the log append's (1000 rows of 6 values):
    /// both backends take `$N` numbering that far.
    async fn bulk_insert<C: Conn>(mut conn: C) {
        sql("CREATE TEMPORARY TABLE bulk (a BIGINT, b TEXT, c BIGINT, d TEXT, e BIGINT, f TEXT)")
            .execute(&mut conn)
            .await
            .unwrap();
        let rows = 1000;
        let mut insert = sql(format!(
            "INSERT INTO bulk (a, b, c, d, e, f) VALUES {}",
            values_placeholders(rows, 6)
        ));
        for i in 0..rows as i64 {
            insert = insert
                .bind(i)
                .bind(format!("b{i}"))
                .bind(i * 2)
                .bind(format!("d{i}"))
                .bind(i * 3)
                .bind(format!("f{i}"));
        }
        assert_eq!(insert.execute(&mut conn).await.unwrap(), 1000);
        let last = sql("SELECT a, b, c, d, e, f FROM bulk WHERE a = 999")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(last.int("e").unwrap(), Some(2997));
        assert_eq!(last.text("f").unwrap().as_deref(), Some("f999"));
    }

    #[tokio::test]
    async fn a_bulk_insert_binds_in_order_on_sqlite() {
        let store = crate::SqliteStore::connect("sqlite::memory:")
            .await
            .unwrap();
        bulk_insert(store.pool().begin().await.unwrap()).await;
    }

    #[cfg(feature = "testing")]
    #[tokio::test]
    async fn a_bulk_insert_binds_in_order_on_postgres() {
        let url = tokio::task::spawn_blocking(crate::testing::TestPostgres::fresh_database)
            .await
            .unwrap();
        let store = crate::PgStore::connect(&url).await.unwrap();
        bulk_insert(store.pool().begin().await.unwrap()).await;
    }
}
