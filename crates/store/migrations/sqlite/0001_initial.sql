-- Cronium's schema for SQLite; the same logical schema as migrations/postgres.
-- Timestamps are INTEGER microseconds since the Unix epoch (UTC): exact
-- round-trips and numeric ordering. AUTOINCREMENT keeps a deleted row's id
-- from being handed out again (payload directories and the audit log name ids).

CREATE TABLE users (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,
    role        TEXT    NOT NULL CHECK (role IN ('admin', 'editor', 'viewer')),
    created_at  INTEGER NOT NULL
);

-- Only the SHA-256 of a token's secret is stored, never the secret.
CREATE TABLE api_tokens (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('admin', 'editor', 'viewer')),
    hash          BLOB    NOT NULL CHECK (length(hash) = 32),
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER,
    revoked_at    INTEGER,
    CONSTRAINT api_tokens_hash_unique UNIQUE (hash)
);

CREATE TABLE servers (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    name                TEXT    NOT NULL,
    host                TEXT    NOT NULL,
    port                INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    username            TEXT    NOT NULL,
    auth_kind           TEXT    NOT NULL CHECK (auth_kind IN ('key', 'password')),
    sealed_credentials  BLOB    NOT NULL,
    known_host          TEXT,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    CONSTRAINT servers_name_unique UNIQUE (name)
);

CREATE TABLE events (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    owner_id              INTEGER NOT NULL REFERENCES users (id),
    name                  TEXT    NOT NULL,
    -- Lower-cased in Rust, so case-insensitive search behaves the same on
    -- both backends (SQLite's lower() only folds ASCII).
    name_folded           TEXT    NOT NULL,
    description           TEXT    NOT NULL DEFAULT '',
    kind                  TEXT    NOT NULL CHECK (kind IN ('script', 'http')),
    interpreter           TEXT,
    content               TEXT    NOT NULL,
    env                   TEXT    NOT NULL DEFAULT '{}',
    secret_env_names      TEXT    NOT NULL DEFAULT '[]',
    -- Sealed (encrypted) by the server; the store never sees clear text.
    secret_env            BLOB    NOT NULL DEFAULT x'',
    schedule              TEXT    NOT NULL,
    status                TEXT    NOT NULL CHECK (status IN ('active', 'paused', 'draft', 'archived')),
    run_location          TEXT    NOT NULL CHECK (run_location IN ('local', 'remote')),
    timeout_secs          INTEGER NOT NULL CHECK (timeout_secs > 0),
    retries               INTEGER NOT NULL CHECK (retries >= 0),
    payload_version       INTEGER,
    -- High-water mark of payload versions ever made, so a version number is
    -- never reused even after pruning.
    last_payload_version  INTEGER NOT NULL DEFAULT 0,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    CONSTRAINT events_owner_name_unique UNIQUE (owner_id, name)
);
CREATE INDEX events_status ON events (status);

CREATE TABLE event_servers (
    event_id   INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    server_id  INTEGER NOT NULL REFERENCES servers (id) ON DELETE RESTRICT,
    position   INTEGER NOT NULL,
    PRIMARY KEY (event_id, server_id),
    UNIQUE (event_id, position)
);
-- Serves the RESTRICT check when a server is deleted.
CREATE INDEX event_servers_server ON event_servers (server_id);

CREATE TABLE event_tags (
    event_id  INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    tag       TEXT    NOT NULL,
    PRIMARY KEY (event_id, tag)
);
CREATE INDEX event_tags_tag ON event_tags (tag, event_id);

-- DESIGN §3.3, field for field.
CREATE TABLE runner_payloads (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id       INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    event_version  INTEGER NOT NULL CHECK (event_version >= 1),
    payload_path   TEXT    NOT NULL,
    checksum_path  TEXT    NOT NULL,
    payload_size   INTEGER NOT NULL CHECK (payload_size >= 0),
    checksum       TEXT    NOT NULL,
    is_active      INTEGER NOT NULL CHECK (is_active IN (0, 1)),
    created_at     INTEGER NOT NULL,
    CONSTRAINT runner_payloads_version_unique UNIQUE (event_id, event_version)
);
-- At most one active payload per event, whatever the code does.
CREATE UNIQUE INDEX runner_payloads_one_active ON runner_payloads (event_id) WHERE is_active = 1;

CREATE TABLE jobs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id          INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    payload_version   INTEGER,
    "trigger"         TEXT    NOT NULL,
    status            TEXT    NOT NULL CHECK (status IN
                          ('queued', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled', 'partial')),
    attempt           INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    scheduled_at      INTEGER NOT NULL,
    lease_owner       TEXT,
    lease_expires_at  INTEGER,
    started_at        INTEGER,
    finished_at       INTEGER,
    exit_code         INTEGER,
    error             TEXT,
    metadata          TEXT    NOT NULL DEFAULT '{}',
    created_at        INTEGER NOT NULL
);
CREATE INDEX jobs_status_scheduled ON jobs (status, scheduled_at);
CREATE INDEX jobs_event ON jobs (event_id, id);

CREATE TABLE job_logs (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id  INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    stream  TEXT    NOT NULL CHECK (stream IN ('stdout', 'stderr', 'system')),
    at      INTEGER NOT NULL,
    data    BLOB    NOT NULL,
    CONSTRAINT job_logs_seq_unique UNIQUE (job_id, seq)
);

-- Append-only. No foreign keys: the log must outlive what it talks about.
CREATE TABLE audit_log (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    at              INTEGER NOT NULL,
    actor_token_id  INTEGER,
    action          TEXT    NOT NULL,
    target_type     TEXT    NOT NULL,
    target_id       INTEGER,
    detail          TEXT    NOT NULL DEFAULT '{}'
);
