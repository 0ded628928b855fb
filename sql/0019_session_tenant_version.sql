-- The version of the session rules (issue 28): bumped by every change to
-- acctstream_session_tenant. A session window's tag for one organization
-- includes it, since an edit of the rules moves sessions between
-- organizations without any change to radacct (which the change feed and
-- its summary would see).
CREATE TABLE acctstream_session_tenant_version (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version   bigint  NOT NULL
);
INSERT INTO acctstream_session_tenant_version (version) VALUES (0);

CREATE FUNCTION acctstream_session_tenant_bump() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE acctstream_session_tenant_version SET version = version + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER acctstream_session_tenant_bump
AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON acctstream_session_tenant
FOR EACH STATEMENT EXECUTE FUNCTION acctstream_session_tenant_bump();
