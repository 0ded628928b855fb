-- Organizations of RADIUS sessions (issue 28). radacct is FreeRADIUS's and
-- is never altered, so a session's organization is derived from the row by
-- rules acctstream keeps here: the first rule (by `position`) whose every
-- given condition holds names it (the NAS's address within `nas`, the
-- session's `realm` equal), else the default organization. The rules apply
-- alike to rows FreeRADIUS writes itself and to rows acctstream ingests.
--
-- Reads compare `acctstream_session_tenant(nasipaddress, realm)`; that
-- function is rewritten from the rules whenever they change (the trigger
-- below), as one CASE expression that PostgreSQL inlines into each query:
-- no lookup per row.
CREATE TABLE acctstream_session_tenant (
    position integer PRIMARY KEY,
    nas      cidr,
    realm    text,
    tenant   text NOT NULL
        CONSTRAINT acctstream_session_tenant_name CHECK (tenant ~ '^[A-Za-z0-9._-]{1,64}$'),
    CONSTRAINT acctstream_session_tenant_condition CHECK (nas IS NOT NULL OR realm IS NOT NULL)
);

CREATE FUNCTION acctstream_session_tenant(nas inet, realm text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$ SELECT 'default'::text $$;

CREATE FUNCTION acctstream_session_tenant_compile() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    cases text := '';
    rule record;
BEGIN
    FOR rule IN SELECT * FROM acctstream_session_tenant ORDER BY position LOOP
        cases := cases || ' WHEN '
            || concat_ws(' AND ',
                   CASE WHEN rule.nas IS NOT NULL
                        THEN '$1 <<= ' || quote_literal(rule.nas::text) || '::cidr' END,
                   CASE WHEN rule.realm IS NOT NULL
                        THEN '$2 = ' || quote_literal(rule.realm) END)
            || ' THEN ' || quote_literal(rule.tenant);
    END LOOP;
    EXECUTE 'CREATE OR REPLACE FUNCTION acctstream_session_tenant(nas inet, realm text) '
        || 'RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $f$ SELECT '
        || CASE WHEN cases = '' THEN '''default''::text'
                ELSE 'CASE' || cases || ' ELSE ''default'' END' END
        || ' $f$';
    RETURN NULL;
END
$$;

CREATE TRIGGER acctstream_session_tenant_compile
AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON acctstream_session_tenant
FOR EACH STATEMENT EXECUTE FUNCTION acctstream_session_tenant_compile();
