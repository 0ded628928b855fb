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
#      records from the start) beside the week window 2026-10-08 as CSV
#      (about the same number of rows), rows/s and ratios (median of RUNS);
#   2. p50/p95 ms of 500 keep-alive GETs: an empty poll (the `next` of
#      `after=latest`), and 304s of the month and of a day window
#      (`If-None-Match` with their ETag), beside a 200 of the day window;
#   3. server-sent events: commit -> event on the client, p50/p99/max ms of
#      100 single-row transactions 100 ms apart (psql);
#   4. what the position costs ingest: COPY of 1,000,000 rows into a copy of
#      auth_event with its change_xid column and index, and into one
#      without them (same rows, best of 3): rows/s and ratio.
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=${EVENTS:-5000000}
FEED_ROWS=${FEED_ROWS:-1000000}
RUNS=${RUNS:-3}
PORT=${PORT:-18084}
DATA_DIR=${DATA_DIR:-$PWD/bench/out/.data-changes}
TOKEN=bench-token
export ACCTSTREAM_PSEUDONYM_KEY=bench-key ACCTSTREAM_API_TOKENS=$TOKEN
export ACCTSTREAM_DATA_DIR=$DATA_DIR ACCTSTREAM_BIND=127.0.0.1:$PORT RUST_LOG=${RUST_LOG:-warn}
export ACCTSTREAM_RETENTION_DAYS=0
unset DATABASE_URL
for tool in curl psql python3; do
    command -v $tool >/dev/null || { echo "bench: needs $tool on PATH" >&2; exit 1; }
done

echo "building the release binary..." >&2
cargo build --release --quiet
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

B="http://127.0.0.1:$PORT/api/v1/statistics/events"
median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
total=$(psql "$PSQL_URL" -Atc "SELECT count(*) FROM auth_event")
week_rows=$(psql "$PSQL_URL" -Atc "SELECT count(*) FROM auth_event WHERE occurred_at >= '2026-10-08' AND occurred_at < '2026-10-15'")
echo "$total events; feed: the first $FEED_ROWS records in pages of 10,000; week 2026-10-08: $week_rows rows; median of $RUNS interleaved runs"
declare -a f_csv f_nd w_csv
for _ in $(seq "$RUNS"); do
    f_csv+=("$(python3 bench/changes.py feed "$B/changes?limit=10000" "$TOKEN" "$FEED_ROWS" csv)")
    f_nd+=("$(python3 bench/changes.py feed "$B/changes?limit=10000" "$TOKEN" "$FEED_ROWS" ndjson)")
    w_csv+=("$(python3 bench/changes.py window "$B/week/2026-10-08" "$TOKEN" csv)")
done
rate() { awk '{ printf "%.0f\n", $1 / $2 }'; }
fc=$(printf '%s\n' "${f_csv[@]}" | rate | median)
fn=$(printf '%s\n' "${f_nd[@]}" | rate | median)
wc_=$(printf '%s\n' "${w_csv[@]}" | rate | median)
printf '  %-34s %10s rows/s\n' "week window, CSV" "$wc_"
printf '  %-34s %10s rows/s  ratio %s\n' "feed, pages of 10,000, CSV" "$fc" "$(python3 -c "print(f'{$fc / $wc_:.2f}')")"
printf '  %-34s %10s rows/s  ratio %s\n' "feed, pages of 10,000, NDJSON" "$fn" "$(python3 -c "print(f'{$fn / $wc_:.2f}')")"

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

echo "ingest: COPY of 1,000,000 rows (best of 3):"
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
best() { sort -g | head -1; }
with=(); without=()
for _ in 1 2 3; do
    with+=("$(copy_into bench_with_position)")
    without+=("$(copy_into bench_without_position)")
done
w=$(printf '%s\n' "${with[@]}" | best)
wo=$(printf '%s\n' "${without[@]}" | best)
python3 - "$w" "$wo" <<'PY'
import sys
w, wo = map(float, sys.argv[1:])
print(f"  {'without the position':<34} {1e6 / wo:>10.0f} rows/s")
print(f"  {'with change_xid and its index':<34} {1e6 / w:>10.0f} rows/s  ratio {wo / w:.2f}")
PY
rm -f "$rows_file"
psql "$PSQL_URL" -qc "DROP TABLE bench_with_position, bench_without_position"
