-- Named leases on the database's clock: work that one server at a time
-- should do (housekeeping) is done by whoever holds its lease.
CREATE TABLE leases (
    name       TEXT    PRIMARY KEY,
    owner      TEXT    NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
