#!/usr/bin/env bash
# Local-time windows (issue 24) on bench/sessions.sh's data: what `tz`
# costs a week of sessions (three timestamps a row, each written with the
# offset of its instant), and how fast an unknown zone is refused.
#
#   bench/sessions.sh     # once, to seed bench/out/.data-sessions
#   bench/zones.sh
#
# Prints rows/s of the week window 2026-10-08 as CSV without `tz`, with
# `tz=UTC` and with `tz=Europe/Helsinki` (median of RUNS interleaved runs)
# and their ratios to the run without `tz`; then p50/p95 of keep-alive GETs
# answered 400 for an unknown zone, beside a 400 for an unknown period (no
# zone involved).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-7}
PORT=${PORT:-18083}
DATA_DIR=${DATA_DIR:-$PWD/bench/out/.data-sessions}
TOKEN=bench-token
[ -e "$DATA_DIR/pgdata" ] || { echo "bench: run bench/sessions.sh first (it seeds $DATA_DIR)" >&2; exit 1; }
export ACCTSTREAM_PSEUDONYM_KEY=bench-key ACCTSTREAM_API_TOKENS=$TOKEN
export ACCTSTREAM_DATA_DIR=$DATA_DIR ACCTSTREAM_BIND=127.0.0.1:$PORT RUST_LOG=${RUST_LOG:-warn}
export ACCTSTREAM_RETENTION_DAYS=0
unset DATABASE_URL
echo "building the release binary..." >&2
cargo build --release --quiet
target/release/acctstream serve &
SERVER=$!
trap 'kill -INT $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break
    sleep 0.2
done
PSQL_URL="postgresql://acctstream@/acctstream?host=$DATA_DIR/sock&port=5432"
rows=$(psql "$PSQL_URL" -Atc "SELECT count(*) FROM radacct WHERE (acctstoptime IS NULL OR acctstoptime > '2026-10-08' OR acctstarttime >= '2026-10-08') AND acctstarttime < '2026-10-15'")
median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
URL="http://127.0.0.1:$PORT/api/v1/statistics/sessions/week/2026-10-08"
get() { curl -sf -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $TOKEN" -H 'Accept: text/csv' "$1"; }
none=(); utc=(); helsinki=()
for _ in $(seq 1 "$RUNS"); do
    none+=("$(get "$URL")")
    utc+=("$(get "$URL?tz=UTC")")
    helsinki+=("$(get "$URL?tz=Europe/Helsinki")")
done
n=$(printf '%s\n' "${none[@]}" | median)
u=$(printf '%s\n' "${utc[@]}" | median)
h=$(printf '%s\n' "${helsinki[@]}" | median)
echo "week window 2026-10-08 of sessions as CSV: $rows rows, median of $RUNS interleaved runs"
python3 - "$rows" "$n" "$u" "$h" <<'PY'
import sys
rows, none, utc, helsinki = int(sys.argv[1]), *map(float, sys.argv[2:])
for label, t in [("no tz", none), ("tz=UTC", utc), ("tz=Europe/Helsinki", helsinki)]:
    print(f"  {label:<22} {rows / t:>10.0f} rows/s  {t:6.3f} s  ratio {none / t:.2f}")
PY
echo "refusals (p50 ms, p95 ms, body bytes), 500 keep-alive GETs each:"
printf '  %-22s %s\n' "unknown zone" "$(python3 bench/sessions.py latency "$URL?tz=Mars/Olympus" "$TOKEN" 500 400)"
printf '  %-22s %s\n' "unknown period" "$(python3 bench/sessions.py latency "http://127.0.0.1:$PORT/api/v1/statistics/sessions/fortnight/2026-10-08" "$TOKEN" 500 400)"
