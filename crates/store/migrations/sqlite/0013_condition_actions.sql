-- no-transaction
-- Actions may fire on a run's condition (`fire_when` 'condition': the job
-- succeeded and its script set its condition to true).
--
-- SQLite cannot change a CHECK constraint in place, so event_actions is
-- rebuilt as 0008 did: outside sqlx's transaction (first line), with
-- foreign keys off so that dropping the old table does not touch the
-- deliveries that reference it, its AUTOINCREMENT counter carried over, and
-- foreign_key_check proving every reference still holds before the commit.

PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;

CREATE TABLE event_actions_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        INTEGER     NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    fire_when       TEXT        NOT NULL CHECK (fire_when IN
                        ('success', 'failure', 'always', 'start', 'duration_exceeded', 'condition')),
    kind            TEXT        NOT NULL CHECK (kind IN ('notify', 'run_event')),
    channel_id      INTEGER     REFERENCES channels (id) ON DELETE RESTRICT,
    target_event_id INTEGER     REFERENCES events (id),
    after_secs      INTEGER     CHECK (after_secs > 0),
    created_at      INTEGER     NOT NULL,
    CHECK ((kind = 'notify') = (channel_id IS NOT NULL)),
    CHECK ((kind = 'run_event') = (target_event_id IS NOT NULL)),
    CHECK ((fire_when = 'duration_exceeded') = (after_secs IS NOT NULL))
);
INSERT INTO event_actions_new (id, event_id, fire_when, kind, channel_id, target_event_id,
        after_secs, created_at)
    SELECT id, event_id, fire_when, kind, channel_id, target_event_id, after_secs, created_at
    FROM event_actions;
DELETE FROM sqlite_sequence WHERE name = 'event_actions_new';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'event_actions_new', seq FROM sqlite_sequence WHERE name = 'event_actions';
DROP TABLE event_actions;
ALTER TABLE event_actions_new RENAME TO event_actions;
CREATE INDEX event_actions_event ON event_actions (event_id);
CREATE INDEX event_actions_target ON event_actions (target_event_id)
    WHERE target_event_id IS NOT NULL;

CREATE TEMP TABLE condition_rebuilt (violations INTEGER NOT NULL CHECK (violations = 0));
INSERT INTO condition_rebuilt SELECT COUNT(*) FROM pragma_foreign_key_check;
DROP TABLE condition_rebuilt;

COMMIT;
PRAGMA foreign_keys = ON;
