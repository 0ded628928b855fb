#!/usr/bin/env bash
# The change feed (issue 23), in one run against the release build:
#
#   bench/changes.sh                # embedded PostgreSQL under bench/out/.data-changes (seeded once)
#   EVENTS=1000000 bench/changes.sh # smaller
#
# Seeds EVENTS (default 5,000,000) authentication events over October 2026
# (once), starts the service and waits for its background work (the usage
# rollups and the change summary of the freshly loaded rows), then prints:
#   1. the feed's throughput in pages of 10,000 (CSV and NDJSON, FEED_ROWS
#      records from the start) beside the week window 2026-10-08 in the
#      same representation (about the same number of rows), rows/s and
#      ratios (median of RUNS, the four measurements interleaved; read by
#      bench/client.rs, which consumes bodies in constant memory as a
#      streaming client does), and
#      where a page's time goes: the median wait for its headers, and the
#      rate of the bodies alone beside the window's;
#   2. p50/p95 ms of 500 keep-alive GETs: an empty poll (the `next` of
#      `after=latest`), and 304s of the month and of a day window
#      (`If-None-Match` with their ETag), beside a 200 of the day window;
#   3. server-sent events: commit -> event on the client, p50/p99/max ms of
#      100 single-row transactions 100 ms apart (psql);
#   4. what the position costs ingest: POST /api/v1/events of 200,000
#      events (NDJSON, one request, a November day each) with auth_event's
#      change_xid default and index, and with them taken away (best of 3
#      each, alternately; with it both while the change summary of the
#      background job catches up and with the summary paused); and the
#      table alone: COPY of 1,000,000 rows into a
#      copy of auth_event with and without them. Rows/s and ratios.
# The table is vacuumed after seeding (what autovacuum does to an
# insert-only table), so that index-only scans need no heap visits.
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=${EVENTS:-5000000}
FEED_ROWS=${FEED_ROWS:-1000000}
RUNS=${RUNS:-3}
PORT=${PORT:-18084}
DATA_DIR=${DATA_DIR:-$PWD/bench/out/.data-changes}
TOKEN=bench-token
WRITE_TOKEN=bench-write-token
export ACCTSTREAM_PSEUDONYM_KEY=bench-key ACCTSTREAM_API_TOKENS="$TOKEN,$WRITE_TOKEN:read+write"
export ACCTSTREAM_DATA_DIR=$DATA_DIR ACCTSTREAM_BIND=127.0.0.1:$PORT RUST_LOG=${RUST_LOG:-warn}
export ACCTSTREAM_RETENTION_DAYS=0
unset DATABASE_URL
for tool in curl psql python3; do
    command -v $tool >/dev/null || { echo "bench: needs $tool on PATH" >&2; exit 1; }
done

echo "building the release binary and the bench's client..." >&2
cargo build --release --quiet
mkdir -p bench/out
rustc -O --edition 2021 bench/client.rs -o bench/out/client
BIN=target/release/acctstream
mkdir -p "$DATA_DIR"
marker="$DATA_DIR/seeded-$EVENTS"
if [ ! -e "$marker" ]; then
    rm -rf "$DATA_DIR"; mkdir -p "$DATA_DIR"
    "$BIN" seed --rows events="$EVENTS" --days 31 --end 2026-11-01T00:00:00Z
    touch "$marker"
fi
PSQL_URL="postgresql://acctstream@/acctstream?host=$DATA_DIR/sock&port=5432"
"$BIN" serve &
SERVER=$!
trap 'kill -INT $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break
    sleep 0.2
done

# Background work first: the rollups and the change summary take a core
# while they catch up with freshly loaded rows.
echo "waiting for the rollups and the change summary to catch up..." >&2
for _ in $(seq 1 3600); do
    behind=$(psql "$PSQL_URL" -Atc "SELECT (SELECT count(*) FROM usage_rollup_queue) + \
        (SELECT count(*) FROM auth_event WHERE (change_xid, id) > \
            (SELECT xid, id FROM acctstream_change_summarised WHERE kind = 'events'))" 2>/dev/null || echo 1)
    [ "$behind" = 0 ] && break
    sleep 1
done
[ "$behind" = 0 ] || { echo "bench: background work did not finish" >&2; exit 1; }
# What an earlier run ingested goes (November), then the table is vacuumed.
psql "$PSQL_URL" -qc "DELETE FROM auth_event WHERE occurred_at >= '2026-11-01'"
psql "$PSQL_URL" -qc "VACUUM (ANALYZE) auth_event"

B="http://127.0.0.1:$PORT/api/v1/statistics/events"
median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
total=$(psql "$PSQL_URL" -Atc "SELECT count(*) FROM auth_event")
week_rows=$(psql "$PSQL_URL" -Atc "SELECT count(*) FROM auth_event WHERE occurred_at >= '2026-10-08' AND occurred_at < '2026-10-15'")
echo "$total events; feed: the first $FEED_ROWS records in pages of 10,000; week 2026-10-08: $week_rows rows; median of $RUNS interleaved runs"
declare -a f_csv f_nd w_csv w_nd
CSV=text/csv ND=application/x-ndjson
for _ in $(seq "$RUNS"); do
    f_csv+=("$(bench/out/client feed "$B/changes?limit=10000" "$TOKEN" $CSV "$FEED_ROWS")")
    w_csv+=("$(bench/out/client window "$B/week/2026-10-08" "$TOKEN" $CSV)")
    f_nd+=("$(bench/out/client feed "$B/changes?limit=10000" "$TOKEN" $ND "$FEED_ROWS")")
    w_nd+=("$(bench/out/client window "$B/week/2026-10-08" "$TOKEN" $ND)")
done
rate() { awk '{ printf "%.0f\n", $1 / $2 }'; }
fc=$(printf '%s\n' "${f_csv[@]}" | rate | median)
fn=$(printf '%s\n' "${f_nd[@]}" | rate | median)
wc_=$(printf '%s\n' "${w_csv[@]}" | rate | median)
wn=$(printf '%s\n' "${w_nd[@]}" | rate | median)
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
printf '  %-34s %10s rows/s\n' "week window, CSV" "$wc_"
printf '  %-34s %10s rows/s  ratio %s\n' "feed, pages of 10,000, CSV" "$fc" "$(ratio "$fc" "$wc_")"
printf '  %-34s %10s rows/s\n' "week window, NDJSON" "$wn"
printf '  %-34s %10s rows/s  ratio %s\n' "feed, pages of 10,000, NDJSON" "$fn" "$(ratio "$fn" "$wn")"
# Where a page's time goes: the wait for its headers (request, head, the
# first rows: hand-offs between client, service and PostgreSQL), then its
# body, which streams at the window's pace when the ratio of the bodies
# alone is about 1.
split() {  # the feed's runs -> "ttfb_ms body_ratio"
    local t b
    t=$(printf '%s\n' "$@" | awk '{ print $4 }' | median)
    b=$(printf '%s\n' "$@" | awk '{ printf "%.0f\n", $1 / $5 }' | median)
    echo "$t $b"
}
read -r tc bc <<<"$(split "${f_csv[@]}")"
read -r tn bn <<<"$(split "${f_nd[@]}")"
printf '  %-34s CSV %s ms, NDJSON %s ms (p50 of a run'"'"'s pages, median of runs)\n' "a page's wait for its headers" "$tc" "$tn"
printf '  %-34s CSV %s rows/s (ratio %s), NDJSON %s rows/s (ratio %s)\n' "the pages' bodies alone" \
    "$bc" "$(ratio "$bc" "$wc_")" "$bn" "$(ratio "$bn" "$wn")"

echo "latency (p50 ms, p95 ms), 500 keep-alive GETs each:"
empty=$(curl -sf -H "Authorization: Bearer $TOKEN" "$B/changes?after=latest" | python3 -c "import json,sys; print(json.load(sys.stdin)['links']['next'])")
printf '  %-34s %s\n' "empty poll (200)" "$(python3 bench/changes.py latency "$empty" "$TOKEN" 500 200)"
for window in month/2026-10 day/2026-10-10; do
    tag=$(python3 bench/changes.py etag "$B/$window" "$TOKEN")
    printf '  %-34s %s\n' "$window, If-None-Match (304)" "$(python3 bench/changes.py latency "$B/$window" "$TOKEN" 500 304 "$tag")"
done
printf '  %-34s %s\n' "day/2026-10-10, a full 200" "$(python3 bench/changes.py latency "$B/day/2026-10-10" "$TOKEN" 20 200)"

echo "server-sent events, commit -> event (p50, p99, max ms of 100):"
printf '  %s\n' "$(python3 bench/changes.py sse "$B/changes?after=latest" "$TOKEN" "$PSQL_URL" 100)"

echo "ingest through the service: POST /api/v1/events, 200,000 events in one request (best of 3):"
body=$(mktemp)
python3 - "$body" <<'PY'
import json, sys
with open(sys.argv[1], "w") as out:
    for i in range(200_000):
        out.write(json.dumps({"timestamp": f"2026-11-DAYT{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z",
                              "authMethodType": "PASSWORD", "authMethodName": f"password.{i % 3}",
                              "authRequestOrigin": f"CN=Appl-{i % 50},DC=bench", "userId": f"user{i % 5000}@example.com"}) + "\n")
PY
# Each POST a day of its own in November (kept: no deletes, no vacuum
# between runs), run after run with and without the position alternately.
post() {  # $1 = the day of November
    sed "s/2026-11-DAY/2026-11-$1/" "$body" > "$body.day"
    curl -sf -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $WRITE_TOKEN" \
        -H 'Content-Type: application/x-ndjson' --data-binary @"$body.day" "http://127.0.0.1:$PORT/api/v1/events"
}
without_position() {
    psql "$PSQL_URL" -qc "DROP INDEX auth_event_change_idx; ALTER TABLE auth_event ALTER COLUMN change_xid SET DEFAULT '1'" >/dev/null
    post "$1"
    psql "$PSQL_URL" -qc "CREATE INDEX auth_event_change_idx ON auth_event (change_xid, id) \
        WITH (fillfactor = 100, deduplicate_items = off); \
        ALTER TABLE auth_event ALTER COLUMN change_xid SET DEFAULT pg_current_xact_id()" >/dev/null
}
# The change summary (background job) reads every new row once: paused
# for one measurement by holding its row lock (its runs skip a locked kind).
paused() {
    psql "$PSQL_URL" -qc "BEGIN; SELECT 1 FROM acctstream_change_summarised WHERE kind = 'events' FOR UPDATE; SELECT pg_sleep(6); COMMIT" >/dev/null &
    local holder=$!
    sleep 0.5
    post "$1"
    wait "$holder"
}
s_with=(); s_without=(); s_paused=()
for run in 1 2 3; do
    s_with+=("$(post $((9 + 3 * run)))")
    s_paused+=("$(paused $((10 + 3 * run)))")
    s_without+=("$(without_position $((11 + 3 * run)))")
done
rm -f "$body" "$body.day"
best() { printf '%s\n' "$@" | sort -g | head -1; }
python3 - "$(best "${s_with[@]}")" "$(best "${s_paused[@]}")" "$(best "${s_without[@]}")" <<'PY'
import sys
w, p, wo = map(float, sys.argv[1:])
print(f"  {'without the position':<44} {2e5 / wo:>10.0f} events/s")
print(f"  {'with it, the change summary paused':<44} {2e5 / p:>10.0f} events/s  ratio {wo / p:.2f}")
print(f"  {'with it, the change summary running':<44} {2e5 / w:>10.0f} events/s  ratio {wo / w:.2f}")
PY

echo "the table alone: COPY of 1,000,000 rows (best of 3):"
psql "$PSQL_URL" -q <<'SQL'
DROP TABLE IF EXISTS bench_with_position, bench_without_position;
CREATE TABLE bench_with_position (LIKE auth_event INCLUDING ALL);
CREATE TABLE bench_without_position (LIKE auth_event INCLUDING ALL);
ALTER TABLE bench_without_position DROP COLUMN change_xid;
SQL
rows_file=$(mktemp)
psql "$PSQL_URL" -qc "\\copy (SELECT occurred_at, auth_method_type, auth_method_name, auth_request_origin, user_id FROM auth_event ORDER BY id LIMIT 1000000) TO '$rows_file'"
copy_into() {
    psql "$PSQL_URL" -qc "TRUNCATE $1" >/dev/null
    local t0 t1
    t0=$(date +%s.%N)
    psql "$PSQL_URL" -qc "\\copy $1 (occurred_at, auth_method_type, auth_method_name, auth_request_origin, user_id) FROM '$rows_file'"
    t1=$(date +%s.%N)
    python3 -c "print($t1 - $t0)"
}
with=(); without=()
for _ in 1 2 3; do
    with+=("$(copy_into bench_with_position)")
    without+=("$(copy_into bench_without_position)")
done
w=$(best "${with[@]}")
wo=$(best "${without[@]}")
python3 - "$w" "$wo" <<'PY'
import sys
w, wo = map(float, sys.argv[1:])
print(f"  {'without the position':<34} {1e6 / wo:>10.0f} rows/s")
print(f"  {'with change_xid and its index':<34} {1e6 / w:>10.0f} rows/s  ratio {wo / w:.2f}")
PY
rm -f "$rows_file"
psql "$PSQL_URL" -qc "DROP TABLE bench_with_position, bench_without_position"
psql "$PSQL_URL" -qc "DELETE FROM auth_event WHERE occurred_at >= '2026-11-01'"
