#!/usr/bin/env bash
# Ingest benchmark: POST /api/v1/events against psql's COPY ... FROM STDIN of
# the same rows, in one run.
#
#   bench/ingest.sh                      # embedded PostgreSQL under bench/out/.data-ingest
#   EVENTS=200000 RUNS=1 bench/ingest.sh # smaller
#
# Generates EVENTS (default 1,000,000) events over one day, each with an
# eventId, as NDJSON and as CSV (same rows) into bench/out/ (once per size).
# Then, best of RUNS, each on emptied tables (every table but the migration
# record is truncated before each measurement):
#   - baseline: psql "\copy auth_event (...) FROM STDIN WITH (FORMAT csv)"
#     of the CSV file, straight into auth_event;
#   - service:  curl --data-binary @events.ndjson to POST /api/v1/events
#     (one request, one transaction), from the release build;
# and prints events/s of both, their ratio, and the service's peak RSS
# while ingesting. The body limit is raised for the run
# (ACCTSTREAM_MAX_BODY_BYTES, default 64 MiB, is far below 1M events).
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=${EVENTS:-1000000}
RUNS=${RUNS:-3}
PORT=${PORT:-18081}
DATA_DIR=${DATA_DIR:-$PWD/bench/out/.data-ingest}
OUT=bench/out
WRITE_TOKEN=bench-write-token
export ACCTSTREAM_PSEUDONYM_KEY=bench-key ACCTSTREAM_API_TOKENS="bench-token,$WRITE_TOKEN:read+write"
export ACCTSTREAM_DATA_DIR=$DATA_DIR ACCTSTREAM_BIND=127.0.0.1:$PORT RUST_LOG=${RUST_LOG:-warn}
export ACCTSTREAM_MAX_BODY_BYTES=${ACCTSTREAM_MAX_BODY_BYTES:-1073741824}
export ACCTSTREAM_RETENTION_DAYS=0
unset DATABASE_URL

for tool in curl psql python3; do
    command -v $tool >/dev/null || { echo "bench: needs $tool on PATH" >&2; exit 1; }
done

echo "building the release binary..." >&2
cargo build --release --quiet
BIN=target/release/acctstream

mkdir -p "$OUT" "$DATA_DIR"
NDJSON=$OUT/ingest-$EVENTS.ndjson
CSV=$OUT/ingest-$EVENTS.csv
if [ ! -s "$NDJSON" ] || [ ! -s "$CSV" ]; then
    echo "generating $EVENTS events into $NDJSON and $CSV..." >&2
    python3 - "$EVENTS" "$NDJSON" "$CSV" <<'PY'
import csv, json, random, sys
from datetime import datetime, timedelta, timezone

events, ndjson_path, csv_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
rng = random.Random(42)
methods = [("PASSWORD", "password.1"), ("PASSWORD", "password.2"), ("OTP", "otp.sms"),
           ("SMARTCARD", "smartcard.1"), ("KERBEROS", "kerberos.ad"), ("UNREGISTERED.SMTP", "smtp.1")]
origins = [f"CN=Appl-{i},CN=Server,OU=System,CN=Ubilogin,DC=test" for i in range(200)]
users = [f"uid=user{i:05d},ou=People,dc=example,dc=com" for i in range(20000)]
start = datetime(2026, 12, 1, tzinfo=timezone.utc)
step = 86_400_000_000 / events  # one day, in time order
with open(ndjson_path, "w") as nd, open(csv_path, "w", newline="") as cf:
    out = csv.writer(cf, lineterminator="\n")
    out.writerow(["timestamp", "authMethodType", "authMethodName", "authRequestOrigin", "userId", "eventId"])
    for i in range(events):
        ts = (start + timedelta(microseconds=int(i * step))).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        kind, name = methods[rng.randrange(len(methods))]
        origin = origins[rng.randrange(len(origins))]
        user = users[rng.randrange(len(users))]
        event_id = f"bench-{i:09d}"
        nd.write(json.dumps({"timestamp": ts, "authMethodType": kind, "authMethodName": name,
                             "authRequestOrigin": origin, "userId": user, "eventId": event_id},
                            separators=(",", ":")))
        nd.write("\n")
        out.writerow([ts, kind, name, origin, user, event_id])
PY
fi

"$BIN" serve &
SERVER=$!
trap 'kill -INT $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
    sleep 0.1
done
PSQL_URL="postgresql://acctstream@/acctstream?host=$DATA_DIR/sock&port=5432"

now() { date +%s.%N; }
best() { sort -g | head -1; }
calc() { python3 -c "print($1)"; }

reset_tables() {
    psql "$PSQL_URL" -qAt -v ON_ERROR_STOP=1 <<'SQL' >/dev/null
DO $$
DECLARE tables text;
BEGIN
    SELECT string_agg(format('%I', tablename), ', ') INTO tables
    FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'acctstream_migration';
    EXECUTE 'TRUNCATE ' || tables;
END $$;
CHECKPOINT;
SQL
}

copy_run() {
    reset_tables
    local t0; t0=$(now)
    psql "$PSQL_URL" -q -v ON_ERROR_STOP=1 -c "\\copy auth_event (occurred_at, auth_method_type, auth_method_name, auth_request_origin, user_id, event_id) FROM '$CSV' WITH (FORMAT csv, HEADER)" >/dev/null
    calc "$(now) - $t0"
}

reset_peak() { echo 5 > /proc/$SERVER/clear_refs; }
peak_mb() { awk '/VmHWM/ {printf "%.1f", $2/1024}' /proc/$SERVER/status; }

http_run() {
    reset_tables
    local time
    time=$(curl -sf -o "$OUT/ingest-response.json" -w '%{time_total}' \
        -H "Authorization: Bearer $WRITE_TOKEN" -H 'Content-Type: application/x-ndjson' \
        --data-binary @"$NDJSON" "http://127.0.0.1:$PORT/api/v1/events")
    grep -q "\"inserted\":$EVENTS" "$OUT/ingest-response.json" || {
        echo "bench: unexpected response: $(cat "$OUT/ingest-response.json")" >&2; exit 1; }
    echo "$time"
}

echo "$EVENTS events ($(du -m "$NDJSON" | cut -f1) MB NDJSON, $(du -m "$CSV" | cut -f1) MB CSV); best of $RUNS runs" >&2
copy_s=$(for _ in $(seq "$RUNS"); do copy_run; done | best)
reset_peak
http_s=$(for _ in $(seq "$RUNS"); do http_run; done | best)
rss=$(peak_mb)
stored=$(psql "$PSQL_URL" -Atc "SELECT count(*) FROM auth_event")
[ "$stored" -eq "$EVENTS" ] || { echo "bench: $stored events stored, expected $EVENTS" >&2; exit 1; }

copy_rate=$(calc "round($EVENTS / $copy_s)")
http_rate=$(calc "round($EVENTS / $http_s)")
cat <<TXT
acctstream ingest benchmark ($(nproc) cores; $EVENTS events with eventIds, one request)
  psql \\copy auth_event FROM STDIN (CSV)   $copy_rate events/s   (baseline, ${copy_s}s)
  service POST NDJSON                      $http_rate events/s   ratio $(calc "round($http_rate / $copy_rate, 2)")   (target >= 200000 events/s), ${http_s}s
  peak RSS of the service while ingesting  $rss MB
TXT
