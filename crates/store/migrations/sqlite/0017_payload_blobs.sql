-- Payload bytes in the database, keyed by checksum, so that any server on
-- the database can run any event: a server without the file in its data
-- dir fetches it from here (and keeps it as its local cache). Payloads are
-- small and deterministic; a blob goes when no payload row references it.
CREATE TABLE payload_blobs (
    checksum   TEXT    PRIMARY KEY,
    bytes      BLOB    NOT NULL,
    created_at INTEGER NOT NULL
);
