-- Authentication events: one row per SSO ticket granted.
-- user_id is the raw identifier (a DN or an e-mail address); it never leaves the
-- service un-pseudonymised.
CREATE TABLE auth_event (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at         timestamptz NOT NULL,
    auth_method_type    text        NOT NULL,
    auth_method_name    text        NOT NULL,
    auth_request_origin text        NOT NULL,
    user_id             text        NOT NULL
);

-- Every window query is a range scan in (occurred_at, id) order, forwards or
-- backwards: this index serves both without a sort.
CREATE INDEX auth_event_occurred_at_id_idx ON auth_event (occurred_at, id);
