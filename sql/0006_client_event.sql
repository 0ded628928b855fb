-- Wi-Fi client connectivity events, as a Wi-Fi controller reports them
-- (Success, Failure and Intermediate). The fields of one event type only are
-- nullable columns (not a JSON column): every field has a fixed type, the
-- window query selects columns straight into the encoders, and filters
-- (failure_code, category_code, ...) are plain column comparisons.
-- client_mac (normalised, lowercase with colons) and client_ip are personal
-- identifiers: they leave the service only as pseudonyms unless the token
-- holds the identities scope.
CREATE TABLE client_event (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at           timestamptz NOT NULL,
    client_mac            text        NOT NULL,
    event_type            text        NOT NULL
        CHECK (event_type IN ('Success', 'Failure', 'Intermediate')),
    protocol              text,
    ssid                  text,
    bssid                 text,
    channel               integer,
    ap_name               text,
    -- Intermediate events.
    category_code         integer,
    type_code             integer,
    sub_type_code         integer,
    category              text,
    event_description     text,
    sub_event_description text,
    vlan                  integer,
    client_ip             text,
    rssi                  integer,
    -- Success and Failure events (epoch milliseconds, as controllers send them).
    association_ts        bigint,
    authentication_ts     bigint,
    network_ts            bigint,
    -- Failure events.
    failure_code          integer,
    failure               text,
    sub_failure_code      integer,
    sub_failure           text,
    -- Success events (seconds).
    dhcp_latency          integer,
    aaa_latency           integer,
    dns_latency           integer,
    event_id              text
        CONSTRAINT client_event_event_id_length CHECK (char_length(event_id) BETWEEN 1 AND 200)
        CONSTRAINT client_event_event_id_key UNIQUE
);

-- Windows: a range scan in (occurred_at, id) order, either direction.
CREATE INDEX client_event_occurred_at_id_idx ON client_event (occurred_at, id);
-- One client's history, newest first.
CREATE INDEX client_event_client_idx ON client_event (client_mac, occurred_at DESC, id DESC);
