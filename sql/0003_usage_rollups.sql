-- Usage rollups: the distinct-user sets and counters the accounting reports
-- read, kept up to date by a statement-level trigger on every insert into
-- auth_event (COPY included), so a report never scans raw events.
--
-- Users are kept as user_key = md5(user_id)::uuid: enough to count distinct
-- users, and the raw identifier is not kept here (rollups outlive retention).
-- Days and months are UTC.
--
-- The tables are append-only: deleting raw events (retention) does not touch
-- them, so reports keep working for months whose events are gone. The
-- trigger relies on that: a (day, method, user) key that is already present
-- implies its (month, method, user) and (month, user) keys are present too.

-- Distinct users per UTC day and authentication method type.
CREATE TABLE usage_daily_user (
    day              date NOT NULL,
    auth_method_type text NOT NULL,
    user_key         uuid NOT NULL,
    PRIMARY KEY (day, auth_method_type, user_key)
);

-- Distinct users per calendar month (its first day) and method type.
CREATE TABLE usage_monthly_user (
    month            date NOT NULL,
    auth_method_type text NOT NULL,
    user_key         uuid NOT NULL,
    PRIMARY KEY (month, auth_method_type, user_key)
);

-- Distinct users per calendar month across all method types (the Total row,
-- which is not the sum of the per-method figures).
CREATE TABLE usage_monthly_any (
    month    date NOT NULL,
    user_key uuid NOT NULL,
    PRIMARY KEY (month, user_key)
);

-- The sizes of the sets above, maintained incrementally.
CREATE TABLE usage_daily_count (
    day              date   NOT NULL,
    auth_method_type text   NOT NULL,
    user_count       bigint NOT NULL,
    PRIMARY KEY (day, auth_method_type)
);

CREATE TABLE usage_monthly_count (
    month            date   NOT NULL,
    auth_method_type text   NOT NULL,
    user_count       bigint NOT NULL,
    PRIMARY KEY (month, auth_method_type)
);

CREATE TABLE usage_monthly_total (
    month      date   PRIMARY KEY,
    user_count bigint NOT NULL
);

-- Adds one statement's new events to the rollups, set-based.
--
-- Each step inserts candidate keys with ON CONFLICT DO NOTHING and counts only
-- the keys it actually inserted (RETURNING), so concurrent transactions
-- inserting the same key never count it twice: the second waits for the first
-- and, once it has committed, finds the key present. Every INSERT is fed in
-- the order of its conflict key and the steps always run in the same order,
-- so two such statements take their locks in one global order and cannot
-- deadlock each other.
--
-- Only keys new for a day can be new for their month, and only keys new for
-- a (month, method) can be new for the month overall, so each step works on
-- the previous step's fresh keys alone.
--
-- Hashing only the distinct (day, method, user) rows and a larger work_mem
-- (so a bulk statement's aggregates and sorts stay in memory) keep the cost
-- down; see bench/README.md for the figures.
CREATE FUNCTION usage_rollup_after_insert() RETURNS trigger
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
              FROM new_rows) AS distinct_rows
        ORDER BY 1, 2, 3
        ON CONFLICT DO NOTHING
        RETURNING day, auth_method_type, user_key
    )
    SELECT array_agg(day), array_agg(auth_method_type), array_agg(user_key)
    INTO fresh_day, fresh_type, fresh_user
    FROM fresh;
    IF fresh_day IS NULL THEN
        RETURN NULL;
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
        RETURN NULL;
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
        RETURN NULL;
    END IF;

    INSERT INTO usage_monthly_total AS c (month, user_count)
    SELECT m, count(*)
    FROM unnest(fresh_month) AS f(m)
    GROUP BY 1
    ORDER BY 1
    ON CONFLICT (month)
        DO UPDATE SET user_count = c.user_count + EXCLUDED.user_count;

    RETURN NULL;
END
$$;

-- Created before the backfill: this takes a lock that waits for running
-- inserts to finish and holds new ones until the migration commits, so every
-- event is counted exactly once, by the backfill or by the trigger.
CREATE TRIGGER usage_rollup
    AFTER INSERT ON auth_event
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT
    EXECUTE FUNCTION usage_rollup_after_insert();

-- Backfill: the figures of the events already stored (work_mem until the
-- migration's transaction ends).
SET LOCAL work_mem = '256MB';

INSERT INTO usage_daily_user (day, auth_method_type, user_key)
SELECT day, auth_method_type, md5(user_id)::uuid
FROM (SELECT DISTINCT (occurred_at AT TIME ZONE 'UTC')::date AS day, auth_method_type, user_id
      FROM auth_event) AS distinct_rows;

INSERT INTO usage_monthly_user (month, auth_method_type, user_key)
SELECT DISTINCT date_trunc('month', day::timestamp)::date, auth_method_type, user_key
FROM usage_daily_user;

INSERT INTO usage_monthly_any (month, user_key)
SELECT DISTINCT month, user_key
FROM usage_monthly_user;

INSERT INTO usage_daily_count (day, auth_method_type, user_count)
SELECT day, auth_method_type, count(*) FROM usage_daily_user GROUP BY 1, 2;

INSERT INTO usage_monthly_count (month, auth_method_type, user_count)
SELECT month, auth_method_type, count(*) FROM usage_monthly_user GROUP BY 1, 2;

INSERT INTO usage_monthly_total (month, user_count)
SELECT month, count(*) FROM usage_monthly_any GROUP BY 1;
