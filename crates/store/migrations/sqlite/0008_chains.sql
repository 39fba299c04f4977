-- no-transaction
-- Event chains and notifications while a job runs. An action now either
-- notifies a channel or runs an event (`kind`), and fires on a job's end
-- (success, failure, always), its start, or when it runs longer than
-- `after_secs` (duration_exceeded). Jobs may be started by an action
-- (`trigger` 'action'; what started them is in their metadata). A delivery
-- says what it reports (`reason`), and one action sends at most one per job.
--
-- SQLite cannot change a CHECK constraint in place, so event_actions and
-- jobs are rebuilt the way SQLite's ALTER TABLE documentation describes:
-- outside sqlx's transaction (first line), with foreign keys off so that
-- dropping the old tables does not cascade to the rows that reference them
-- (deliveries, job logs), in one transaction of its own, as 0007 did for
-- channels. AUTOINCREMENT counters are carried over, so no id of a deleted
-- job or action is given again, and foreign_key_check proves every
-- reference still holds before the commit.

PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;

CREATE TABLE event_actions_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        INTEGER     NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    fire_when       TEXT        NOT NULL CHECK (fire_when IN
                        ('success', 'failure', 'always', 'start', 'duration_exceeded')),
    kind            TEXT        NOT NULL CHECK (kind IN ('notify', 'run_event')),
    -- A channel in use cannot be deleted.
    channel_id      INTEGER     REFERENCES channels (id) ON DELETE RESTRICT,
    -- Nor an event another event's action runs (checked at the end of the
    -- statement, so an event whose only runner is itself can go).
    target_event_id INTEGER     REFERENCES events (id),
    after_secs      INTEGER     CHECK (after_secs > 0),
    created_at      INTEGER     NOT NULL,
    CHECK ((kind = 'notify') = (channel_id IS NOT NULL)),
    CHECK ((kind = 'run_event') = (target_event_id IS NOT NULL)),
    CHECK ((fire_when = 'duration_exceeded') = (after_secs IS NOT NULL))
);
INSERT INTO event_actions_new (id, event_id, fire_when, kind, channel_id, created_at)
    SELECT id, event_id, fire_when, 'notify', channel_id, created_at FROM event_actions;
DELETE FROM sqlite_sequence WHERE name = 'event_actions_new';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'event_actions_new', seq FROM sqlite_sequence WHERE name = 'event_actions';
DROP TABLE event_actions;
ALTER TABLE event_actions_new RENAME TO event_actions;
CREATE INDEX event_actions_event ON event_actions (event_id);
CREATE INDEX event_actions_target ON event_actions (target_event_id)
    WHERE target_event_id IS NOT NULL;

CREATE TABLE jobs_new (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id          INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    payload_version   INTEGER,
    "trigger"         TEXT    NOT NULL CHECK ("trigger" IN ('schedule', 'manual', 'action')),
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
    CONSTRAINT jobs_fire_unique UNIQUE (event_id, fire_at),
    CHECK (("trigger" = 'schedule') = (fire_at IS NOT NULL))
);
INSERT INTO jobs_new (id, event_id, payload_version, "trigger", status, attempt, scheduled_at,
        fire_at, run_after, lease_owner, lease_expires_at, cancel_requested, started_at,
        finished_at, exit_code, error, metadata, created_at, updated_at)
    SELECT id, event_id, payload_version, "trigger", status, attempt, scheduled_at,
        fire_at, run_after, lease_owner, lease_expires_at, cancel_requested, started_at,
        finished_at, exit_code, error, metadata, created_at, updated_at FROM jobs;
DELETE FROM sqlite_sequence WHERE name = 'jobs_new';
INSERT INTO sqlite_sequence (name, seq) SELECT 'jobs_new', seq FROM sqlite_sequence WHERE name = 'jobs';
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;
CREATE INDEX jobs_claim ON jobs (status, run_after);
CREATE INDEX jobs_event ON jobs (event_id, id);
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE status = 'running';

ALTER TABLE deliveries ADD COLUMN reason TEXT NOT NULL DEFAULT 'end'
    CHECK (reason IN ('end', 'start', 'duration_exceeded'));
CREATE UNIQUE INDEX deliveries_once ON deliveries (job_id, action_id)
    WHERE action_id IS NOT NULL;

-- PRAGMA foreign_key_check only lists violations; this insert fails, and
-- with it the migration, if it lists any.
CREATE TEMP TABLE chains_rebuilt (violations INTEGER NOT NULL CHECK (violations = 0));
INSERT INTO chains_rebuilt SELECT COUNT(*) FROM pragma_foreign_key_check;
DROP TABLE chains_rebuilt;

COMMIT;
PRAGMA foreign_keys = ON;
