#!/usr/bin/env bash
# What the access layer of issue 10 (authentication middleware, per-client
# limits, the access audit trail) costs a download and a small request:
# the same requests against a binary built before it (BEFORE_BIN) and the
# current one, on the same database, interleaved run by run, medians of RUNS.
#
#   git worktree add /tmp/before fe2cac1
#   (cd /tmp/before && CARGO_TARGET_DIR=/tmp/before-target cargo build --release)
#   BEFORE_BIN=/tmp/before-target/release/acctstream bench/access.sh
#
# Uses bench/.data (seeded by bench/stream.sh). The current binary runs with
# a rate limit and a stream limit set high enough never to refuse, so every
# check runs; its audit writer stores one row per request.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-7}
SMALL=${SMALL:-2000}
PORT=${PORT:-18090}
DATA_DIR=${DATA_DIR:-$PWD/bench/.data}
WEEK=2026-10-08
TOKEN=bench-token
: "${BEFORE_BIN:?set BEFORE_BIN to an acctstream binary built before issue 10 (see the header)}"
export ACCTSTREAM_PSEUDONYM_KEY=bench-key ACCTSTREAM_API_TOKENS=$TOKEN
export ACCTSTREAM_DATA_DIR=$DATA_DIR RUST_LOG=${RUST_LOG:-warn}

[ -e "$DATA_DIR"/seeded-* ] || { echo "bench: run bench/stream.sh first (it seeds $DATA_DIR)" >&2; exit 1; }
echo "building the release binary..." >&2
cargo build --release --quiet
AFTER_BIN=target/release/acctstream

wait_for() {
    for _ in $(seq 1 300); do
        curl -s -o /dev/null "http://127.0.0.1:$1/healthz" && return 0
        sleep 0.1
    done
    echo "bench: the server on port $1 did not start" >&2
    exit 1
}
ACCTSTREAM_BIND=127.0.0.1:$PORT ACCTSTREAM_RATE_LIMIT=1000000/s ACCTSTREAM_STREAMS_PER_CLIENT=1000 "$AFTER_BIN" serve &
AFTER=$!
BEFORE=
trap 'kill -INT $BEFORE $AFTER 2>/dev/null; wait $BEFORE $AFTER 2>/dev/null || true' EXIT
wait_for "$PORT"
PSQL_URL="postgresql://acctstream@/acctstream?host=$DATA_DIR/sock&port=5432"
DATABASE_URL=$PSQL_URL ACCTSTREAM_BIND=127.0.0.1:$((PORT + 1)) "$BEFORE_BIN" serve &
BEFORE=$!
wait_for "$((PORT + 1))"

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
calc() { python3 -c "print($1)"; }
download() {  # $1 = port: seconds for the week as CSV
    curl -sf -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $TOKEN" \
        -H 'Accept: text/csv' "http://127.0.0.1:$1/api/v1/statistics/events/week/$WEEK"
}
small() {  # $1 = port: seconds for SMALL requests of one minute's events, one connection
    local urls=() t0
    for _ in $(seq "$SMALL"); do urls+=("http://127.0.0.1:$1/api/v1/statistics/events/minute/2026-10-09T12:00?format=ndjson"); done
    t0=$(date +%s.%N)
    curl -sf -H "Authorization: Bearer $TOKEN" "${urls[@]}" >/dev/null
    calc "$(date +%s.%N) - $t0"
}
audit_rows() { psql "$PSQL_URL" -Atc "SELECT count(*) FROM access_audit"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # user + system, clock ticks
TICK=$(getconf CLK_TCK)

rows_before=$(audit_rows)
for port in $PORT $((PORT + 1)); do download "$port" >/dev/null; small "$port" >/dev/null; done  # warm up
declare -a dl_after dl_before sm_after sm_before
cpu_small_before=0; cpu_small_after=0; cpu_dl_before=0; cpu_dl_after=0
for _ in $(seq "$RUNS"); do
    c=$(cpu_ticks "$BEFORE"); dl_before+=("$(download $((PORT + 1)))"); cpu_dl_before=$((cpu_dl_before + $(cpu_ticks "$BEFORE") - c))
    c=$(cpu_ticks "$AFTER"); dl_after+=("$(download "$PORT")"); cpu_dl_after=$((cpu_dl_after + $(cpu_ticks "$AFTER") - c))
    c=$(cpu_ticks "$BEFORE"); sm_before+=("$(small $((PORT + 1)))"); cpu_small_before=$((cpu_small_before + $(cpu_ticks "$BEFORE") - c))
    c=$(cpu_ticks "$AFTER"); sm_after+=("$(small "$PORT")"); cpu_small_after=$((cpu_small_after + $(cpu_ticks "$AFTER") - c))
done
sleep 1
rows_after=$(audit_rows)

d_b=$(printf '%s\n' "${dl_before[@]}" | median); d_a=$(printf '%s\n' "${dl_after[@]}" | median)
s_b=$(printf '%s\n' "${sm_before[@]}" | median); s_a=$(printf '%s\n' "${sm_after[@]}" | median)
echo "access layer (issue 10) vs the binary before it; medians of $RUNS interleaved runs"
printf '  week CSV download (1.15 M rows)   before %.3f s   after %.3f s   after/before %.3f\n' "$d_b" "$d_a" "$(calc "$d_a / $d_b")"
printf '  %s small requests (one minute)  before %.3f s   after %.3f s   per request +%.0f µs (after/before %.3f)\n' \
    "$SMALL" "$s_b" "$s_a" "$(calc "($s_a - $s_b) / $SMALL * 1e6")" "$(calc "$s_a / $s_b")"
printf '  service CPU per download          before %.3f s   after %.3f s\n' \
    "$(calc "$cpu_dl_before / $TICK / $RUNS")" "$(calc "$cpu_dl_after / $TICK / $RUNS")"
printf '  service CPU per small request     before %.0f µs   after %.0f µs (the audit writer included)\n' \
    "$(calc "$cpu_small_before / $TICK / ($RUNS * $SMALL) * 1e6")" "$(calc "$cpu_small_after / $TICK / ($RUNS * $SMALL) * 1e6")"
echo "  audit rows written by the current binary: $((rows_after - rows_before))"
