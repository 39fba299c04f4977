-- Runtime helpers: variables scripts share, and each attempt's output and
-- condition.
--   variables           per owner (an event's owner, for its scripts);
--                       a plain value is compact JSON in value_json, a secret
--                       one is sealed by the server (the database never holds
--                       it in clear, nor the key to open it) in sealed
--     version           from 1, raised by every write
--     updated_by_job    the job whose script wrote it last (NULL: the API);
--                       no foreign key, since finished jobs are pruned and
--                       the variable outlives them
--   jobs.output         this attempt's output (compact JSON), NULL when unset
--   jobs.condition      this attempt's condition; a claim of the next attempt
--                       clears both
--   audit_log.actor_job_id  a job acting through its script (no foreign key:
--                       the audit log outlives pruned jobs)

CREATE TABLE variables (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    owner_id        INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key             TEXT    NOT NULL,
    value_json      TEXT,
    sealed          BLOB,
    secret          INTEGER NOT NULL DEFAULT 0 CHECK (secret IN (0, 1)),
    version         INTEGER NOT NULL CHECK (version >= 1),
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    updated_by_job  INTEGER,
    CONSTRAINT variables_owner_key_unique UNIQUE (owner_id, key),
    CHECK ((secret = 1) = (sealed IS NOT NULL)),
    CHECK ((value_json IS NULL) = (sealed IS NOT NULL))
);

ALTER TABLE jobs ADD COLUMN output TEXT;
ALTER TABLE jobs ADD COLUMN condition INTEGER NOT NULL DEFAULT 0 CHECK (condition IN (0, 1));

ALTER TABLE audit_log ADD COLUMN actor_job_id INTEGER;
