-- Usage figures per organization (issue 28): every rollup set and count
-- gains the organization of the events it counts (the default one for
-- everything counted before), and is kept per organization from here on.
-- A person who uses two organizations' applications is a user of each:
-- an organization's report counts its own users, and the operator's (the
-- `tenants` grant) is the sum of the organizations' reports.
--
-- The keys are rebuilt once here, which takes as long as the rollups are
-- large (they hold distinct users per day, not events).

ALTER TABLE usage_daily_user ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE usage_daily_user DROP CONSTRAINT usage_daily_user_pkey,
    ADD PRIMARY KEY (day, auth_method_type, user_key, tenant);

ALTER TABLE usage_monthly_user ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE usage_monthly_user DROP CONSTRAINT usage_monthly_user_pkey,
    ADD PRIMARY KEY (month, auth_method_type, user_key, tenant);

ALTER TABLE usage_monthly_any ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE usage_monthly_any DROP CONSTRAINT usage_monthly_any_pkey,
    ADD PRIMARY KEY (month, user_key, tenant);

ALTER TABLE usage_daily_count ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE usage_daily_count DROP CONSTRAINT usage_daily_count_pkey,
    ADD PRIMARY KEY (day, auth_method_type, tenant);

ALTER TABLE usage_monthly_count ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE usage_monthly_count DROP CONSTRAINT usage_monthly_count_pkey,
    ADD PRIMARY KEY (month, auth_method_type, tenant);

ALTER TABLE usage_monthly_total ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE usage_monthly_total DROP CONSTRAINT usage_monthly_total_pkey,
    ADD PRIMARY KEY (month, tenant);

-- The rollup step of 0011, carrying each event's organization.
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
    fresh_org   text[];
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
        INSERT INTO usage_daily_user (day, auth_method_type, user_key, tenant)
        SELECT day, auth_method_type,
               usage_user_key(decode(md5(user_id), 'hex'), day, key_from, ipads, opads), tenant
        FROM (SELECT DISTINCT (occurred_at AT TIME ZONE 'UTC')::date AS day, auth_method_type,
                              user_id, tenant
              FROM auth_event
              WHERE id BETWEEN range_lo AND range_hi
                AND occurred_at >= served_from AND occurred_at < served_to) AS distinct_rows
        ORDER BY 1, 2, 3, 4
        ON CONFLICT DO NOTHING
        RETURNING day, auth_method_type, user_key, tenant
    )
    SELECT array_agg(day), array_agg(auth_method_type), array_agg(user_key), array_agg(tenant)
    INTO fresh_day, fresh_type, fresh_user, fresh_org
    FROM fresh;
    IF fresh_day IS NULL THEN
        RETURN set_aside;
    END IF;

    INSERT INTO usage_daily_count AS c (day, auth_method_type, tenant, user_count)
    SELECT d, t, o, count(*)
    FROM unnest(fresh_day, fresh_type, fresh_org) AS f(d, t, o)
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    ON CONFLICT (day, auth_method_type, tenant)
        DO UPDATE SET user_count = c.user_count + EXCLUDED.user_count;

    WITH fresh AS (
        INSERT INTO usage_monthly_user (month, auth_method_type, user_key, tenant)
        SELECT DISTINCT date_trunc('month', d::timestamp)::date, t, u, o
        FROM unnest(fresh_day, fresh_type, fresh_user, fresh_org) AS f(d, t, u, o)
        ORDER BY 1, 2, 3, 4
        ON CONFLICT DO NOTHING
        RETURNING month, auth_method_type, user_key, tenant
    )
    SELECT array_agg(month), array_agg(auth_method_type), array_agg(user_key), array_agg(tenant)
    INTO fresh_month, fresh_type, fresh_user, fresh_org
    FROM fresh;
    IF fresh_month IS NULL THEN
        RETURN set_aside;
    END IF;

    INSERT INTO usage_monthly_count AS c (month, auth_method_type, tenant, user_count)
    SELECT m, t, o, count(*)
    FROM unnest(fresh_month, fresh_type, fresh_org) AS f(m, t, o)
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    ON CONFLICT (month, auth_method_type, tenant)
        DO UPDATE SET user_count = c.user_count + EXCLUDED.user_count;

    WITH fresh AS (
        INSERT INTO usage_monthly_any (month, user_key, tenant)
        SELECT DISTINCT m, u, o
        FROM unnest(fresh_month, fresh_user, fresh_org) AS f(m, u, o)
        ORDER BY 1, 2, 3
        ON CONFLICT DO NOTHING
        RETURNING month, user_key, tenant
    )
    SELECT array_agg(month), array_agg(user_key), array_agg(tenant)
    INTO fresh_month, fresh_any, fresh_org
    FROM fresh;
    IF fresh_month IS NULL THEN
        RETURN set_aside;
    END IF;

    INSERT INTO usage_monthly_total AS c (month, tenant, user_count)
    SELECT m, o, count(*)
    FROM unnest(fresh_month, fresh_org) AS f(m, o)
    GROUP BY 1, 2
    ORDER BY 1, 2
    ON CONFLICT (month, tenant)
        DO UPDATE SET user_count = c.user_count + EXCLUDED.user_count;
    RETURN set_aside;
END
$$;

-- The second layer (0015) on the figures too: a report for one
-- organization reads them as acctstream_organization.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['usage_daily_count', 'usage_monthly_count', 'usage_monthly_total'] LOOP
        EXECUTE format('GRANT SELECT ON %I TO acctstream_organization', t);
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY acctstream_everyone ON %I AS PERMISSIVE FOR ALL TO PUBLIC '
                       'USING (true) WITH CHECK (true)', t);
        EXECUTE format('CREATE POLICY acctstream_one_organization ON %I AS RESTRICTIVE FOR SELECT '
                       'TO acctstream_organization '
                       'USING (tenant = (SELECT current_setting(''acctstream.tenant'')))', t);
    END LOOP;
END
$$;
