-- Actions may fire on a run's condition (`fire_when` 'condition': the job
-- succeeded and its script set its condition to true).

ALTER TABLE event_actions
    DROP CONSTRAINT event_actions_fire_when_check,
    ADD CONSTRAINT event_actions_fire_when_check CHECK (fire_when IN
        ('success', 'failure', 'always', 'start', 'duration_exceeded', 'condition'));
