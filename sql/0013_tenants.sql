-- Organizations (issue 28). Every record of the tables acctstream owns
-- belongs to one: `tenant`. What is stored before this migration, and
-- everything a deployment without tenants stores, is the default
-- organization's (the column's default, a constant: a write that names no
-- organization pays nothing for it); ingest writes a token's organization
-- when it is another one.
--
-- Adding a column with a constant default rewrites nothing (the value of
-- the existing rows is kept in the catalog). The unique constraints on
-- `event_id` become per organization (two organizations may use the same
-- event ids; one never learns of the other's by a skipped duplicate): their
-- index is built once here, which holds ingest into the table for as long
-- as that takes (about a second per million events on a small server).

ALTER TABLE auth_event ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE auth_event ADD CONSTRAINT auth_event_tenant_event_id_key UNIQUE (tenant, event_id);
ALTER TABLE auth_event DROP CONSTRAINT auth_event_event_id_key;

ALTER TABLE client_event ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE client_event ADD CONSTRAINT client_event_tenant_event_id_key UNIQUE (tenant, event_id);
ALTER TABLE client_event DROP CONSTRAINT client_event_event_id_key;

-- An access belongs to the organization of the token that made it.
ALTER TABLE access_audit ADD COLUMN tenant text NOT NULL DEFAULT 'default';
