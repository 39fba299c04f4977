-- no-transaction
-- Workflow runs: durable, one row per run and one per node of it.
--   workflow_runs        pins the definition's version when it starts
--     status             queued (overlap queue), running, succeeded, failed,
--                        cancelled, skipped (overlap forbid)
--     fire_at            a schedule's fire time: recorded once per workflow
--     idempotency_key    a webhook delivery's key: one run per key
--     pass               from 1; a retry of the failed part raises it
--   workflow_run_nodes   one per node, by its position in the definition;
--                        pins the node's event and payload version at the
--                        run's start; job_id is the node's job of the latest
--                        pass (no cascade from events: history stays)
--   workflows            hook_key_hash: SHA-256 of the webhook trigger's key;
--                        hook_secret: the signing secret, sealed; anchor and
--                        next_fire_at: the cron/every trigger's schedule
--   jobs."trigger"       gains 'workflow': a node's job
--
-- SQLite cannot change a CHECK constraint in place, so jobs is rebuilt as
-- 0008 did: outside sqlx's transaction (first line), foreign keys off so
-- that dropping the old table does not cascade to its logs and deliveries,
-- its AUTOINCREMENT counter carried over, and foreign_key_check proving
-- every reference still holds before the commit.

PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;

CREATE TABLE jobs_new (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id          INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    payload_version   INTEGER,
    "trigger"         TEXT    NOT NULL CHECK ("trigger" IN ('schedule', 'manual', 'action', 'workflow')),
    status            TEXT    NOT NULL CHECK (status IN
                          ('queued', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled',
                           'partial', 'missed', 'skipped')),
    attempt           INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    scheduled_at      INTEGER NOT NULL,
    fire_at           INTEGER,
    run_after         INTEGER NOT NULL,
    lease_owner       TEXT,
    lease_expires_at  INTEGER,
    cancel_requested  INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
    started_at        INTEGER,
    finished_at       INTEGER,
    exit_code         INTEGER,
    error             TEXT,
    metadata          TEXT    NOT NULL DEFAULT '{}',
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    output            TEXT,
    condition         INTEGER NOT NULL DEFAULT 0 CHECK (condition IN (0, 1)),
    CONSTRAINT jobs_fire_unique UNIQUE (event_id, fire_at),
    CHECK (("trigger" = 'schedule') = (fire_at IS NOT NULL))
);
INSERT INTO jobs_new (id, event_id, payload_version, "trigger", status, attempt, scheduled_at,
        fire_at, run_after, lease_owner, lease_expires_at, cancel_requested, started_at,
        finished_at, exit_code, error, metadata, created_at, updated_at, output, condition)
    SELECT id, event_id, payload_version, "trigger", status, attempt, scheduled_at,
        fire_at, run_after, lease_owner, lease_expires_at, cancel_requested, started_at,
        finished_at, exit_code, error, metadata, created_at, updated_at, output, condition
    FROM jobs;
DELETE FROM sqlite_sequence WHERE name = 'jobs_new';
INSERT INTO sqlite_sequence (name, seq) SELECT 'jobs_new', seq FROM sqlite_sequence WHERE name = 'jobs';
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;
CREATE INDEX jobs_claim ON jobs (status, run_after);
CREATE INDEX jobs_event ON jobs (event_id, id);
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE status = 'running';

ALTER TABLE workflows ADD COLUMN hook_key_hash TEXT;
ALTER TABLE workflows ADD COLUMN hook_secret BLOB;
ALTER TABLE workflows ADD COLUMN anchor INTEGER;
ALTER TABLE workflows ADD COLUMN next_fire_at INTEGER;
CREATE UNIQUE INDEX workflows_hook_key ON workflows (hook_key_hash);
CREATE INDEX workflows_next_fire ON workflows (next_fire_at) WHERE next_fire_at IS NOT NULL;

CREATE TABLE workflow_runs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id      INTEGER NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    version          INTEGER NOT NULL CHECK (version >= 1),
    status           TEXT    NOT NULL CHECK (status IN
                         ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'skipped')),
    "trigger"        TEXT    NOT NULL CHECK ("trigger" IN ('manual', 'schedule', 'webhook')),
    fire_at          INTEGER,
    idempotency_key  TEXT,
    input            TEXT,
    pass             INTEGER NOT NULL DEFAULT 1 CHECK (pass >= 1),
    cancel_requested INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
    error            TEXT,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    updated_at       INTEGER NOT NULL,
    CONSTRAINT workflow_runs_fire_unique UNIQUE (workflow_id, fire_at),
    CONSTRAINT workflow_runs_idempotency_unique UNIQUE (workflow_id, idempotency_key)
);
CREATE INDEX workflow_runs_workflow ON workflow_runs (workflow_id, id);
CREATE INDEX workflow_runs_active ON workflow_runs (status) WHERE status IN ('queued', 'running');

CREATE TABLE workflow_run_nodes (
    run_id          INTEGER NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
    position        INTEGER NOT NULL CHECK (position >= 0),
    node            TEXT    NOT NULL,
    event_id        INTEGER NOT NULL,
    payload_version INTEGER,
    status          TEXT    NOT NULL CHECK (status IN
                        ('pending', 'running', 'succeeded', 'failed', 'cancelled', 'skipped')),
    job_id          INTEGER REFERENCES jobs (id) ON DELETE SET NULL,
    reason          TEXT,
    pass            INTEGER NOT NULL DEFAULT 1,
    started_at      INTEGER,
    finished_at     INTEGER,
    PRIMARY KEY (run_id, position)
);
CREATE INDEX workflow_run_nodes_job ON workflow_run_nodes (job_id) WHERE job_id IS NOT NULL;

CREATE TEMP TABLE workflow_runs_rebuilt (violations INTEGER NOT NULL CHECK (violations = 0));
INSERT INTO workflow_runs_rebuilt SELECT COUNT(*) FROM pragma_foreign_key_check;
DROP TABLE workflow_runs_rebuilt;

COMMIT;
PRAGMA foreign_keys = ON;
