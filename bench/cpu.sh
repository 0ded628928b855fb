#!/usr/bin/env bash
# CPU per row of one running server and of PostgreSQL, download after download:
# for A/B comparisons of a change (start the server, run this, rebuild, again).
#
#   bench/cpu.sh PORT PATH ACCEPT ROWS [RUNS] [curl arguments...]
#   bench/cpu.sh 18080 /api/v1/statistics/events/week/2026-10-08 text/csv 1151019 7
#   bench/cpu.sh 18080 /api/v1/statistics/events/week/2026-10-08 text/csv 1151019 3 -H 'Accept-Encoding: gzip'
#
# Prints, per download: the service's and PostgreSQL's µs of CPU per row
# (utime + stime from /proc of the server and of every postgres process), their
# ratio, and rows/s. TOKEN defaults to bench-token (bench/stream.sh's).
set -euo pipefail
PORT=$1; URL_PATH=$2; ACCEPT=$3; ROWS=$4; RUNS=${5:-5}
shift $(( $# < 5 ? $# : 5 ))
TOKEN=${TOKEN:-bench-token}
# SERVER_PID picks the server when several run (an A/B of two builds, run by run).
SERVER=${SERVER_PID:-$(pgrep -f "acctstream serve" | head -1)} || { echo "cpu.sh: no 'acctstream serve' running" >&2; exit 1; }
TICK=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
pg_ticks() {
    local sum=0 pid
    for pid in $(pgrep -x postgres); do sum=$((sum + $(ticks "$pid" 2>/dev/null || echo 0))); done
    echo "$sum"
}
for _ in $(seq 1 "$RUNS"); do
    s0=$(ticks "$SERVER"); d0=$(pg_ticks); t0=$(date +%s.%N)
    curl -s -o /dev/null -H "Authorization: Bearer $TOKEN" -H "Accept: $ACCEPT" "$@" "http://127.0.0.1:$PORT$URL_PATH"
    t1=$(date +%s.%N); s1=$(ticks "$SERVER"); d1=$(pg_ticks)
    python3 -c "s=($s1-$s0)*1e6/$TICK/$ROWS; d=($d1-$d0)*1e6/$TICK/$ROWS; print(f'service {s:.3f} µs/row  postgres {d:.3f} µs/row  ratio {s/d:.2f}  {$ROWS/($t1-$t0):,.0f} rows/s')"
done
