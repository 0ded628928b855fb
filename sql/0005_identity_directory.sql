-- Which raw identity (user id, MAC address, IP address, normalised) a
-- pseudonym stands for, so that listings can be narrowed by pseudonym while
-- the database never holds the pseudonymisation key. Written by whoever
-- stores identities (ingest, the demo), in the same transaction.
CREATE TABLE identity_directory (
    pseudonym text PRIMARY KEY CHECK (pseudonym ~ '^[0-9a-f]{64}$'),
    raw       text NOT NULL
);
