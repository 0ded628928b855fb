-- Keyed user digests in the usage rollups (issue 10).
--
-- Until now a user was kept in the rollups as md5(user_id): anyone holding
-- the tables could recompute it for a guessed e-mail address. From here on
-- it is the first 16 bytes of HMAC-SHA256(K, md5(user_id)), where K is
-- derived by the service from the pseudonymisation key in force in the
-- row's month (ACCTSTREAM_PSEUDONYM_KEYS). The database never stores K:
-- the service passes it with each call, as HMAC's inner and outer padded
-- keys (K xor 0x36.., K xor 0x5c..), and the HMAC is computed with
-- sha256() alone (no extension needed).
--
-- Existing rollups are converted by usage_rollup_key_existing, which the
-- service calls at start-up with the key (this file cannot: it has no
-- key). The conversion maps each stored md5 to its keyed digest, one to
-- one, so no count changes; until it has run, usage_rollup_range refuses
-- to add rows, so old and new digests are never mixed.

-- HMAC-SHA256 from its padded keys, truncated to a uuid.
CREATE FUNCTION acctstream_keyed_user(digest bytea, ipad bytea, opad bytea) RETURNS uuid
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT encode(substring(sha256(opad || sha256(ipad || digest)) FROM 1 FOR 16), 'hex')::uuid $$;

-- The keyed digest of an md5 digest on `day`, under the key in force in
-- that day's month (the latest key_from on or before the month's first day).
CREATE FUNCTION usage_user_key(digest bytea, day date, key_from date[], ipads bytea[], opads bytea[])
RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT acctstream_keyed_user(digest, k.ipad, k.opad)
    FROM unnest(key_from, ipads, opads) AS k(from_day, ipad, opad)
    WHERE k.from_day <= date_trunc('month', day)::date
    ORDER BY k.from_day DESC
    LIMIT 1
$$;

-- Whether the stored digests are keyed (one row): at once when there are
-- none yet.
CREATE TABLE usage_rollup_keying (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    keyed     boolean NOT NULL
);
INSERT INTO usage_rollup_keying (keyed)
SELECT NOT EXISTS (SELECT 1 FROM usage_daily_user)
   AND NOT EXISTS (SELECT 1 FROM usage_monthly_any);

-- Converts every stored md5 digest to its keyed digest, once: true when it
-- converted, false when that was already done. The keying row is locked
-- first, so two instances starting at once convert once.
CREATE FUNCTION usage_rollup_key_existing(key_from date[], ipads bytea[], opads bytea[])
RETURNS boolean
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM 1 FROM usage_rollup_keying WHERE NOT keyed FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE usage_daily_user
       SET user_key = usage_user_key(uuid_send(user_key), day, key_from, ipads, opads);
    UPDATE usage_monthly_user
       SET user_key = usage_user_key(uuid_send(user_key), month, key_from, ipads, opads);
    UPDATE usage_monthly_any
       SET user_key = usage_user_key(uuid_send(user_key), month, key_from, ipads, opads);
    UPDATE usage_rollup_keying SET keyed = true;
    RETURN true;
END
$$;

-- The rollup step of 0004, with keyed digests.
DROP FUNCTION usage_rollup_range(bigint, bigint);

CREATE FUNCTION usage_rollup_range(
    range_lo bigint, range_hi bigint, key_from date[], ipads bytea[], opads bytea[]
) RETURNS void
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
    IF NOT (SELECT keyed FROM usage_rollup_keying) THEN
        RAISE EXCEPTION 'the usage rollups still hold unkeyed digests: start acctstream serve (with its key) to convert them';
    END IF;
    WITH fresh AS (
        INSERT INTO usage_daily_user (day, auth_method_type, user_key)
        SELECT day, auth_method_type,
               usage_user_key(decode(md5(user_id), 'hex'), day, key_from, ipads, opads)
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
