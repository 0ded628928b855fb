-- The change feed (issue 23). Every row version of every kind has a
-- position: the id of the top-level transaction that wrote it (xid8, never
-- wrapping) and the row's id. Tables acctstream owns keep it in a column
-- `change_xid`; a table another program writes (FreeRADIUS's radacct) is
-- never altered and gets a side table instead. Both are made per kind by
-- src/db/changes.rs from the kind's description; this file holds what they
-- share.

-- What deletions took from each kind's feed: how many statements deleted
-- rows (the epoch, carried by every cursor) and the greatest position of a
-- deleted row. A cursor handed out before a deletion that took a row
-- beyond it may have missed that row: the feed answers 410 for it.
CREATE TABLE acctstream_change_horizon (
    kind     text   PRIMARY KEY,
    epoch    bigint NOT NULL,
    upto_xid xid8   NOT NULL,
    upto_id  bigint NOT NULL
);

-- Records that a statement deleted rows of `kind`, the last of them (in
-- feed order) at (`xid`, `id`).
CREATE FUNCTION acctstream_change_forget(kind text, xid xid8, id bigint) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO acctstream_change_horizon AS h (kind, epoch, upto_xid, upto_id)
    VALUES (kind, 1, xid, id)
    ON CONFLICT ON CONSTRAINT acctstream_change_horizon_pkey DO UPDATE SET
        epoch = h.epoch + 1,
        upto_xid = CASE WHEN (excluded.upto_xid, excluded.upto_id) > (h.upto_xid, h.upto_id)
                        THEN excluded.upto_xid ELSE h.upto_xid END,
        upto_id  = CASE WHEN (excluded.upto_xid, excluded.upto_id) > (h.upto_xid, h.upto_id)
                        THEN excluded.upto_id ELSE h.upto_id END
$$;

-- A row acctstream owns that is updated takes the position of the
-- transaction that updated it.
CREATE FUNCTION acctstream_change_restamp() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.change_xid := pg_current_xact_id();
    RETURN NEW;
END
$$;

-- The tables of other programs that acctstream created itself: their
-- change triggers are installed without asking. On a table that was there
-- before, an operator installs them (`acctstream migrate --track-changes`).
-- Migration 0007 creates radacct only when absent, in the transaction that
-- records 0007 as applied: the table's catalog row and that record then
-- share their creating transaction (when they do not, say because radacct
-- was FreeRADIUS's, it is not ours).
CREATE TABLE acctstream_created_table (name text PRIMARY KEY);
INSERT INTO acctstream_created_table
SELECT 'radacct' FROM pg_class AS c, acctstream_migration AS m
WHERE c.oid = to_regclass('radacct') AND m.version = 7 AND c.xmin = m.xmin;

-- What conditional windows (ETag, If-None-Match) read instead of a
-- window's rows. The summary of each kind's feed, kept by the background
-- job in batches (src/db/changes.rs, `Summary`): for records at instants,
-- per UTC hour of their time, the position of the last batch that changed
-- a record of that hour; for spans (sessions), per UTC hour of their
-- start, the position of the last batch that changed a span starting then,
-- which changes every window from there on (only the latest such stamp at
-- or before each hour is kept). A window's tag is made of the greatest
-- stamp that covers it, what the summary has not reached yet, and the
-- kind's deletions.
CREATE TABLE acctstream_change_hour (
    kind text        NOT NULL,
    hour timestamptz NOT NULL,
    xid  xid8        NOT NULL,
    id   bigint      NOT NULL,
    PRIMARY KEY (kind, hour)
);
CREATE TABLE acctstream_change_since (
    kind text        NOT NULL,
    hour timestamptz NOT NULL,
    xid  xid8        NOT NULL,
    id   bigint      NOT NULL,
    PRIMARY KEY (kind, hour)
);
-- How far the summary of each kind's feed went.
CREATE TABLE acctstream_change_summarised (
    kind text   PRIMARY KEY,
    xid  xid8   NOT NULL,
    id   bigint NOT NULL
);
