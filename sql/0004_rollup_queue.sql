-- Usage rollups off the insert path.
--
-- 0003 kept the rollups current with a statement trigger that read every
-- inserted row through a transition table: exact, but it made every insert
-- about 3 s per million rows slower. From here on an insert only records
-- WHICH ids it may have used (one row in usage_rollup_queue per statement,
-- committed atomically with the events), and the rollup work is done by
-- usage_rollup_range over those id ranges, called by the catch-up in
-- src/db/rollup.rs: by a background job, before every report and before
-- every retention pass. The rollup tables and their rules are unchanged.
--
-- Migrated databases: the old trigger kept the rollups current up to this
-- migration, and DROP TRIGGER waits for running inserts and holds new ones
-- until this commits, so the queue rightly starts empty.

DROP TRIGGER usage_rollup ON auth_event;
DROP FUNCTION usage_rollup_after_insert();

-- Pending id ranges [lo, hi] of auth_event whose rows may not be in the
-- rollups yet. A range may also cover ids of other transactions (committed,
-- running, rolled back, or never used): rolling a row up twice is harmless,
-- and a row of another transaction is covered by that transaction's own
-- queue row once it commits.
CREATE TABLE usage_rollup_queue (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    lo bigint NOT NULL,
    hi bigint NOT NULL,
    CHECK (lo <= hi)
);

-- The ranges rely on every id a statement obtains being greater than the
-- sequence's last_value read before the statement: true when each nextval
-- advances the shared last_value, i.e. without per-session caching.
ALTER TABLE auth_event ALTER COLUMN id SET CACHE 1;

-- BEFORE INSERT (per statement): remember the id sequence's high-water mark.
-- Any id this statement obtains is above it. Transaction-local setting.
CREATE FUNCTION usage_rollup_mark() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM set_config(
        'acctstream.rollup_lo',
        (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END
         FROM auth_event_id_seq)::text,
        true);
    RETURN NULL;
END
$$;

-- AFTER INSERT (per statement): queue (mark + 1 .. this session's last id).
-- No id obtained in this session, or none since the mark: the statement
-- inserted nothing, so nothing is queued.
CREATE FUNCTION usage_rollup_enqueue() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    -- Unset would mean the BEFORE trigger did not run: cover everything
    -- (slow, but never wrong).
    mark bigint := coalesce(nullif(current_setting('acctstream.rollup_lo', true), '')::bigint, 0);
    last bigint;
BEGIN
    BEGIN
        last := currval('auth_event_id_seq');
    EXCEPTION WHEN object_not_in_prerequisite_state THEN
        RETURN NULL;
    END;
    IF last > mark THEN
        INSERT INTO usage_rollup_queue (lo, hi) VALUES (mark + 1, last);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER usage_rollup_mark
    BEFORE INSERT ON auth_event
    FOR EACH STATEMENT
    EXECUTE FUNCTION usage_rollup_mark();

CREATE TRIGGER usage_rollup_enqueue
    AFTER INSERT ON auth_event
    FOR EACH STATEMENT
    EXECUTE FUNCTION usage_rollup_enqueue();

-- Adds the visible events with ids in [range_lo, range_hi] to the rollups,
-- set-based: the body of 0003's trigger, reading a primary-key range scan
-- instead of a transition table.
--
-- Each step inserts candidate keys with ON CONFLICT DO NOTHING and counts only
-- the keys it actually inserted (RETURNING), so concurrent or repeated calls
-- covering the same events never count a key twice: a second inserter waits
-- for the first and, once it has committed, finds the key present. Every
-- INSERT is fed in the order of its conflict key and the steps always run in
-- the same order, so two calls take their locks in one global order and
-- cannot deadlock each other (callers make one call per transaction).
--
-- Only keys new for a day can be new for their month, and only keys new for
-- a (month, method) can be new for the month overall, so each step works on
-- the previous step's fresh keys alone.
CREATE FUNCTION usage_rollup_range(range_lo bigint, range_hi bigint) RETURNS void
LANGUAGE plpgsql
SET work_mem = '64MB'
AS $$
DECLARE
    fresh_day   date[];
    fresh_type  text[];
    fresh_user  uuid[];
    fresh_month date[];
    fresh_any   uuid[];
BEGIN
    WITH fresh AS (
        INSERT INTO usage_daily_user (day, auth_method_type, user_key)
        SELECT day, auth_method_type, md5(user_id)::uuid
        FROM (SELECT DISTINCT (occurred_at AT TIME ZONE 'UTC')::date AS day, auth_method_type, user_id
              FROM auth_event
              WHERE id BETWEEN range_lo AND range_hi) AS distinct_rows
        ORDER BY 1, 2, 3
        ON CONFLICT DO NOTHING
        RETURNING day, auth_method_type, user_key
    )
    SELECT array_agg(day), array_agg(auth_method_type), array_agg(user_key)
    INTO fresh_day, fresh_type, fresh_user
    FROM fresh;
    IF fresh_day IS NULL THEN
        RETURN;
    END IF;

    INSERT INTO usage_daily_count AS c (day, auth_method_type, user_count)
    SELECT d, t, count(*)
    FROM unnest(fresh_day, fresh_type) AS f(d, t)
    GROUP BY 1, 2
    ORDER BY 1, 2
    ON CONFLICT (day, auth_method_type)
        DO UPDATE SET user_count = c.user_count + EXCLUDED.user_count;

    WITH fresh AS (
        INSERT INTO usage_monthly_user (month, auth_method_type, user_key)
        SELECT DISTINCT date_trunc('month', d::timestamp)::date, t, u
        FROM unnest(fresh_day, fresh_type, fresh_user) AS f(d, t, u)
        ORDER BY 1, 2, 3
        ON CONFLICT DO NOTHING
        RETURNING month, auth_method_type, user_key
    )
    SELECT array_agg(month), array_agg(auth_method_type), array_agg(user_key)
    INTO fresh_month, fresh_type, fresh_user
    FROM fresh;
    IF fresh_month IS NULL THEN
        RETURN;
    END IF;

    INSERT INTO usage_monthly_count AS c (month, auth_method_type, user_count)
    SELECT m, t, count(*)
    FROM unnest(fresh_month, fresh_type) AS f(m, t)
    GROUP BY 1, 2
    ORDER BY 1, 2
    ON CONFLICT (month, auth_method_type)
        DO UPDATE SET user_count = c.user_count + EXCLUDED.user_count;

    WITH fresh AS (
        INSERT INTO usage_monthly_any (month, user_key)
        SELECT DISTINCT m, u
        FROM unnest(fresh_month, fresh_user) AS f(m, u)
        ORDER BY 1, 2
        ON CONFLICT DO NOTHING
        RETURNING month, user_key
    )
    SELECT array_agg(month), array_agg(user_key)
    INTO fresh_month, fresh_any
    FROM fresh;
    IF fresh_month IS NULL THEN
        RETURN;
    END IF;

    INSERT INTO usage_monthly_total AS c (month, user_count)
    SELECT m, count(*)
    FROM unnest(fresh_month) AS f(m)
    GROUP BY 1
    ORDER BY 1
    ON CONFLICT (month)
        DO UPDATE SET user_count = c.user_count + EXCLUDED.user_count;
END
$$;
