-- Event chains and notifications while a job runs. An action now either
-- notifies a channel or runs an event (`kind`), and fires on a job's end
-- (success, failure, always), its start, or when it runs longer than
-- `after_secs` (duration_exceeded). Jobs may be started by an action
-- (`trigger` 'action'; what started them is in their metadata). A delivery
-- says what it reports (`reason`), and one action sends at most one per job.

ALTER TABLE event_actions
    ADD COLUMN kind TEXT NOT NULL DEFAULT 'notify' CHECK (kind IN ('notify', 'run_event')),
    -- An event another event's action runs cannot be deleted (checked at
    -- the end of the statement, so an event whose only runner is itself can go).
    ADD COLUMN target_event_id BIGINT REFERENCES events (id),
    ADD COLUMN after_secs BIGINT CHECK (after_secs > 0),
    ALTER COLUMN channel_id DROP NOT NULL,
    DROP CONSTRAINT event_actions_fire_when_check,
    ADD CONSTRAINT event_actions_fire_when_check CHECK (fire_when IN
        ('success', 'failure', 'always', 'start', 'duration_exceeded')),
    ADD CHECK ((kind = 'notify') = (channel_id IS NOT NULL)),
    ADD CHECK ((kind = 'run_event') = (target_event_id IS NOT NULL)),
    ADD CHECK ((fire_when = 'duration_exceeded') = (after_secs IS NOT NULL));
ALTER TABLE event_actions ALTER COLUMN kind DROP DEFAULT;
CREATE INDEX event_actions_target ON event_actions (target_event_id)
    WHERE target_event_id IS NOT NULL;

ALTER TABLE jobs
    DROP CONSTRAINT jobs_trigger_check,
    ADD CONSTRAINT jobs_trigger_check CHECK ("trigger" IN ('schedule', 'manual', 'action'));

ALTER TABLE deliveries ADD COLUMN reason TEXT NOT NULL DEFAULT 'end'
    CHECK (reason IN ('end', 'start', 'duration_exceeded'));
CREATE UNIQUE INDEX deliveries_once ON deliveries (job_id, action_id)
    WHERE action_id IS NOT NULL;
