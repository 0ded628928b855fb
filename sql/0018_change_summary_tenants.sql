-- The change summary per organization (issue 28): a window read for one
-- organization is tagged (ETag) by its own records' changes only, so its
-- tag neither moves with another organization's writes nor tells of them.
-- Stamps made before belong to the default organization; an organization's
-- records summarised before keep their windows' tags stable until they
-- change, which then stamps them under their organization.
ALTER TABLE acctstream_change_hour ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE acctstream_change_hour DROP CONSTRAINT acctstream_change_hour_pkey,
    ADD PRIMARY KEY (kind, hour, tenant);
ALTER TABLE acctstream_change_since ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE acctstream_change_since DROP CONSTRAINT acctstream_change_since_pkey,
    ADD PRIMARY KEY (kind, hour, tenant);
