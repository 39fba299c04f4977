-- Email channels. A channel of kind 'email' keeps its settings (recipients,
-- sender, relay, TLS mode, user name, CA certificate) in `settings`, in the
-- clear; its `url` is the relay as smtp://host:port and its sealed secret
-- the relay's password, empty when the relay takes none. Other kinds keep
-- `settings` NULL.

ALTER TABLE channels DROP CONSTRAINT channels_kind_check;
ALTER TABLE channels ADD CONSTRAINT channels_kind_check
    CHECK (kind IN ('webhook', 'slack', 'discord', 'email'));
ALTER TABLE channels ADD COLUMN settings JSONB;
