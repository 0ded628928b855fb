#!/usr/bin/env bash
# Streaming benchmark: the service against psql's COPY ... TO STDOUT, in one run.
#
#   bench/stream.sh                 # embedded PostgreSQL under bench/.data (seeded once)
#   DATABASE_URL=postgres://... bench/stream.sh   # a given database (seeded if its month is empty)
#
# Seeds EVENTS (default 5,000,000) authentication events and CLIENT_EVENTS
# (default the same) Wi-Fi client events over October 2026, starts the
# release build, then prints rows/s for a week window of each kind as CSV,
# JSON and NDJSON, the COPY baseline for the same window and columns, their
# ratios, CSV with the formula guard off (a second server), the time to first
# byte of the month window, and the service's peak RSS while streaming the
# whole month at full speed and to a client limited to 1 MB/s.
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=${EVENTS:-5000000}
CLIENT_EVENTS=${CLIENT_EVENTS:-$EVENTS}
RUNS=${RUNS:-5}
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
    if [ "$have" -lt "$EVENTS" ]; then "$BIN" seed --rows events="$EVENTS" --rows client_events="$CLIENT_EVENTS" --days 31 --end 2026-11-01T00:00:00Z; fi
else
    mkdir -p "$DATA_DIR"
    marker="$DATA_DIR/seeded-$EVENTS-$CLIENT_EVENTS"
    if [ ! -e "$marker" ]; then
        rm -rf "$DATA_DIR"; mkdir -p "$DATA_DIR"
        "$BIN" seed --rows events="$EVENTS" --rows client_events="$CLIENT_EVENTS" --days 31 --end 2026-11-01T00:00:00Z
        touch "$marker"
    fi
    PSQL_URL="postgresql://acctstream@/acctstream?host=$DATA_DIR/sock&port=5432"
fi

wait_for() {
    for _ in $(seq 1 300); do
        curl -s -o /dev/null "http://127.0.0.1:$1/healthz" && return 0
        sleep 0.1
    done
    echo "bench: the server on port $1 did not start" >&2
    exit 1
}
"$BIN" serve &
SERVER=$!
UNGUARDED=
trap 'kill -INT $UNGUARDED $SERVER 2>/dev/null; wait $UNGUARDED $SERVER 2>/dev/null || true' EXIT
wait_for "$PORT"
# A second server with the CSV formula guard off, on the same database
# (the embedded cluster's socket, or DATABASE_URL).
DATABASE_URL=${DATABASE_URL:-$PSQL_URL} ACCTSTREAM_CSV_FORMULA_GUARD=off ACCTSTREAM_BIND=127.0.0.1:$((PORT + 1)) "$BIN" serve &
UNGUARDED=$!
wait_for "$((PORT + 1))"

BASE="http://127.0.0.1:$PORT/api/v1/statistics/events"
CLIENT_BASE="http://127.0.0.1:$PORT/api/v1/statistics/client-events"
AUTH="Authorization: Bearer $TOKEN"
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}'; }
calc() { python3 -c "print($1)"; }

week_rows=$(psql "$PSQL_URL" -Atc "SELECT count(*) FROM auth_event WHERE occurred_at >= '$WEEK_FROM' AND occurred_at < '$WEEK_TO'")
month_rows=$(psql "$PSQL_URL" -Atc "SELECT count(*) FROM auth_event WHERE occurred_at >= '$MONTH-01' AND occurred_at < '$MONTH-01'::date + interval '1 month'")

client_week_rows=$(psql "$PSQL_URL" -Atc "SELECT count(*) FROM client_event WHERE occurred_at >= '$WEEK_FROM' AND occurred_at < '$WEEK_TO'")
# The client-event columns, as the service selects them.
CLIENT_COLUMNS="occurred_at, client_mac, event_type, protocol, ssid, bssid, channel, ap_name, category_code, type_code, sub_type_code, category, event_description, sub_event_description, vlan, client_ip, rssi, association_ts, authentication_ts, network_ts, failure_code, failure, sub_failure_code, sub_failure, dhcp_latency, aaa_latency, dns_latency, event_id"

copy_run() {  # $1 = columns, $2 = table
    local t0; t0=$(now)
    psql "$PSQL_URL" -qc "COPY (SELECT $1 FROM $2 WHERE occurred_at >= '$WEEK_FROM' AND occurred_at < '$WEEK_TO' ORDER BY occurred_at, id) TO STDOUT WITH CSV" >/dev/null
    calc "$(now) - $t0"
}
http_run() {  # $1 = Accept, $2 = base URL
    curl -sf -o /dev/null -w '%{time_total}\n' -H "$AUTH" -H "Accept: $1" "${2:-$BASE}/week/$WEEK"
}

echo "week $WEEK: $week_rows events, $client_week_rows client events; month $MONTH: $month_rows rows; medians of $RUNS interleaved runs" >&2
# Compressed CSV: the coding the client asks for alone; rows/s, and the
# compression ratio (plain bytes / bytes on the wire).
plain_bytes=$(curl -sf -o /dev/null -w '%{size_download}' -H "$AUTH" -H 'Accept: text/csv' "$BASE/week/$WEEK")
coded_run() {  # $1 = coding; prints "<seconds> <bytes>"
    curl -sf -o /dev/null -w '%{time_total} %{size_download}\n' -H "$AUTH" -H 'Accept: text/csv' \
        -H "Accept-Encoding: $1" "$BASE/week/$WEEK"
}
EVENT_COLUMNS="occurred_at, auth_method_type, auth_method_name, auth_request_origin, user_id"
# Every measurement once per run, in the same order, RUNS times: machine
# noise then falls on all of them alike, and the median of each is kept.
declare -a r_copy r_csv r_json r_ndjson r_unguarded r_gzip r_zstd r_br r_ccopy r_ccsv r_cjson r_cndjson
for _ in $(seq "$RUNS"); do
    r_copy+=("$(copy_run "$EVENT_COLUMNS" auth_event)")
    r_csv+=("$(http_run text/csv)")
    r_json+=("$(http_run application/json)")
    r_ndjson+=("$(http_run application/x-ndjson)")
    r_unguarded+=("$(http_run text/csv "http://127.0.0.1:$((PORT + 1))/api/v1/statistics/events")")
    r_gzip+=("$(coded_run gzip)")
    r_zstd+=("$(coded_run zstd)")
    r_br+=("$(coded_run br)")
    r_ccopy+=("$(copy_run "$CLIENT_COLUMNS" client_event)")
    r_ccsv+=("$(http_run text/csv "$CLIENT_BASE")")
    r_cjson+=("$(http_run application/json "$CLIENT_BASE")")
    r_cndjson+=("$(http_run application/x-ndjson "$CLIENT_BASE")")
done
med() { printf '%s\n' "$@" | median; }
copy_s=$(med "${r_copy[@]}"); csv_s=$(med "${r_csv[@]}"); json_s=$(med "${r_json[@]}")
ndjson_s=$(med "${r_ndjson[@]}"); unguarded_s=$(med "${r_unguarded[@]}")
client_copy_s=$(med "${r_ccopy[@]}"); client_csv_s=$(med "${r_ccsv[@]}")
client_json_s=$(med "${r_cjson[@]}"); client_ndjson_s=$(med "${r_cndjson[@]}")
declare -A coded_s coded_bytes
for coding in gzip zstd br; do
    declare -n runs="r_$coding"
    line=$(med "${runs[@]}")
    coded_s[$coding]=${line% *}
    coded_bytes[$coding]=${line#* }
    unset -n runs
done

# CPU time (user + system, clock ticks) of the service, and of every
# PostgreSQL process (the one backend streaming dominates; the others idle).
TICK=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
pg_ticks() {
    local sum=0 pid
    for pid in $(pgrep -x postgres); do
        sum=$((sum + $(ticks "$pid" 2>/dev/null || echo 0)))
    done
    echo "$sum"
}
# µs of CPU per row, medians over RUNS downloads: "<service> <database>
# <median of the per-download ratios>". Machine noise moves single figures
# by ±10 %.
cpu_per_row() {  # $1 = Accept, $2 = base URL, $3 = rows
    local s0 d0 s1 d1 pairs=()
    for _ in $(seq 1 "$RUNS"); do
        s0=$(ticks "$SERVER"); d0=$(pg_ticks)
        http_run "$1" "$2" >/dev/null
        s1=$(ticks "$SERVER"); d1=$(pg_ticks)
        pairs+=("$((s1 - s0)),$((d1 - d0))")
    done
    python3 -c "
import statistics as st, sys
pairs = [tuple(map(int, p.split(','))) for p in sys.argv[3:]]
rows, tick = int(sys.argv[1]), int(sys.argv[2])
per_row = lambda t: t * 1e6 / tick / rows
print(round(st.median(per_row(s) for s, _ in pairs), 2), round(st.median(per_row(d) for _, d in pairs), 2),
      round(st.median(s / d for s, d in pairs if d), 2))" "$3" "$TICK" "${pairs[@]}"
}
read -r cpu_csv_s cpu_csv_db cpu_csv_r < <(cpu_per_row text/csv "$BASE" "$week_rows")
read -r cpu_json_s cpu_json_db cpu_json_r < <(cpu_per_row application/json "$BASE" "$week_rows")
read -r cpu_client_csv_s cpu_client_csv_db cpu_client_csv_r < <(cpu_per_row text/csv "$CLIENT_BASE" "$client_week_rows")
read -r cpu_client_json_s cpu_client_json_db cpu_client_json_r < <(cpu_per_row application/json "$CLIENT_BASE" "$client_week_rows")

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
ndjson_rate=$(calc "round($week_rows / $ndjson_s)")
unguarded_rate=$(calc "round($week_rows / $unguarded_s)")
client_copy_rate=$(calc "round($client_week_rows / $client_copy_s)")
client_csv_rate=$(calc "round($client_week_rows / $client_csv_s)")
client_json_rate=$(calc "round($client_week_rows / $client_json_s)")
client_ndjson_rate=$(calc "round($client_week_rows / $client_ndjson_s)")
ratio() { calc "round($1 / $2, 2)"; }
cat <<TXT
acctstream streaming benchmark ($(nproc) cores; $week_rows events and $client_week_rows client events in the week window, $month_rows events in the month)
authentication events (5 columns):
  COPY (SELECT ...) TO STDOUT WITH CSV   $copy_rate rows/s   (baseline, ${copy_s}s)
  service CSV, week                      $csv_rate rows/s   ratio $(ratio "$csv_rate" "$copy_rate")   (target >= 0.9)
  service CSV, formula guard off         $unguarded_rate rows/s   ratio $(ratio "$unguarded_rate" "$copy_rate")   (guard on / off: $(ratio "$csv_rate" "$unguarded_rate"))
  service JSON, week                     $json_rate rows/s   ratio $(ratio "$json_rate" "$copy_rate")   (target >= 0.8)
  service NDJSON, week                   $ndjson_rate rows/s   ratio $(ratio "$ndjson_rate" "$copy_rate")
  service CSV, gzip                      $(calc "round($week_rows / ${coded_s[gzip]})") rows/s   ratio $(ratio "$week_rows / ${coded_s[gzip]}" "$copy_rate")   (compressed $(ratio "$plain_bytes" "${coded_bytes[gzip]}"):1; target >= 0.6)
  service CSV, zstd                      $(calc "round($week_rows / ${coded_s[zstd]})") rows/s   ratio $(ratio "$week_rows / ${coded_s[zstd]}" "$copy_rate")   (compressed $(ratio "$plain_bytes" "${coded_bytes[zstd]}"):1; target >= 0.8)
  service CSV, br only offered           $(calc "round($week_rows / ${coded_s[br]})") rows/s   ratio $(ratio "$week_rows / ${coded_s[br]}" "$copy_rate")   (sent uncompressed: $(ratio "$plain_bytes" "${coded_bytes[br]}"):1)
Wi-Fi client events (28 columns):
  COPY (SELECT ...) TO STDOUT WITH CSV   $client_copy_rate rows/s   (baseline, ${client_copy_s}s)
  service CSV, week                      $client_csv_rate rows/s   ratio $(ratio "$client_csv_rate" "$client_copy_rate")
  service JSON, week                     $client_json_rate rows/s   ratio $(ratio "$client_json_rate" "$client_copy_rate")
  service NDJSON, week                   $client_ndjson_rate rows/s   ratio $(ratio "$client_ndjson_rate" "$client_copy_rate")
CPU per row (µs; service / PostgreSQL, medians of $RUNS downloads; service/db: median of the downloads' ratios; target <= 1):
  events CSV                             $cpu_csv_s / $cpu_csv_db   (service/db $cpu_csv_r)
  events JSON                            $cpu_json_s / $cpu_json_db   (service/db $cpu_json_r)
  client events CSV                      $cpu_client_csv_s / $cpu_client_csv_db   (service/db $cpu_client_csv_r)
  client events JSON                     $cpu_client_json_s / $cpu_client_json_db   (service/db $cpu_client_json_r)
authentication events, month:
  month CSV: time to first byte          $(calc "round($ttfb * 1000)") ms   (target <= 20), whole month in ${month_s}s
  peak RSS, month at full speed          $rss_fast MB   (target <= 32)
  peak RSS, month at 1 MB/s for ${SLOW_SECONDS}s     $rss_slow MB   (target <= 32)
TXT
