-- The servers (nodes) that use this database, each heartbeating its row.
--   id              the node's lease owner name (host/pid/tag), unique per process
--   heartbeat_at    the database's clock at its last heartbeat
--   clock_offset_ms its own clock minus the database's then
--   running_jobs    how many jobs it was running then
CREATE TABLE nodes (
    id              TEXT    PRIMARY KEY,
    address         TEXT    NOT NULL,
    version         TEXT    NOT NULL,
    started_at      TIMESTAMPTZ NOT NULL,
    heartbeat_at    TIMESTAMPTZ NOT NULL,
    clock_offset_ms BIGINT NOT NULL,
    running_jobs    BIGINT NOT NULL
);
