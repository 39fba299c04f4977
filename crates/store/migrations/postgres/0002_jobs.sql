-- Jobs and schedules: the run policy on events, the job queue with its
-- logs, and where each event's schedule stands. 0001 created `jobs` and
-- `job_logs`, but no released code ever wrote them, so they are recreated
-- in their final shape rather than altered.

ALTER TABLE events
    ADD COLUMN overlap TEXT NOT NULL DEFAULT 'forbid'
        CHECK (overlap IN ('allow', 'forbid', 'queue', 'replace')),
    ADD COLUMN misfire TEXT NOT NULL DEFAULT 'run_once'
        CHECK (misfire IN ('skip', 'run_once', 'catch_up')),
    ADD COLUMN start_at TIMESTAMPTZ,
    ADD COLUMN max_executions BIGINT CHECK (max_executions > 0),
    ADD COLUMN max_concurrent BIGINT CHECK (max_concurrent > 0),
    ADD COLUMN retry_delay_secs BIGINT NOT NULL DEFAULT 10 CHECK (retry_delay_secs > 0);

DROP TABLE job_logs;
DROP TABLE jobs;

CREATE TABLE jobs (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id          BIGINT      NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    payload_version   BIGINT,
    "trigger"         TEXT        NOT NULL CHECK ("trigger" IN ('schedule', 'manual')),
    status            TEXT        NOT NULL CHECK (status IN
                          ('queued', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled',
                           'partial', 'missed', 'skipped')),
    attempt           BIGINT      NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    scheduled_at      TIMESTAMPTZ NOT NULL,
    -- The schedule's fire time (= scheduled_at) for scheduled jobs, NULL for
    -- manual ones: with the unique key below, one fire is one job, however
    -- many schedulers saw it come.
    fire_at           TIMESTAMPTZ,
    run_after         TIMESTAMPTZ NOT NULL,
    lease_owner       TEXT,
    lease_expires_at  TIMESTAMPTZ,
    cancel_requested  BOOLEAN     NOT NULL DEFAULT FALSE,
    started_at        TIMESTAMPTZ,
    finished_at       TIMESTAMPTZ,
    exit_code         BIGINT,
    error             TEXT,
    metadata          JSONB       NOT NULL DEFAULT '{}',
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL,
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
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id  BIGINT      NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq     BIGINT      NOT NULL CHECK (seq >= 1),
    stream  TEXT        NOT NULL CHECK (stream IN ('stdout', 'stderr', 'system')),
    at      TIMESTAMPTZ NOT NULL,
    data    BYTEA       NOT NULL,
    CONSTRAINT job_logs_seq_unique UNIQUE (job_id, seq)
);

CREATE TABLE schedule_state (
    event_id      BIGINT PRIMARY KEY REFERENCES events (id) ON DELETE CASCADE,
    anchor        TIMESTAMPTZ NOT NULL,
    next_fire_at  TIMESTAMPTZ,
    fire_count    BIGINT      NOT NULL DEFAULT 0 CHECK (fire_count >= 0)
);
-- The scheduler's question: what is due?
CREATE INDEX schedule_state_next ON schedule_state (next_fire_at) WHERE next_fire_at IS NOT NULL;
