-- No single event can stop the usage rollups (issue 27, item 1).
--
-- An event the rollups cannot take stopped every catch-up, and so every
-- report, for good: one dated in year 0 (no key is in force for its
-- month: "null value in column user_key"), or past 9999-12-31 (no report
-- month holds it). Ingest now refuses such times, but a row written by SQL
-- can still hold one. From here on usage_rollup_range sets such events
-- aside, in usage_rollup_set_aside with the reason (no identity is kept
-- there: the event's id and time only), rolls up the rest, and returns how
-- many it set aside; the service logs and counts them.
--
-- Repair: a database that already holds such events has their ids still
-- queued (every catch-up failed and rolled back), so the first catch-up
-- after this migration sets them aside and brings the reports back.

CREATE TABLE usage_rollup_set_aside (
    event_id     bigint      PRIMARY KEY,
    occurred_at  timestamptz NOT NULL,
    reason       text        NOT NULL,
    set_aside_at timestamptz NOT NULL DEFAULT now()
);

DROP FUNCTION usage_rollup_range(bigint, bigint, date[], bytea[], bytea[]);

CREATE FUNCTION usage_rollup_range(
    range_lo bigint, range_hi bigint, key_from date[], ipads bytea[], opads bytea[]
) RETURNS integer
LANGUAGE plpgsql
SET work_mem = '64MB'
AS $$
DECLARE
    -- The first instant a key is in force for (a key applies from the
    -- first day of a month on), and the end of the year 9999.
    served_from timestamptz;
    served_to   timestamptz := '10000-01-01 00:00:00+00';
    set_aside   integer;
    fresh_day   date[];
    fresh_type  text[];
    fresh_user  uuid[];
    fresh_month date[];
    fresh_any   uuid[];
BEGIN
    IF NOT (SELECT keyed FROM usage_rollup_keying) THEN
        RAISE EXCEPTION 'the usage rollups still hold unkeyed digests: start acctstream serve (with its key) to convert them';
    END IF;
    SELECT greatest(
               '0001-01-01 00:00:00+00'::timestamptz,
               (CASE WHEN extract(day FROM min(f)) = 1 THEN min(f)
                     ELSE (date_trunc('month', min(f)) + interval '1 month')::date END
               )::timestamp AT TIME ZONE 'UTC')
    INTO served_from
    FROM unnest(key_from) AS k(f);
    IF served_from IS NULL THEN
        RAISE EXCEPTION 'usage_rollup_range: no key given';
    END IF;
    WITH aside AS (
        INSERT INTO usage_rollup_set_aside (event_id, occurred_at, reason)
        SELECT id, occurred_at,
               CASE WHEN occurred_at < '0001-01-01 00:00:00+00' OR occurred_at >= served_to
                    THEN 'its time is outside the years 0001 to 9999 (UTC)'
                    ELSE 'no pseudonymisation key is in force for its month' END
        FROM auth_event
        WHERE id BETWEEN range_lo AND range_hi
          AND (occurred_at < served_from OR occurred_at >= served_to)
        ON CONFLICT (event_id) DO NOTHING
        RETURNING 1
    )
    SELECT count(*) INTO set_aside FROM aside;
    WITH fresh AS (
        INSERT INTO usage_daily_user (day, auth_method_type, user_key)
        SELECT day, auth_method_type,
               usage_user_key(decode(md5(user_id), 'hex'), day, key_from, ipads, opads)
        FROM (SELECT DISTINCT (occurred_at AT TIME ZONE 'UTC')::date AS day, auth_method_type, user_id
              FROM auth_event
              WHERE id BETWEEN range_lo AND range_hi
                AND occurred_at >= served_from AND occurred_at < served_to) AS distinct_rows
        ORDER BY 1, 2, 3
        ON CONFLICT DO NOTHING
        RETURNING day, auth_method_type, user_key
    )
    SELECT array_agg(day), array_agg(auth_method_type), array_agg(user_key)
    INTO fresh_day, fresh_type, fresh_user
    FROM fresh;
    IF fresh_day IS NULL THEN
        RETURN set_aside;
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
        RETURN set_aside;
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
        RETURN set_aside;
    END IF;

    INSERT INTO usage_monthly_total AS c (month, user_count)
    SELECT m, count(*)
    FROM unnest(fresh_month) AS f(m)
    GROUP BY 1
    ORDER BY 1
    ON CONFLICT (month)
        DO UPDATE SET user_count = c.user_count + EXCLUDED.user_count;
    RETURN set_aside;
END
$$;
