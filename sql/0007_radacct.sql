-- Network access sessions live in FreeRADIUS's own table, `radacct`, created
-- here exactly as FreeRADIUS 3.2 ships it for PostgreSQL
-- (raddb/mods-config/sql/main/postgresql/schema.sql), with its indexes, but
-- only when no `radacct` exists: pointed at a database a FreeRADIUS server
-- already writes, acctstream reads that table as it is and never alters it.
-- The indexes acctstream needs beyond FreeRADIUS's are created
-- CONCURRENTLY IF NOT EXISTS at start-up (src/db/sessions.rs), not here.
DO $migration$
BEGIN
    IF to_regclass('radacct') IS NULL THEN
        CREATE TABLE radacct (
            RadAcctId           bigserial PRIMARY KEY,
            AcctSessionId       text NOT NULL,
            AcctUniqueId        text NOT NULL UNIQUE,
            UserName            text,
            Realm               text,
            NASIPAddress        inet NOT NULL,
            NASPortId           text,
            NASPortType         text,
            AcctStartTime       timestamp with time zone,
            AcctUpdateTime      timestamp with time zone,
            AcctStopTime        timestamp with time zone,
            AcctInterval        bigint,
            AcctSessionTime     bigint,
            AcctAuthentic       text,
            ConnectInfo_start   text,
            ConnectInfo_stop    text,
            AcctInputOctets     bigint,
            AcctOutputOctets    bigint,
            CalledStationId     text,
            CallingStationId    text,
            AcctTerminateCause  text,
            ServiceType         text,
            FramedProtocol      text,
            FramedIPAddress     inet,
            FramedIPv6Address   inet,
            FramedIPv6Prefix    inet,
            FramedInterfaceId   text,
            DelegatedIPv6Prefix inet,
            Class               text
        );
        CREATE INDEX radacct_active_session_idx ON radacct (AcctUniqueId) WHERE AcctStopTime IS NULL;
        CREATE INDEX radacct_bulk_close ON radacct (NASIPAddress, AcctStartTime) WHERE AcctStopTime IS NULL;
        CREATE INDEX radacct_start_user_idx ON radacct (AcctStartTime, UserName);
        CREATE INDEX radacct_calss_idx ON radacct (Class);
    END IF;
END
$migration$;

-- A Calling-Station-Id in acctstream's one MAC notation (lowercase,
-- colon-separated) when it is a MAC address in a common notation
-- (`00-11-22-AA-BB-CC`, `00:11:22:aa:bb:cc`, `001122aabbcc`,
-- `0011.22aa.bbcc`), else unchanged: the same rule as the service's
-- IdentityType::Mac, so a device is found by its pseudonym through an index
-- whatever notation its NAS uses.
CREATE FUNCTION acctstream_mac(value text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT AS $$
    SELECT CASE
        WHEN value ~ '^[0-9A-Fa-f]{2}([-:])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}$'
          OR value ~ '^[0-9A-Fa-f]{12}$'
          OR value ~ '^[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}$'
        THEN regexp_replace(lower(translate(value, '-:.', '')),
                            '^(..)(..)(..)(..)(..)(..)$', '\1:\2:\3:\4:\5:\6')
        ELSE value
    END
$$;

-- Whether a session is open but has not been heard of for too long: longer
-- than `acctstream.session_stale_after` (seconds, set per connection from
-- ACCTSTREAM_SESSION_STALE_AFTER) when set, else three interim intervals
-- when the interval is known, else one hour.
CREATE FUNCTION acctstream_session_stale(stopped timestamptz, heard timestamptz, interim bigint)
RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT stopped IS NULL AND heard < now() - make_interval(secs => coalesce(
        nullif(current_setting('acctstream.session_stale_after', true), '')::float8,
        CASE WHEN interim > 0 THEN 3 * interim END,
        3600))
$$;

-- RADIUS accounting records acctstream could not use (rlm_rest posts must
-- still be acknowledged, or the NAS retransmits for ever): kept with the
-- reason, readable with a write-scope token.
CREATE TABLE radius_rejected (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    reason      text        NOT NULL,
    -- The request as posted, as JSON text (not jsonb: a request may hold
    -- what jsonb refuses, such as \u0000).
    record      text        NOT NULL
);

-- How far the identity directory has caught up with `radacct` rows that
-- FreeRADIUS wrote directly (rlm_sql): every radacctid up to this one has
-- its identities recorded.
CREATE TABLE radacct_directory_cursor (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    radacctid   bigint  NOT NULL
);
INSERT INTO radacct_directory_cursor (radacctid) VALUES (0);
