-- A job that runs on several servers labels each output line with the
-- server it came from: the name at the time, so a later rename or delete of
-- the server leaves old logs as they were. NULL for local jobs and for the
-- job's own system lines.

ALTER TABLE job_logs ADD COLUMN server TEXT;
