-- Quarantined RADIUS requests per organization (issue 28): each keeps the
-- organization of the token that sent it (the default one for those kept
-- before, and for a token of every organization); a token of one lists its
-- own only.
ALTER TABLE radius_rejected ADD COLUMN tenant text NOT NULL DEFAULT 'default';

-- The second layer (0015): a token of one organization reads the
-- quarantine as acctstream_organization.
GRANT SELECT ON radius_rejected TO acctstream_organization;
ALTER TABLE radius_rejected ENABLE ROW LEVEL SECURITY;
CREATE POLICY acctstream_everyone ON radius_rejected AS PERMISSIVE FOR ALL TO PUBLIC
    USING (true) WITH CHECK (true);
CREATE POLICY acctstream_one_organization ON radius_rejected AS RESTRICTIVE FOR SELECT
    TO acctstream_organization
    USING (tenant = (SELECT current_setting('acctstream.tenant')));
