-- Jobs and schedules: the run policy on events, the job queue with its
-- logs, and where each event's schedule stands. 0001 created `jobs` and
-- `job_logs`, but no released code ever wrote them, so they are recreated
-- in their final shape rather than altered.

ALTER TABLE events ADD COLUMN overlap TEXT NOT NULL DEFAULT 'forbid'
    CHECK (overlap IN ('allow', 'forbid', 'queue', 'replace'));
ALTER TABLE events ADD COLUMN misfire TEXT NOT NULL DEFAULT 'run_once'
    CHECK (misfire IN ('skip', 'run_once', 'catch_up'));
ALTER TABLE events ADD COLUMN start_at INTEGER;
ALTER TABLE events ADD COLUMN max_executions INTEGER CHECK (max_executions > 0);
ALTER TABLE events ADD COLUMN max_concurrent INTEGER CHECK (max_concurrent > 0);
ALTER TABLE events ADD COLUMN retry_delay_secs INTEGER NOT NULL DEFAULT 10
    CHECK (retry_delay_secs > 0);

DROP TABLE job_logs;
DROP TABLE jobs;

CREATE TABLE jobs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id          INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    payload_version   INTEGER,
    "trigger"         TEXT    NOT NULL CHECK ("trigger" IN ('schedule', 'manual')),
    status            TEXT    NOT NULL CHECK (status IN
                          ('queued', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled',
                           'partial', 'missed', 'skipped')),
    attempt           INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    scheduled_at      INTEGER NOT NULL,
    -- The schedule's fire time (= scheduled_at) for scheduled jobs, NULL for
    -- manual ones: with the unique key below, one fire is one job, however
    -- many schedulers saw it come.
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
    CONSTRAINT jobs_fire_unique UNIQUE (event_id, fire_at),
    CHECK (("trigger" = 'schedule') = (fire_at IS NOT NULL))
);
-- Claiming: queued jobs whose time has come, oldest first.
CREATE INDEX jobs_claim ON jobs (status, run_after);
-- One event's jobs, newest first (lists, overlap checks, pruning).
CREATE INDEX jobs_event ON jobs (event_id, id);
-- Lease recovery looks at running jobs only.
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE status = 'running';

CREATE TABLE job_logs (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id  INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL CHECK (seq >= 1),
    stream  TEXT    NOT NULL CHECK (stream IN ('stdout', 'stderr', 'system')),
    at      INTEGER NOT NULL,
    data    BLOB    NOT NULL,
    CONSTRAINT job_logs_seq_unique UNIQUE (job_id, seq)
);

CREATE TABLE schedule_state (
    event_id      INTEGER PRIMARY KEY REFERENCES events (id) ON DELETE CASCADE,
    anchor        INTEGER NOT NULL,
    next_fire_at  INTEGER,
    fire_count    INTEGER NOT NULL DEFAULT 0 CHECK (fire_count >= 0)
);
-- The scheduler's question: what is due?
CREATE INDEX schedule_state_next ON schedule_state (next_fire_at) WHERE next_fire_at IS NOT NULL;
