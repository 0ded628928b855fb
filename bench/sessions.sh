#!/usr/bin/env bash
# Sessions benchmark: network access sessions on radacct, in one run.
#
#   bench/sessions.sh                          # 10 M sessions, 50,000 open (seeded once)
#   SESSIONS=1000000 OPEN=5000 bench/sessions.sh
#
# Seeds SESSIONS closed sessions over October 2026 (200,000 users, 300,000
# devices, 8 NAS) plus OPEN open ones heard of in the last five minutes,
# into an embedded cluster under bench/out/.data-sessions, then prints:
#   - the identity directory's background catch-up with the seeded rows, as
#     far as it was left to do when measuring starts (reset it to
#     measure again: TRUNCATE identity_directory and set the radacct
#     position in acctstream_directory_cursor to 0);
#   - the week window 2026-10-08 (sessions overlapping it) as CSV and JSON,
#     rows/s against psql's COPY (SELECT * ... same rows, same order, read
#     the way the service reads them) TO STDOUT, median of RUNS interleaved
#     runs, and their ratio;
#   - the time to the first byte and to the first record of a window of
#     each period, from a minute to the month of all the seeded sessions;
#   - p50/p95 latency of one session, one user's October history and
#     `online` (its first page of 100, a page after a cursor, and all OPEN
#     sessions in one page), keep-alive GETs;
#   - RADIUS ingest: REQUESTS accounting requests (Start : Interim : Stop =
#     1 : 4 : 1) posted in batches of 1,000 by one client and by two at once
#     (two FreeRADIUS servers), requests/s, against the same requests applied
#     as FreeRADIUS 3.2's queries.conf statements by one psql and by two
#     (one statement per request, as rlm_sql runs them).
set -euo pipefail
cd "$(dirname "$0")/.."

SESSIONS=${SESSIONS:-10000000}
OPEN=${OPEN:-50000}
RUNS=${RUNS:-5}
REQUESTS=${REQUESTS:-60000}
PORT=${PORT:-18082}
DATA_DIR=${DATA_DIR:-$PWD/bench/out/.data-sessions}
OUT=bench/out/sessions
TOKEN=bench-token
WRITE_TOKEN=bench-write-token
KEY=bench-key
export ACCTSTREAM_PSEUDONYM_KEY=$KEY ACCTSTREAM_API_TOKENS="$TOKEN,$WRITE_TOKEN:read+write"
export ACCTSTREAM_DATA_DIR=$DATA_DIR ACCTSTREAM_BIND=127.0.0.1:$PORT RUST_LOG=${RUST_LOG:-warn}
export ACCTSTREAM_RETENTION_DAYS=0
unset DATABASE_URL

for tool in curl psql python3; do
    command -v $tool >/dev/null || { echo "bench: needs $tool on PATH" >&2; exit 1; }
done
echo "building the release binary..." >&2
cargo build --release --quiet
BIN=target/release/acctstream
PY=bench/sessions.py
mkdir -p "$DATA_DIR" "$OUT"
PSQL_URL="postgresql://acctstream@/acctstream?host=$DATA_DIR/sock&port=5432"

"$BIN" serve &
SERVER=$!
trap 'kill -INT $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break
    sleep 0.2
done

marker="$DATA_DIR/seeded-$SESSIONS-$OPEN"
if [ ! -e "$marker" ]; then
    echo "seeding $SESSIONS sessions and $OPEN open ones (once)..." >&2
    psql "$PSQL_URL" -q -v ON_ERROR_STOP=1 <<SQL
TRUNCATE radacct, identity_directory;
UPDATE acctstream_directory_cursor SET position = 0 WHERE source = 'radacct';
INSERT INTO radacct (acctsessionid, acctuniqueid, username, nasipaddress, nasportid, nasporttype,
    acctstarttime, acctupdatetime, acctstoptime, acctinterval, acctsessiontime, acctauthentic,
    acctinputoctets, acctoutputoctets, calledstationid, callingstationid, acctterminatecause,
    servicetype, framedipaddress)
SELECT to_hex(i), md5(i::text), 'user' || (i * 7 % 200000) || '@example.com',
       ('10.0.' || (i % 8) || '.1')::inet, (i % 48)::text, 'Wireless-802.11',
       s, s + len, s + len, 300, extract(epoch FROM len)::int8, 'RADIUS',
       (i % 1000) * 100000, (i % 1000) * 400000, '00-11-74-00-00-0' || (i % 8) || ':Corp',
       lpad(to_hex(i * 13 % 300000), 12, '0'), 'User-Request', 'Framed-User',
       ('10.100.' || (i / 250 % 250) || '.' || (i % 250 + 1))::inet
FROM generate_series(1::bigint, $SESSIONS) AS i,
     LATERAL (SELECT timestamptz '2026-10-01' + i * (interval '31 days' / $SESSIONS) AS s,
                     (300 + i * 7919 % 14000) * interval '1 second' AS len) AS x;
INSERT INTO radacct (acctsessionid, acctuniqueid, username, nasipaddress, nasportid, nasporttype,
    acctstarttime, acctupdatetime, acctinterval, acctsessiontime, acctinputoctets,
    acctoutputoctets, callingstationid, servicetype)
SELECT 'open-' || i, md5('open' || i), 'user' || (i * 11 % 200000) || '@example.com',
       ('10.0.' || (i % 8) || '.1')::inet, (i % 48)::text, 'Wireless-802.11',
       now() - (i % 28800) * interval '1 second', now() - (i % 290) * interval '1 second', 300,
       i % 28800, 0, 0, lpad(to_hex(i * 17 % 300000), 12, '0'), 'Framed-User'
FROM generate_series(1::bigint, $OPEN) AS i;
ANALYZE radacct;
SQL
    touch "$marker"
fi

AUTH="Authorization: Bearer $TOKEN"
median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
calc() { python3 -c "print($1)"; }

# The identity directory catches up with the seeded rows in serve's
# background job (issue 27, item 6): wait until its position reaches the
# newest row before measuring, and print how long that took from here (0
# when it was done before).
user=user14@example.com
user_p=$(python3 $PY pseudonym "$KEY" "$user")
echo "identity directory catch-up (serve's background job)..." >&2
t0=$(date +%s.%N)
caught_up_sql="SELECT coalesce((SELECT position FROM acctstream_directory_cursor WHERE source = 'radacct'), -1) >= (SELECT coalesce(max(radacctid), 0) FROM radacct)"
until [ "$(psql "$PSQL_URL" -Atc "$caught_up_sql")" = "t" ]; do sleep 1; done
catch_up_s=$(python3 -c "print(round($(date +%s.%N) - $t0, 1))")
# Let the vacuum the catch-up calls for finish before measuring.
psql "$PSQL_URL" -qc "VACUUM ANALYZE identity_directory" >/dev/null

FROM="2026-10-08T00:00:00Z"; TO="2026-10-15T00:00:00Z"
WHERE="(acctstoptime IS NULL OR acctstoptime > '$FROM' OR acctstarttime >= '$FROM') AND acctstarttime < '$TO'"
week_rows=$(psql "$PSQL_URL" -Atc "SELECT count(*) FROM radacct WHERE $WHERE")
# The baseline reads the same rows as the service does (issue 27, item 7):
# from a bound on the start (the window's start less the length past which
# only the 100 longest closed sessions are longer), the open sessions that
# started before it, and those longest ones, merged in order.
longest=$(psql "$PSQL_URL" -Atc "SELECT coalesce((SELECT acctstoptime - acctstarttime FROM radacct WHERE acctstoptime - acctstarttime IS NOT NULL ORDER BY acctstoptime - acctstarttime DESC OFFSET 100 LIMIT 1), '0')")
B="(timestamptz '$FROM' - interval '$longest')"
ORDER="ORDER BY acctstarttime, radacctid"
# With the planner settings of the service's request connections
# (db::pool::REQUEST_PLANNER): the same plan.
REQUEST_PLANNER="-c jit=off -c max_parallel_workers_per_gather=0 -c enable_seqscan=off -c enable_bitmapscan=off"
PARTS="(SELECT * FROM radacct WHERE acctstarttime >= $B $ORDER) UNION ALL (SELECT * FROM radacct WHERE acctstoptime IS NULL AND acctstarttime < $B $ORDER) UNION ALL (SELECT * FROM radacct WHERE acctstoptime - acctstarttime > timestamptz '$FROM' - $B AND acctstarttime < $B $ORDER)"
copy_s=(); csv_s=(); json_s=()
for _ in $(seq 1 "$RUNS"); do
    t0=$(date +%s.%N)
    PGOPTIONS="$REQUEST_PLANNER" psql "$PSQL_URL" -qc "COPY (SELECT * FROM ($PARTS) AS radacct WHERE $WHERE $ORDER) TO STDOUT WITH CSV" >/dev/null
    t1=$(date +%s.%N)
    copy_s+=("$(calc "$t1 - $t0")")
    csv_s+=("$(curl -s -o /dev/null -w '%{time_total}' -H "$AUTH" -H 'Accept: text/csv' "http://127.0.0.1:$PORT/api/v1/statistics/sessions/week/2026-10-08")")
    json_s+=("$(curl -s -o /dev/null -w '%{time_total}' -H "$AUTH" "http://127.0.0.1:$PORT/api/v1/statistics/sessions/week/2026-10-08")")
done
copy=$(printf '%s\n' "${copy_s[@]}" | median)
csv=$(printf '%s\n' "${csv_s[@]}" | median)
json=$(printf '%s\n' "${json_s[@]}" | median)
echo "sessions: $SESSIONS closed + $OPEN open; week window 2026-10-08: $week_rows sessions, median of $RUNS"
echo "  identity directory catch-up      $catch_up_s s   (serve's background job, the rows past its position when the wait began; 0 when done before)"
printf '  %-28s %12.0f rows/s  ratio %s\n' "COPY (psql, raw)" "$(calc "$week_rows / $copy")" "1.00"
printf '  %-28s %12.0f rows/s  ratio %.2f\n' "acctstream CSV" "$(calc "$week_rows / $csv")" "$(calc "$copy / $csv")"
printf '  %-28s %12.0f rows/s  ratio %.2f\n' "acctstream JSON" "$(calc "$week_rows / $json")" "$(calc "$copy / $json")"

# Time to the first byte and to the first record of windows of every
# period (CSV, a new connection each, closed after the first record).
echo "time to the first byte and to the first record (median ms, worst ms), CSV, $RUNS GETs each:"
for window in minute/2026-10-08T12:00 hour/2026-10-08T12 day/2026-10-08 week/2026-10-08 \
              "week/2026-10-15?sort=-" month/2026-10; do
    printf '  %-28s %s\n' "$window" "$(python3 $PY ttfb "http://127.0.0.1:$PORT/api/v1/statistics/sessions/$window" "$TOKEN" "$RUNS" \
        | awk '{ printf "first byte %6.1f %6.1f   first record %6.1f %6.1f", $1, $2, $3, $4 }')"
done

# The open sessions were last heard of when seeded: make them current.
psql "$PSQL_URL" -qc "UPDATE radacct SET acctupdatetime = now() - (radacctid % 290) * interval '1 second' WHERE acctstoptime IS NULL AND acctsessionid LIKE 'open-%'"
one_id=$(psql "$PSQL_URL" -Atc "SELECT radacctid FROM radacct WHERE acctsessionid = to_hex($SESSIONS / 2)")
# The fifth page of `online` (its link, from four pages on).
online_next=/api/v1/sessions/online
for _ in 1 2 3 4; do
    online_next=$(curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT$online_next" \
        | python3 -c 'import json,sys; link=json.load(sys.stdin)["nextLink"]; print(link[link.index("/api/"):])')
done
echo "latency (p50 ms, p95 ms, body bytes), 200 keep-alive GETs each:"
for what in "one session|/api/v1/sessions/$one_id" \
            "one user, October|/api/v1/users/$user_p/sessions?from=2026-10-01&to=2026-10-31" \
            "online (first page of 100)|/api/v1/sessions/online" \
            "online, page after a cursor|$online_next" \
            "online, all in one page|/api/v1/sessions/online?limit=1000000"; do
    label=${what%%|*}; path=${what#*|}
    n=200; [ "$label" = "online, all in one page" ] && n=20
    printf '  %-28s %s\n' "$label" "$(python3 $PY latency "http://127.0.0.1:$PORT$path" "$TOKEN" $n)"
done

echo "RADIUS ingest, $REQUESTS requests (Start : Interim : Stop = 1 : 4 : 1):"
python3 $PY requests "$OUT" "$REQUESTS" 1000 >/dev/null
# The rows of earlier runs (of this bench, or of the last one) go, and so do
# their dead tuples, so every run starts from the same table.
psql "$PSQL_URL" -qc "DELETE FROM radacct WHERE acctsessionid LIKE 'B%'"
psql "$PSQL_URL" -qc "VACUUM radacct"
for clients in 1 2; do
    ingest_s=(); sql_s=()
    for _ in $(seq 1 "$RUNS"); do
        psql "$PSQL_URL" -qc "DELETE FROM radacct WHERE acctsessionid LIKE 'B%'"
        ingest_s+=("$(python3 $PY post "http://127.0.0.1:$PORT/api/v1/accounting/radius" "$WRITE_TOKEN" "$OUT" $clients)")
        psql "$PSQL_URL" -qc "DELETE FROM radacct WHERE acctsessionid LIKE 'B%'"
        t0=$(date +%s.%N)
        if [ "$clients" = 1 ]; then
            psql "$PSQL_URL" -q -f "$OUT/freeradius.sql" >/dev/null
        else
            psql "$PSQL_URL" -q -f "$OUT/freeradius-0.sql" >/dev/null &
            first=$!
            psql "$PSQL_URL" -q -f "$OUT/freeradius-1.sql" >/dev/null
            wait "$first"
        fi
        t1=$(date +%s.%N)
        sql_s+=("$(calc "$REQUESTS / ($t1 - $t0)")")
    done
    ingest=$(printf '%s\n' "${ingest_s[@]}" | median)
    sql=$(printf '%s\n' "${sql_s[@]}" | median)
    printf '  %-28s %12.0f requests/s\n' "FreeRADIUS SQL, $clients psql" "$sql"
    printf '  %-28s %12.0f requests/s  ratio %.2f\n' "acctstream, $clients client(s)" "$ingest" "$(calc "$ingest / $sql")"
done
