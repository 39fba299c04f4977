-- no-transaction
-- Email channels. A channel of kind 'email' keeps its settings (recipients,
-- sender, relay, TLS mode, user name, CA certificate) in `settings`, in the
-- clear; its `url` is the relay as smtp://host:port and its sealed secret
-- the relay's password, empty when the relay takes none. Other kinds keep
-- `settings` NULL.
--
-- SQLite cannot change a CHECK constraint, so `channels` is rebuilt (the
-- procedure of https://www.sqlite.org/lang_altertable.html#otheralter).
-- Foreign keys must be off meanwhile, and that pragma does nothing inside a
-- transaction, hence this migration runs outside sqlx's: with them on,
-- dropping the old table would delete every delivery (ON DELETE CASCADE)
-- and fail on every event action (ON DELETE RESTRICT). Ids are kept, so the
-- rows that reference a channel still do; foreign_key_check proves it
-- before the commit.

PRAGMA foreign_keys = OFF;

BEGIN;

CREATE TABLE channels_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT        NOT NULL,
    kind            TEXT        NOT NULL CHECK (kind IN ('webhook', 'slack', 'discord', 'email')),
    -- A webhook's URL; a chat channel's redacted one (its URL is its
    -- secret); an email channel's relay, smtp://host:port.
    url             TEXT        NOT NULL,
    -- Sealed by the server, never returned: a webhook's signing secret, a
    -- chat channel's whole URL, or an email relay's password (may be empty).
    sealed_secret   BLOB        NOT NULL,
    -- An email channel's settings (JSON text), without the password.
    settings        TEXT,
    created_at      INTEGER     NOT NULL,
    updated_at      INTEGER     NOT NULL,
    CONSTRAINT channels_name_unique UNIQUE (name)
);

INSERT INTO channels_new (id, name, kind, url, sealed_secret, settings, created_at, updated_at)
    SELECT id, name, kind, url, sealed_secret, NULL, created_at, updated_at FROM channels;

-- AUTOINCREMENT's high-water mark goes along, so a deleted channel's id
-- is never given again (the copy alone would start at the highest id left).
DELETE FROM sqlite_sequence WHERE name = 'channels_new';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'channels_new', seq FROM sqlite_sequence WHERE name = 'channels';

DROP TABLE channels;

ALTER TABLE channels_new RENAME TO channels;

-- PRAGMA foreign_key_check only lists violations; this insert fails, and
-- with it the migration, if it lists any.
CREATE TEMP TABLE channels_rebuilt (violations INTEGER NOT NULL CHECK (violations = 0));
INSERT INTO channels_rebuilt SELECT COUNT(*) FROM pragma_foreign_key_check;
DROP TABLE channels_rebuilt;

COMMIT;

PRAGMA foreign_keys = ON;
