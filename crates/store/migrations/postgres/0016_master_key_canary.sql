-- The master key's canary: a fixed text sealed with the key the database
-- was first opened with. A server whose key cannot open it refuses to
-- start, so no server seals secrets the others cannot read (every server
-- on one database must use the same key).
CREATE TABLE master_key_canary (
    id         BIGINT PRIMARY KEY CHECK (id = 1),
    sealed     BYTEA   NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
