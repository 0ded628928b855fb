-- The access audit trail: one row per API request that read or stored
-- accounting data, written in batches off the request's hot path by the
-- service (`db::audit`). The client is the static token's label or the
-- access token's client id, never a token; identity parameters are kept
-- only as pseudonyms. Rows older than ACCTSTREAM_AUDIT_RETENTION_DAYS are
-- deleted by the retention job.
CREATE TABLE access_audit (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             timestamptz      NOT NULL,
    client         text             NOT NULL,
    scopes         text             NOT NULL,
    method         text             NOT NULL,
    route          text             NOT NULL,
    parameters     text             NOT NULL,
    representation text,
    status         integer          NOT NULL,
    rows_sent      bigint,
    bytes_sent     bigint           NOT NULL,
    completed      boolean          NOT NULL,
    duration_ms    double precision NOT NULL,
    request_id     text             NOT NULL
);

CREATE INDEX access_audit_at ON access_audit (at, id);
