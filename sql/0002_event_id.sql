-- Client-chosen event IDs for ingest (POST /api/v1/events): an event whose
-- event_id is already stored is skipped, so a producer can retry a batch
-- safely. NULL (no ID) is allowed any number of times; a UNIQUE constraint
-- treats NULLs as distinct. Adding a nullable column without a default does
-- not rewrite the table.
ALTER TABLE auth_event
    ADD COLUMN event_id text
        CONSTRAINT auth_event_event_id_length
        CHECK (char_length(event_id) BETWEEN 1 AND 200);

ALTER TABLE auth_event
    ADD CONSTRAINT auth_event_event_id_key UNIQUE (event_id);
