-- Notifications. A channel is where a message goes (a signed webhook, a
-- Slack or a Discord incoming webhook);
-- an event's actions say which endings of its jobs send one; a delivery is
-- one message to one channel about one job. Deliveries are written in the
-- transaction that records the job's final result (an outbox), and sent by
-- a worker that leases them like jobs, so a restart loses none.

CREATE TABLE channels (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            TEXT        NOT NULL,
    kind            TEXT        NOT NULL CHECK (kind IN ('webhook', 'slack', 'discord')),
    -- A webhook's URL; a chat channel's redacted one (its URL is its secret).
    url             TEXT        NOT NULL,
    -- Sealed by the server, never returned: a webhook's signing secret, or
    -- a chat channel's whole URL.
    sealed_secret   BYTEA             NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    CONSTRAINT channels_name_unique UNIQUE (name)
);

CREATE TABLE event_actions (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        BIGINT      NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    fire_when       TEXT        NOT NULL CHECK (fire_when IN ('success', 'failure', 'always')),
    -- A channel in use cannot be deleted.
    channel_id      BIGINT      NOT NULL REFERENCES channels (id) ON DELETE RESTRICT,
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX event_actions_event ON event_actions (event_id);

CREATE TABLE deliveries (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id          BIGINT      NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    -- Kept when the action is removed later: the message is still owed.
    -- A deleted channel takes its delivery history with it.
    action_id       BIGINT      REFERENCES event_actions (id) ON DELETE SET NULL,
    channel_id      BIGINT      NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    status          TEXT        NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        BIGINT      NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at TIMESTAMPTZ NOT NULL,
    lease_owner     TEXT,
    lease_expires_at TIMESTAMPTZ,
    last_status     BIGINT     ,
    last_error      TEXT,
    delivered_at    TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_job ON deliveries (job_id);
