-- Organizations (issue 28). Every record of the tables acctstream owns
-- belongs to one: `tenant`. What is stored before this migration, and
-- everything a deployment without tenants stores, is the default
-- organization's. A write takes the organization of the transaction that
-- makes it (`SET LOCAL acctstream.tenant`, set by ingest from its token)
-- by the column's default, so ingest's COPY stays as it was.
--
-- Adding a column with a non-volatile default rewrites nothing (the value
-- of the existing rows is kept in the catalog). The unique constraints on
-- `event_id` become per organization (two organizations may use the same
-- event ids; one never learns of the other's by a skipped duplicate): their
-- index is built once here, which holds ingest into the table for as long
-- as that takes (about a second per million events on a small server).

ALTER TABLE auth_event ADD COLUMN tenant text NOT NULL
    DEFAULT coalesce(nullif(current_setting('acctstream.tenant', true), ''), 'default');
ALTER TABLE auth_event ADD CONSTRAINT auth_event_tenant_event_id_key UNIQUE (tenant, event_id);
ALTER TABLE auth_event DROP CONSTRAINT auth_event_event_id_key;

ALTER TABLE client_event ADD COLUMN tenant text NOT NULL
    DEFAULT coalesce(nullif(current_setting('acctstream.tenant', true), ''), 'default');
ALTER TABLE client_event ADD CONSTRAINT client_event_tenant_event_id_key UNIQUE (tenant, event_id);
ALTER TABLE client_event DROP CONSTRAINT client_event_event_id_key;

-- An access belongs to the organization of the token that made it.
ALTER TABLE access_audit ADD COLUMN tenant text NOT NULL DEFAULT 'default';
