-- The outcome of each server's newest check (`POST /servers/{id}/check`, or
-- "Check now" in the web UI), kept on its row so lists and the dashboard can
-- show it without connecting. All NULL until the first check. Writing them
-- does not change `updated_at`: a check is not a change to the server.
--   last_check_at           when the check ran
--   last_check_ok           1 when it passed, 0 when it failed
--   last_check_message      a one-line summary, or why it failed
--   last_check_fingerprint  the host key the check was shown (SHA256:...)

ALTER TABLE servers ADD COLUMN last_check_at INTEGER;
ALTER TABLE servers ADD COLUMN last_check_ok INTEGER CHECK (last_check_ok IN (0, 1));
ALTER TABLE servers ADD COLUMN last_check_message TEXT;
ALTER TABLE servers ADD COLUMN last_check_fingerprint TEXT;
