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

ALTER TABLE jobs
    DROP CONSTRAINT jobs_trigger_check,
    ADD CONSTRAINT jobs_trigger_check
        CHECK ("trigger" IN ('schedule', 'manual', 'action', 'workflow'));

ALTER TABLE workflows ADD COLUMN hook_key_hash TEXT;
ALTER TABLE workflows ADD COLUMN hook_secret BYTEA;
ALTER TABLE workflows ADD COLUMN anchor TIMESTAMPTZ;
ALTER TABLE workflows ADD COLUMN next_fire_at TIMESTAMPTZ;
CREATE UNIQUE INDEX workflows_hook_key ON workflows (hook_key_hash);
CREATE INDEX workflows_next_fire ON workflows (next_fire_at) WHERE next_fire_at IS NOT NULL;

CREATE TABLE workflow_runs (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow_id      BIGINT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    version          BIGINT NOT NULL CHECK (version >= 1),
    status           TEXT    NOT NULL CHECK (status IN
                         ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'skipped')),
    "trigger"        TEXT    NOT NULL CHECK ("trigger" IN ('manual', 'schedule', 'webhook')),
    fire_at          TIMESTAMPTZ,
    idempotency_key  TEXT,
    input            TEXT,
    pass             BIGINT NOT NULL DEFAULT 1 CHECK (pass >= 1),
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    error            TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    updated_at       TIMESTAMPTZ NOT NULL,
    CONSTRAINT workflow_runs_fire_unique UNIQUE (workflow_id, fire_at),
    CONSTRAINT workflow_runs_idempotency_unique UNIQUE (workflow_id, idempotency_key)
);
CREATE INDEX workflow_runs_workflow ON workflow_runs (workflow_id, id);
CREATE INDEX workflow_runs_active ON workflow_runs (status) WHERE status IN ('queued', 'running');

CREATE TABLE workflow_run_nodes (
    run_id          BIGINT NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
    position        BIGINT NOT NULL CHECK (position >= 0),
    node            TEXT    NOT NULL,
    event_id        BIGINT NOT NULL,
    payload_version BIGINT,
    status          TEXT    NOT NULL CHECK (status IN
                        ('pending', 'running', 'succeeded', 'failed', 'cancelled', 'skipped')),
    job_id          BIGINT REFERENCES jobs (id) ON DELETE SET NULL,
    reason          TEXT,
    pass            BIGINT NOT NULL DEFAULT 1,
    started_at      TIMESTAMPTZ,
    finished_at     TIMESTAMPTZ,
    PRIMARY KEY (run_id, position)
);
CREATE INDEX workflow_run_nodes_job ON workflow_run_nodes (job_id) WHERE job_id IS NOT NULL;
