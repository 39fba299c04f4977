//! Persistence behind one [`Store`] trait, with a SQLite and a PostgreSQL
//! implementation, each with its own migrations, and one conformance suite
//! (`tests/conformance.rs`) that both must pass.
//!
//! The store speaks domain types (`cronium-core`) and never sees a secret in
//! clear: secret environment values and server credentials arrive sealed.
//! Every mutation writes its audit entry in the same transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cronium_core::{
    EventId, EventSpec, EventStatus, Role, ServerId, ServerSpec, Tag, TokenHash, TokenId, UserId,
    ValidationError,
};

#[macro_use]
mod sql;
pub mod postgres;
mod rows;
pub mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} not found")]
    NotFound { what: &'static str },
    /// A uniqueness rule was broken, e.g. a duplicate event name.
    #[error("{field}: {message}")]
    Conflict { field: String, message: String },
    /// The update function refused the change.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The payload writer failed; nothing was committed.
    #[error("cannot write payload: {0}")]
    Payload(String),
    #[error("database error: {0}")]
    Backend(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// How stale a token's stored `last_used_at` may get: [`Store::use_token`]
/// writes it only when the stored value is older than this.
pub const TOKEN_USE_RESOLUTION: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// Opens the store a database URL names: `sqlite://PATH` (created if
/// missing) or `postgres://...`. Migrations are applied before it returns.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(PgStore::connect(url).await?))
    } else if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(SqliteStore::connect(url).await?))
    } else {
        Err(StoreError::Backend(format!(
            "unsupported database URL {url:?} (use sqlite://PATH or postgres://...)"
        )))
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: EventId,
    pub owner: UserId,
    pub spec: EventSpec,
    /// The active payload's version; `None` for events without a payload.
    pub payload_version: Option<u64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A row of `runner_payloads` (DESIGN §3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadRecord {
    pub id: i64,
    pub event_id: EventId,
    pub event_version: u64,
    pub payload_path: String,
    pub checksum_path: String,
    pub payload_size: u64,
    /// SHA-256, 64 lowercase hex digits.
    pub checksum: String,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
}

/// What a [`PayloadWriter`] put on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadFile {
    pub payload_path: String,
    pub checksum_path: String,
    pub payload_size: u64,
    pub checksum: String,
}

/// Writes a payload's files. The store calls it inside the transaction that
/// records the new version, after the version number is fixed and before the
/// commit; if the commit then fails the caller removes what was written.
pub trait PayloadWriter: Send {
    fn write(
        &mut self,
        event: EventId,
        version: u64,
        spec: &EventSpec,
        created_at: DateTime<Utc>,
    ) -> std::result::Result<PayloadFile, String>;
}

/// How an event update is computed from the current state, inside the
/// transaction (so concurrent updates never lose each other's changes).
pub type EventUpdate<'a> =
    &'a (dyn Fn(&Event) -> std::result::Result<EventSpec, ValidationError> + Send + Sync);

/// How a server update is computed from the current state, inside the
/// transaction. (A named alias, like [`EventUpdate`], keeps the closure
/// generic over the borrow: `async_trait` would otherwise tie `&Server` to
/// the call's lifetime and the store could not pass it a local row.)
pub type ServerUpdate<'a> =
    &'a (dyn Fn(&Server) -> std::result::Result<ServerSpec, ValidationError> + Send + Sync);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: TokenId,
    pub user_id: UserId,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct NewToken {
    pub user_id: UserId,
    pub name: String,
    pub role: Role,
    pub hash: TokenHash,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub id: ServerId,
    pub spec: ServerSpec,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One line of the audit log: who did what to which object, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    /// The token that acted; `None` for the system itself.
    pub actor: Option<TokenId>,
    /// e.g. `event.create`, `token.revoke`.
    pub action: String,
    /// e.g. `event`, `server`, `token`.
    pub target_type: String,
    pub target_id: Option<i64>,
    /// Extra facts, never secrets.
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub id: i64,
    pub entry: AuditEntry,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub owner: Option<UserId>,
    pub status: Option<EventStatus>,
    pub tag: Option<Tag>,
    /// Case-insensitive substring of the name.
    pub name_contains: Option<String>,
}

/// Offset pagination, applied in SQL (`LIMIT`/`OFFSET`), newest ids last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub offset: u64,
}

impl PageRequest {
    pub const MAX_LIMIT: u32 = 500;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// How many match the filter in all.
    pub total: u64,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// `"sqlite"` or `"postgres"`, for logs and metrics.
    fn backend(&self) -> &'static str;

    /// Runs a trivial query, so a health check learns whether the database
    /// answers right now (not merely whether it did at start-up).
    async fn ping(&self) -> Result<()>;

    // --- users and tokens ---------------------------------------------------

    /// Returns the first admin user, creating `admin` if there is none.
    async fn ensure_admin(&self, now: DateTime<Utc>) -> Result<User>;
    async fn get_user(&self, id: UserId) -> Result<User>;
    async fn create_token(
        &self,
        new: NewToken,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<ApiToken>;
    /// The live (not revoked) token with this hash, and records its use in
    /// `last_used_at` at most once per [`TOKEN_USE_RESOLUTION`]: every
    /// authenticated request calls this, and a write per request would make
    /// every read of the API a database write. The returned `last_used_at` is
    /// what is stored, so it may be up to that long behind `now`.
    async fn use_token(&self, hash: &TokenHash, now: DateTime<Utc>) -> Result<Option<ApiToken>>;
    async fn list_tokens(&self) -> Result<Vec<ApiToken>>;
    async fn revoke_token(
        &self,
        id: TokenId,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<ApiToken>;

    // --- events and their payloads --------------------------------------------

    /// Inserts the event; for a script event, calls `writer` for version 1
    /// and records that payload as active, all in one transaction.
    /// A duplicate name for the same owner is a `Conflict` on `name`.
    async fn create_event(
        &self,
        owner: UserId,
        spec: EventSpec,
        writer: &mut dyn PayloadWriter,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<Event>;
    async fn get_event(&self, id: EventId) -> Result<Event>;
    async fn find_event_by_name(&self, owner: UserId, name: &str) -> Result<Option<Event>>;
    async fn list_events(&self, filter: &EventFilter, page: PageRequest) -> Result<Page<Event>>;
    /// Locks the event, computes the new spec with `update`, and when
    /// [`cronium_core::needs_new_payload`] says so, calls `writer` for the
    /// next version (one above the highest ever recorded for the event), makes
    /// it the only active payload and sets `payload_version`; one transaction.
    /// Returns the event and the new payload, if one was made.
    async fn update_event(
        &self,
        id: EventId,
        update: EventUpdate<'_>,
        writer: &mut dyn PayloadWriter,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<(Event, Option<PayloadRecord>)>;
    /// Deletes the event and its payload rows; returns those rows so the
    /// caller can remove the files.
    async fn delete_event(&self, id: EventId, audit: &AuditEntry) -> Result<Vec<PayloadRecord>>;
    /// Payloads of one event, newest version first.
    async fn list_payloads(&self, event: EventId) -> Result<Vec<PayloadRecord>>;
    async fn get_payload(&self, event: EventId, version: u64) -> Result<PayloadRecord>;
    /// Deletes all but the newest `keep` versions of an event (the active
    /// one is always kept); returns the deleted rows. When anything was
    /// deleted, `audit` is written in the same transaction with the deleted
    /// versions added to its detail (`"versions": [...]`), which the caller
    /// cannot know in advance; nothing deleted, nothing audited. The time of
    /// the prune is the audit entry's `at`: the store never reads the clock.
    async fn prune_payloads(
        &self,
        event: EventId,
        keep: usize,
        audit: &AuditEntry,
    ) -> Result<Vec<PayloadRecord>>;
    /// Every payload row, for the start-up sweep of the payload directory.
    async fn all_payloads(&self) -> Result<Vec<PayloadRecord>>;

    // --- servers ----------------------------------------------------------------

    /// A duplicate name is a `Conflict` on `name`.
    async fn create_server(
        &self,
        spec: ServerSpec,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<Server>;
    async fn get_server(&self, id: ServerId) -> Result<Server>;
    async fn find_server_by_name(&self, name: &str) -> Result<Option<Server>>;
    async fn list_servers(&self) -> Result<Vec<Server>>;
    async fn update_server(
        &self,
        id: ServerId,
        update: ServerUpdate<'_>,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<Server>;
    /// Refused with a `Conflict` on `targetServers` while an event targets it.
    async fn delete_server(&self, id: ServerId, audit: &AuditEntry) -> Result<()>;

    // --- audit --------------------------------------------------------------------

    /// Newest first.
    async fn list_audit(&self, page: PageRequest) -> Result<Page<AuditRecord>>;
}
