#!/usr/bin/env bash
# Streaming benchmark: the service against psql's COPY ... TO STDOUT, in one run.
#
#   bench/stream.sh                 # embedded PostgreSQL under bench/.data (seeded once)
#   DATABASE_URL=postgres://... bench/stream.sh   # a given database (seeded if its month is empty)
#
# Seeds EVENTS (default 5,000,000) events over October 2026, starts the
# release build, then prints rows/s for a week window as CSV and JSON, the COPY
# baseline for the same window and columns, their ratios, the time to first
# byte of the month window, and the service's peak RSS while streaming the
# whole month at full speed and to a client limited to 1 MB/s.
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=${EVENTS:-5000000}
RUNS=${RUNS:-3}
SLOW_SECONDS=${SLOW_SECONDS:-30}
PORT=${PORT:-18080}
DATA_DIR=${DATA_DIR:-$PWD/bench/.data}
MONTH=2026-10
WEEK=2026-10-08
WEEK_FROM="2026-10-08T00:00:00Z"; WEEK_TO="2026-10-15T00:00:00Z"
TOKEN=bench-token
export ACCTSTREAM_PSEUDONYM_KEY=bench-key ACCTSTREAM_API_TOKENS=$TOKEN
export ACCTSTREAM_DATA_DIR=$DATA_DIR ACCTSTREAM_BIND=127.0.0.1:$PORT RUST_LOG=${RUST_LOG:-warn}

for tool in curl psql; do
    command -v $tool >/dev/null || { echo "bench: needs $tool on PATH" >&2; exit 1; }
done

echo "building the release binary..." >&2
cargo build --release --quiet
BIN=target/release/acctstream

if [ -n "${DATABASE_URL:-}" ]; then
    PSQL_URL=$DATABASE_URL
    have=$(psql "$PSQL_URL" -Atc "SELECT count(*) FROM auth_event WHERE occurred_at >= '$MONTH-01' AND occurred_at < '$MONTH-01'::date + interval '1 month'" 2>/dev/null || echo 0)
    if [ "$have" -lt "$EVENTS" ]; then "$BIN" seed --events "$EVENTS" --days 31 --end 2026-11-01T00:00:00Z; fi
else
    mkdir -p "$DATA_DIR"
    marker="$DATA_DIR/seeded-$EVENTS"
    if [ ! -e "$marker" ]; then
        rm -rf "$DATA_DIR"; mkdir -p "$DATA_DIR"
        "$BIN" seed --events "$EVENTS" --days 31 --end 2026-11-01T00:00:00Z
        touch "$marker"
    fi
    PSQL_URL="postgresql://acctstream@/acctstream?host=$DATA_DIR/sock&port=5432"
fi

"$BIN" serve &
SERVER=$!
trap 'kill -INT $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
    sleep 0.1
done

BASE="http://127.0.0.1:$PORT/api/v1/statistics/events"
AUTH="Authorization: Bearer $TOKEN"
now() { date +%s.%N; }
best() { sort -g | head -1; }
calc() { python3 -c "print($1)"; }

week_rows=$(psql "$PSQL_URL" -Atc "SELECT count(*) FROM auth_event WHERE occurred_at >= '$WEEK_FROM' AND occurred_at < '$WEEK_TO'")
month_rows=$(psql "$PSQL_URL" -Atc "SELECT count(*) FROM auth_event WHERE occurred_at >= '$MONTH-01' AND occurred_at < '$MONTH-01'::date + interval '1 month'")

copy_run() {
    local t0; t0=$(now)
    psql "$PSQL_URL" -qc "COPY (SELECT occurred_at, auth_method_type, auth_method_name, auth_request_origin, user_id FROM auth_event WHERE occurred_at >= '$WEEK_FROM' AND occurred_at < '$WEEK_TO' ORDER BY occurred_at, id) TO STDOUT WITH CSV" >/dev/null
    calc "$(now) - $t0"
}
http_run() {  # $1 = Accept
    curl -sf -o /dev/null -w '%{time_total}\n' -H "$AUTH" -H "Accept: $1" "$BASE/week/$WEEK"
}

echo "week $WEEK: $week_rows rows; month $MONTH: $month_rows rows; best of $RUNS runs" >&2
copy_s=$(for _ in $(seq "$RUNS"); do copy_run; done | best)
csv_s=$(for _ in $(seq "$RUNS"); do http_run text/csv; done | best)
json_s=$(for _ in $(seq "$RUNS"); do http_run application/json; done | best)

reset_peak() { echo 5 > /proc/$SERVER/clear_refs; }
peak_mb() { awk '/VmHWM/ {printf "%.1f", $2/1024}' /proc/$SERVER/status; }

reset_peak
read -r ttfb month_s < <(curl -sf -o /dev/null -w '%{time_starttransfer} %{time_total}\n' -H "$AUTH" -H 'Accept: text/csv' "$BASE/month/$MONTH")
rss_fast=$(peak_mb)
reset_peak
curl -s -o /dev/null --limit-rate 1M --max-time "$SLOW_SECONDS" -H "$AUTH" -H 'Accept: text/csv' "$BASE/month/$MONTH" || true
rss_slow=$(peak_mb)

copy_rate=$(calc "round($week_rows / $copy_s)")
csv_rate=$(calc "round($week_rows / $csv_s)")
json_rate=$(calc "round($week_rows / $json_s)")
cat <<TXT
acctstream streaming benchmark ($(nproc) cores; $week_rows rows in the week window, $month_rows in the month)
  COPY (SELECT ...) TO STDOUT WITH CSV   $copy_rate rows/s   (baseline, ${copy_s}s)
  service CSV, week                      $csv_rate rows/s   ratio $(calc "round($csv_rate / $copy_rate, 2)")   (target >= 0.5)
  service JSON, week                     $json_rate rows/s   ratio $(calc "round($json_rate / $copy_rate, 2)")   (target >= 0.4)
  month CSV: time to first byte          $(calc "round($ttfb * 1000)") ms   (target <= 100), whole month in ${month_s}s
  peak RSS, month at full speed          $rss_fast MB   (target <= 64)
  peak RSS, month at 1 MB/s for ${SLOW_SECONDS}s     $rss_slow MB   (target <= 64)
TXT
