-- Workflows: named DAGs of events, stored as versioned definitions.
--   workflows           per owner, the name unique per owner
--     version           the current version (from 1); a new one is made only
--                       when the canonical definition changes
--   workflow_versions   every version's definition, canonical JSON text
--   workflow_events     the events the current version's nodes run; with no
--                       cascade from events, so an event a workflow uses
--                       cannot be deleted from under it

CREATE TABLE workflows (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id    BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    version     BIGINT  NOT NULL CHECK (version >= 1),
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    CONSTRAINT workflows_owner_name_unique UNIQUE (owner_id, name)
);

CREATE TABLE workflow_versions (
    workflow_id BIGINT  NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    version     BIGINT  NOT NULL CHECK (version >= 1),
    definition  TEXT    NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (workflow_id, version)
);

CREATE TABLE workflow_events (
    workflow_id BIGINT  NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    event_id    BIGINT  NOT NULL REFERENCES events (id),
    PRIMARY KEY (workflow_id, event_id)
);

CREATE INDEX workflow_events_event ON workflow_events (event_id);
