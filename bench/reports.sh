#!/usr/bin/env bash
# Report benchmark: the accounting reports over a month of 5,000,000 events,
# against recomputing the same figures from the raw events with psql, in one run.
#
#   bench/reports.sh                 # embedded PostgreSQL under bench/.data (shared with stream.sh)
#   DATA_DIR=/tmp/x bench/reports.sh
#   DATABASE_URL=postgres://... bench/reports.sh
#
# Seeds EVENTS (default 5,000,000) events over October 2026 exactly like
# bench/stream.sh (and reuses its data directory), starts the release build,
# then prints, best of RUNS, the time of
#   GET /api/v1/accounting/report/2026-10                 (JSON and CSV)
#   GET /api/v1/accounting/verify/daily-users/2026-10     (JSON and CSV)
# (target <= 200 ms each), the time psql needs to compute the monthly figures
# from auth_event with count(DISTINCT ...) (what the rollups save), and
# whether the service's figures equal that independent count.
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=${EVENTS:-5000000}
RUNS=${RUNS:-5}
PORT=${PORT:-18082}
DATA_DIR=${DATA_DIR:-$PWD/bench/.data}
MONTH=2026-10
FROM="2026-10-01T00:00:00Z"; TO="2026-11-01T00:00:00Z"
TOKEN=bench-token
export ACCTSTREAM_PSEUDONYM_KEY=bench-key ACCTSTREAM_API_TOKENS=$TOKEN
export ACCTSTREAM_DATA_DIR=$DATA_DIR ACCTSTREAM_BIND=127.0.0.1:$PORT RUST_LOG=${RUST_LOG:-warn}
# The seeded month is in the past: keep its raw events for the comparison.
export ACCTSTREAM_RETENTION_DAYS=0

for tool in curl psql python3; do
    command -v $tool >/dev/null || { echo "bench: needs $tool on PATH" >&2; exit 1; }
done

echo "building the release binary..." >&2
cargo build --release --quiet
BIN=target/release/acctstream

if [ -n "${DATABASE_URL:-}" ]; then
    PSQL_URL=$DATABASE_URL
    have=$(psql "$PSQL_URL" -Atc "SELECT count(*) FROM auth_event WHERE occurred_at >= '$FROM' AND occurred_at < '$TO'" 2>/dev/null || echo 0)
    if [ "$have" -lt "$EVENTS" ]; then "$BIN" seed --rows events="$EVENTS" --days 31 --end "$TO"; fi
else
    mkdir -p "$DATA_DIR"
    marker="$DATA_DIR/seeded-$EVENTS"
    if [ ! -e "$marker" ]; then
        rm -rf "$DATA_DIR"; mkdir -p "$DATA_DIR"
        "$BIN" seed --rows events="$EVENTS" --days 31 --end "$TO"
        touch "$marker"
    fi
    PSQL_URL="postgresql://acctstream@/acctstream?host=$DATA_DIR/sock&port=5432"
fi

# serve applies pending migrations first: on a data directory seeded before
# the usage rollups existed, that includes their one-time backfill.
started=$(date +%s.%N)
"$BIN" serve &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 1200); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
    kill -0 $SERVER 2>/dev/null || { echo "bench: serve exited" >&2; exit 1; }
    sleep 0.1
done
ready_s=$(python3 -c "print(round($(date +%s.%N) - $started, 1))")

BASE="http://127.0.0.1:$PORT/api/v1/accounting"
AUTH="Authorization: Bearer $TOKEN"
best() { sort -g | head -1; }
ms() { python3 -c "print(round($1 * 1000, 1))"; }

timed() {  # $1 = path, $2 = format
    for _ in $(seq "$RUNS"); do
        curl -sf -o /dev/null -w '%{time_total}\n' -H "$AUTH" "$BASE/$1?format=$2"
    done | best
}

# The very first request also opens the pool's first database connection.
first_s=$(curl -sf -o /dev/null -w '%{time_total}' -H "$AUTH" "$BASE/report/$MONTH")

month_rows=$(psql "$PSQL_URL" -Atc "SELECT count(*) FROM auth_event WHERE occurred_at >= '$FROM' AND occurred_at < '$TO'")
report_json=$(timed "report/$MONTH" json)
report_csv=$(timed "report/$MONTH" csv)
daily_json=$(timed "verify/daily-users/$MONTH" json)
daily_csv=$(timed "verify/daily-users/$MONTH" csv)

# The same monthly figures straight from the raw events, as CSV lines in the
# report's order (count descending, then method), then the total.
t0=$(date +%s.%N)
independent=$(psql "$PSQL_URL" -At -F, <<SQL
SELECT '$MONTH', auth_method_type, count(DISTINCT user_id) FROM auth_event
WHERE occurred_at >= '$FROM' AND occurred_at < '$TO'
GROUP BY 2 ORDER BY 3 DESC, auth_method_type COLLATE "C";
SELECT '$MONTH', 'Total', count(DISTINCT user_id) FROM auth_event
WHERE occurred_at >= '$FROM' AND occurred_at < '$TO';
SQL
)
raw_s=$(python3 -c "print(round($(date +%s.%N) - $t0, 2))")
service=$(curl -sf -H "$AUTH" "$BASE/report/$MONTH?format=csv" | tr -d '\r' | tail -n +2)
if [ "$service" = "$independent" ]; then same=yes; else same=NO; fi
daily_rows=$(curl -sf -H "$AUTH" "$BASE/verify/daily-users/$MONTH?format=csv" | tail -n +2 | wc -l)

line() { printf '  %-48s %s\n' "$1" "$2"; }
echo "acctstream report benchmark ($(nproc) cores; $month_rows events in $MONTH; best of $RUNS)"
line "accounting report $MONTH, JSON" "$(ms "$report_json") ms   (target <= 200)"
line "accounting report $MONTH, CSV" "$(ms "$report_csv") ms   (target <= 200)"
line "accounting report, first request after start" "$(ms "$first_s") ms   (opens a connection)"
line "daily users $MONTH ($daily_rows rows), JSON" "$(ms "$daily_json") ms   (target <= 200)"
line "daily users $MONTH ($daily_rows rows), CSV" "$(ms "$daily_csv") ms   (target <= 200)"
line "psql count(DISTINCT) over the raw month" "${raw_s} s   (what the rollups save)"
line "report equals the independent count" "$same"
line "serve ready after" "${ready_s} s   (includes any pending migration)"
[ "$same" = yes ]
