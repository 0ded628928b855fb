-- Retention reaches every table that holds raw identities (issue 22).
--
-- The identity directory learns when each value was last seen in a record
-- (the UTC day of the newest record that carried it): retention deletes an
-- entry once that day is before the cutoff, as it deletes the records. The
-- entries already there get the day of the newest retained row holding
-- their value (client events, sessions); an entry no retained row holds
-- gets -infinity, so the next retention pass deletes it.
ALTER TABLE identity_directory ADD COLUMN last_seen timestamptz;

UPDATE identity_directory d SET last_seen = seen.at
FROM (
    SELECT raw, max(at) AS at FROM (
        SELECT client_mac AS raw, occurred_at AS at FROM client_event
        UNION ALL
        SELECT client_ip, occurred_at FROM client_event WHERE client_ip IS NOT NULL
        UNION ALL
        SELECT v.raw, coalesce(r.acctstoptime, 'infinity') AS at
        FROM radacct r,
             LATERAL (VALUES (nullif(r.username, '')),
                             (acctstream_mac(nullif(r.callingstationid, ''))),
                             (host(r.framedipaddress)),
                             (host(r.framedipv6address))) AS v (raw)
        WHERE v.raw IS NOT NULL
    ) held
    GROUP BY raw
) seen
WHERE d.raw = seen.raw;

UPDATE identity_directory SET last_seen = '-infinity' WHERE last_seen IS NULL;
-- An open session's values: seen today (retention keeps re-recording them
-- while the session stays open).
UPDATE identity_directory SET last_seen = date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
WHERE last_seen = 'infinity';

ALTER TABLE identity_directory ALTER COLUMN last_seen SET NOT NULL;
CREATE INDEX identity_directory_last_seen ON identity_directory (last_seen, pseudonym);

-- RADIUS requests acctstream could not use hold raw identities too: they
-- are deleted with the records, by the day they arrived.
CREATE INDEX radius_rejected_received_at ON radius_rejected (received_at, id);

-- Wi-Fi client events: retention deletes them oldest first, like
-- authentication events (the index on (occurred_at, id) exists).

-- How far the identity directory has caught up with the rows others write
-- (FreeRADIUS's rlm_sql into radacct), one position per table: every id up
-- to `position` has its identities recorded. Replaces the single cursor of
-- 0007, now that the catch-up serves any kind that declares foreign writes.
CREATE TABLE acctstream_directory_cursor (
    source   text   PRIMARY KEY,
    position bigint NOT NULL DEFAULT 0
);
INSERT INTO acctstream_directory_cursor (source, position)
SELECT 'radacct', radacctid FROM radacct_directory_cursor;
DROP TABLE radacct_directory_cursor;
