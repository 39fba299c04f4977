-- Server tags, and events that target servers by tag.
--   server_tags        labels on a server (an imported inventory's groups)
--   event_target_tags  an event runs on every server holding any of these
--                      tags when a job starts, besides its event_servers
-- A tag is not a row of its own: it exists while something holds it, so a
-- tag no server holds any more is simply one that matches nothing.

CREATE TABLE server_tags (
    server_id  BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    tag        TEXT   NOT NULL,
    PRIMARY KEY (server_id, tag)
);
CREATE INDEX server_tags_tag ON server_tags (tag, server_id);

CREATE TABLE event_target_tags (
    event_id  BIGINT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    tag       TEXT   NOT NULL,
    PRIMARY KEY (event_id, tag)
);
