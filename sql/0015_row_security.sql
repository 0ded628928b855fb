-- Organizations, the second layer (issue 28): row-level security.
--
-- A read for one organization runs as the role acctstream_organization
-- (SET LOCAL ROLE, in a read-only transaction that also sets
-- acctstream.tenant): every kind's table has a restrictive policy for that
-- role, made from the kind's entry at each start (src/db/tenant.rs), so
-- that a query missing its organization's condition still returns nothing
-- of another organization. Every other role keeps seeing every row.
--
-- The role belongs to the cluster, not to this database: made once, by the
-- first migration that runs; a login without CREATEROLE needs it made
-- beforehand (see docs/tenants.md).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'acctstream_organization') THEN
        BEGIN
            CREATE ROLE acctstream_organization NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;
        EXCEPTION
            -- Made meanwhile by the migration of another database.
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'acctstream needs the role acctstream_organization, and % may not create roles', current_user
                    USING HINT = format('As a superuser: CREATE ROLE acctstream_organization NOLOGIN; GRANT acctstream_organization TO %I;', current_user);
        END;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'acctstream_organization'
               AND (rolsuper OR rolbypassrls)) THEN
        RAISE EXCEPTION 'the role acctstream_organization must not be a superuser nor bypass row security';
    END IF;
    -- The service's login switches to it.
    IF NOT pg_has_role(current_user, 'acctstream_organization', 'MEMBER') THEN
        BEGIN
            EXECUTE format('GRANT acctstream_organization TO %I', current_user);
        EXCEPTION WHEN unique_violation THEN NULL;
        END;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO acctstream_organization', current_schema());
END
$$;

-- What a read of one organization reads besides the kinds' tables (their
-- grants and policies come from the registry): pseudonym filters resolve
-- through the identity directory; the change feed reads its bookkeeping.
GRANT SELECT ON identity_directory, acctstream_created_table, acctstream_change_horizon,
    acctstream_change_hour, acctstream_change_since, acctstream_change_summarised
    TO acctstream_organization;
