#!/usr/bin/env bash
# Retention by partition against batched deletes (issue 25, item 3), on
# radacct, in one run:
#
#   bench/partitions.sh                  # 2,000,000 sessions in the month that goes
#   SESSIONS=500000 bench/partitions.sh
#
# Makes an embedded cluster under bench/out/.data-partitions anew, starts
# `acctstream serve` (its own retention off), then twice, first on a radacct
# as FreeRADIUS ships it, then on one partitioned by month as
# docs/scaling.md shows (each made by the script, as an operator would, so
# neither has the change feed's triggers; `migrate` builds acctstream's
# indexes):
#   - loads SESSIONS closed sessions (100 users, 100 devices) into the month
#     three months back (M1) and 1,000 into the month after it (M2, kept);
#   - waits for the identity directory to take them in;
#   - times `acctstream purge` with the cutoff at M2's start
#     (ACCTSTREAM_RETENTION_DAYS), and reads the WAL it wrote
#     (pg_current_wal_lsn before and after) and the sessions left;
# then the same purge once more, with nothing left to delete: the pass's
# own time (its other rules, the identity directory, the command's start),
# which is also subtracted from both.
# The batched pass pauses 50 ms between its batches of 5,000 rows (so that
# ingest and reads are never starved): its time is also printed without
# those pauses.
set -euo pipefail
cd "$(dirname "$0")/.."

SESSIONS=${SESSIONS:-2000000}
PORT=${PORT:-18086}
DATA_DIR=${DATA_DIR:-$PWD/bench/out/.data-partitions}
export ACCTSTREAM_PSEUDONYM_KEY=bench-key ACCTSTREAM_API_TOKENS=bench-token
export ACCTSTREAM_DATA_DIR=$DATA_DIR ACCTSTREAM_BIND=127.0.0.1:$PORT RUST_LOG=${RUST_LOG:-warn}
export ACCTSTREAM_RETENTION_DAYS=0
unset DATABASE_URL
for tool in curl psql python3; do
    command -v $tool >/dev/null || { echo "bench: needs $tool on PATH" >&2; exit 1; }
done

echo "building the release binary..." >&2
cargo build --release --quiet
BIN=target/release/acctstream
rm -rf "$DATA_DIR"
mkdir -p "$DATA_DIR"
PSQL_URL="postgresql://acctstream@/acctstream?host=$DATA_DIR/sock&port=5432"
"$BIN" serve &
SERVER=$!
trap 'kill -INT $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break
    sleep 0.2
done
sql() { psql "$PSQL_URL" -qAtX -v ON_ERROR_STOP=1 "$@"; }

this_month=$(date -u +%Y-%m-01)
m1=$(date -u -d "$this_month -3 months" +%Y-%m-%d)
m2=$(date -u -d "$this_month -2 months" +%Y-%m-%d)
m3=$(date -u -d "$this_month -1 months" +%Y-%m-%d)
today=$(date -u +%Y-%m-%d)
days=$(( ($(date -u -d "$today" +%s) - $(date -u -d "$m2" +%s)) / 86400 ))

# SESSIONS closed sessions spread over M1's first 27 days, 1,000 in M2.
load() {
    sql -v n="$SESSIONS" -v m1="$m1" -v m2="$m2" <<'SQL'
INSERT INTO radacct (acctsessionid, acctuniqueid, username, nasipaddress, nasportid,
    acctstarttime, acctupdatetime, acctstoptime, acctsessiontime, acctinputoctets,
    acctoutputoctets, callingstationid, acctterminatecause)
SELECT 'S' || g, md5(g::text), 'user' || (g % 100), '10.0.0.1', (g % 48)::text,
    t, t + interval '1 hour', t + interval '1 hour', 3600, g, g,
    '00:00:00:00:00:' || lpad(to_hex(g % 100), 2, '0'), 'User-Request'
FROM generate_series(1, :n) AS g,
     LATERAL (SELECT :'m1'::timestamptz + (g::float8 / :n * 27 * 86400) * interval '1 second' AS t) AS at;
INSERT INTO radacct (acctsessionid, acctuniqueid, username, nasipaddress,
    acctstarttime, acctupdatetime, acctstoptime, acctsessiontime, callingstationid)
SELECT 'K' || g, md5('K' || g), 'user' || (g % 100), '10.0.0.1',
    t, t + interval '1 hour', t + interval '1 hour', 3600, '00:00:00:00:01:00'
FROM generate_series(1, 1000) AS g,
     LATERAL (SELECT :'m2'::timestamptz + g * interval '1 minute' AS t) AS at;
SQL
}

# Until the identity directory has taken every row in.
settle() {
    for _ in $(seq 1 1800); do
        behind=$(sql -c "SELECT (SELECT max(radacctid) FROM radacct) > \
            coalesce((SELECT position FROM acctstream_directory_cursor WHERE source = 'radacct'), 0)")
        [ "$behind" = f ] && return
        sleep 1
    done
    echo "bench: the identity directory did not catch up" >&2
    exit 1
}

# Times one purge: "seconds wal_bytes sessions_left".
purge() {
    sql -c "CHECKPOINT" >/dev/null
    local lsn start end
    lsn=$(sql -c "SELECT pg_current_wal_lsn()")
    start=$(date +%s.%N)
    ACCTSTREAM_RETENTION_DAYS=$days "$BIN" purge > "$DATA_DIR/purge.out"
    end=$(date +%s.%N)
    echo "$(python3 -c "print(f'{$end - $start:.2f}')") \
$(sql -c "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn')") \
$(sql -c "SELECT count(*) FROM radacct")"
}

echo "radacct: $SESSIONS closed sessions in $m1's month (M1), 1,000 in $m2's (kept); cutoff $m2 ($days days)"

# radacct made anew: FreeRADIUS's columns, and either its keys and indexes
# ($1 = plain) or the partitioned form (a partition for each of the last
# four months and a default one).
make_table() {
    local keys="RadAcctId bigserial PRIMARY KEY, AcctSessionId text NOT NULL, AcctUniqueId text NOT NULL UNIQUE,"
    local start="AcctStartTime timestamptz," tail=");" parts=""
    if [ "$1" = partitioned ]; then
        keys="RadAcctId bigserial, AcctSessionId text NOT NULL, AcctUniqueId text NOT NULL,"
        start="AcctStartTime timestamptz NOT NULL,"
        tail=", PRIMARY KEY (RadAcctId, AcctStartTime), UNIQUE (AcctUniqueId, AcctStartTime)) PARTITION BY RANGE (AcctStartTime);"
        parts="CREATE TABLE radacct_m1 PARTITION OF radacct FOR VALUES FROM ('$m1') TO ('$m2');
CREATE TABLE radacct_m2 PARTITION OF radacct FOR VALUES FROM ('$m2') TO ('$m3');
CREATE TABLE radacct_m3 PARTITION OF radacct FOR VALUES FROM ('$m3') TO ('$this_month');
CREATE TABLE radacct_m4 PARTITION OF radacct FOR VALUES FROM ('$this_month') TO ('$this_month'::date + interval '1 month');
CREATE TABLE radacct_default PARTITION OF radacct DEFAULT;"
    fi
    sql <<SQL
DROP TABLE radacct CASCADE;
DELETE FROM acctstream_created_table WHERE name = 'radacct';
TRUNCATE acctstream_change_radacct;
UPDATE acctstream_directory_cursor SET position = 0 WHERE source = 'radacct';
CREATE TABLE radacct ($keys
    UserName text, Realm text, NASIPAddress inet NOT NULL, NASPortId text, NASPortType text,
    $start AcctUpdateTime timestamptz, AcctStopTime timestamptz,
    AcctInterval bigint, AcctSessionTime bigint, AcctAuthentic text, ConnectInfo_start text,
    ConnectInfo_stop text, AcctInputOctets bigint, AcctOutputOctets bigint,
    CalledStationId text, CallingStationId text, AcctTerminateCause text, ServiceType text,
    FramedProtocol text, FramedIPAddress inet, FramedIPv6Address inet, FramedIPv6Prefix inet,
    FramedInterfaceId text, DelegatedIPv6Prefix inet, Class text$tail
$parts
CREATE INDEX radacct_active_session_idx ON radacct (AcctUniqueId) WHERE AcctStopTime IS NULL;
CREATE INDEX radacct_bulk_close ON radacct (NASIPAddress, AcctStartTime) WHERE AcctStopTime IS NULL;
CREATE INDEX radacct_start_user_idx ON radacct (AcctStartTime, UserName);
CREATE INDEX radacct_calss_idx ON radacct (Class);
SQL
    "$BIN" migrate >/dev/null
}

make_table plain
load
settle
read -r b_time b_wal b_left <<<"$(purge)"
b_rows=$(grep -o "deleted [0-9]* rows of sessions" "$DATA_DIR/purge.out" | grep -o "[0-9]*")
b_pauses=$(python3 -c "print(f'{($b_rows // 5000 + 1) * 0.05:.2f}')")
printf '  %-46s %8s s (%s s without its pauses), WAL %s MB, %s sessions left\n' \
    "batched deletes (radacct as FreeRADIUS ships it)" "$b_time" \
    "$(python3 -c "print(f'{$b_time - $b_pauses:.2f}')")" \
    "$(python3 -c "print(f'{$b_wal / 1e6:.1f}')")" "$b_left"

make_table partitioned
load
settle
read -r p_time p_wal p_left <<<"$(purge)"
grep -q "dropped the partition public.radacct_m1 of sessions whole" "$DATA_DIR/purge.out" \
    || { echo "bench: the partition was not dropped:" >&2; cat "$DATA_DIR/purge.out" >&2; exit 1; }
printf '  %-46s %8s s, WAL %s MB, %s sessions left\n' \
    "dropping the partition (radacct by month)" "$p_time" \
    "$(python3 -c "print(f'{$p_wal / 1e6:.2f}')")" "$p_left"
# The pass's own time (the other rules, the identity directory, starting
# the command): the same purge again, with nothing left to drop or delete.
read -r e_time e_wal e_left <<<"$(purge)"
printf '  %-46s %8s s, WAL %s MB, %s sessions left\n' \
    "the same pass again (nothing to delete)" "$e_time" \
    "$(python3 -c "print(f'{$e_wal / 1e6:.2f}')")" "$e_left"
python3 -c "print(f'  partition / batches: time {$p_time / $b_time:.3f} ({$p_time / ($b_time - $b_pauses):.3f} without the pauses), WAL {$p_wal / $b_wal:.4f}')"
python3 -c "print(f'  less the pass itself: the drop {$p_time - $e_time:.2f} s, the batches {$b_time - $e_time:.2f} s ({$b_time - $b_pauses - $e_time:.2f} s without the pauses): {($p_time - $e_time) / ($b_time - $e_time):.4f} ({($p_time - $e_time) / ($b_time - $b_pauses - $e_time):.4f})')"
