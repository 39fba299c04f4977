-- Users sign in to the web UI. A user's password is kept only as an argon2id
-- hash (a PHC string); NULL until one is set, so `admin` cannot sign in
-- before its operator runs `cronium user passwd admin` (there is no default
-- password).
ALTER TABLE users ADD COLUMN password_hash TEXT;

-- Browser sessions. The key is the SHA-256 of the cookie's random secret;
-- the secret itself is never stored. A session ends at `expires_at`, or
-- earlier when unused for the idle timeout (`last_seen_at` is written at
-- most once a minute). It goes with its user.
CREATE TABLE sessions (
    id            BYTEA       PRIMARY KEY CHECK (length(id) = 32),
    user_id       BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token    TEXT        NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    last_seen_at  TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX sessions_user_id ON sessions (user_id);

-- Who acted, when it was a user in the web UI rather than an API token.
-- No foreign key, like the rest of the log: it outlives the user.
ALTER TABLE audit_log ADD COLUMN actor_user_id BIGINT;
