-- Each server may name the directory on the host where Cronium caches the
-- runner and payloads: relative to the SSH user's home, or absolute. NULL
-- means the default, .cache/cronium under the home. The value is checked
-- by cronium-core (ServerSpec::validate) on every write and again on read,
-- since it ends up in shell commands on the host.

ALTER TABLE servers ADD COLUMN cache_dir TEXT;
