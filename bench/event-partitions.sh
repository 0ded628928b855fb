#!/usr/bin/env bash
# Monthly partitions of acctstream's own tables against one table (issue 25,
# items 1 and 3), authentication events, in one run:
#
#   bench/event-partitions.sh                   # 50,000,000 events over 12 months
#   EVENTS=12000000 bench/event-partitions.sh
#   REUSE=1 bench/event-partitions.sh           # the cluster and data of the last run
#                                               # (not purged yet), from the ingest on
#
# Makes an embedded cluster under bench/out/.data-event-partitions anew with
# two databases: `acctstream` (partitioned by month, as a new database is)
# and `plain` (ACCTSTREAM_PARTITIONS=none: one table, as before issue 25),
# each served by its own `acctstream serve` (retention 400 days: nothing it
# deletes, but the partitions job makes the year's partitions ahead of the
# load, as it does for history within retention). Then, on both:
#   - loads EVENTS events spread evenly over the 12 months before this one
#     (server-side INSERT … SELECT, a month per statement), waits for the
#     usage rollups to take them all in, VACUUM ANALYZE;
#   - ingest: INGEST events (NDJSON with eventIds) POSTed to each server in
#     turn, ROUNDS times: rows/s, the best of each, and their ratio;
#   - a day window (CSV) six months back, ROUNDS times each in turn: time to
#     first byte and rows/s, medians, and their ratios;
#   - retention of the oldest month: `acctstream purge` with the cutoff at
#     the second month's start, its time and the WAL it wrote: the
#     partition is dropped whole, the plain table deleted in batches of
#     5,000 (with 50 ms pauses between them: printed without them too);
#     then the same purge again (nothing to delete: the pass's own time).
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=${EVENTS:-50000000}
INGEST=${INGEST:-500000}
ROUNDS=${ROUNDS:-5}
PORT=${PORT:-18087}
PLAIN_PORT=$((PORT + 1))
DATA_DIR=${DATA_DIR:-$PWD/bench/out/.data-event-partitions}
export ACCTSTREAM_PSEUDONYM_KEY=bench-key ACCTSTREAM_API_TOKENS=bench-token,writer=bench-writer:read+write
export ACCTSTREAM_DATA_DIR=$DATA_DIR RUST_LOG=${RUST_LOG:-warn}
export ACCTSTREAM_RETENTION_DAYS=400 ACCTSTREAM_AUDIT_RETENTION_DAYS=0
export ACCTSTREAM_MAX_BODY_BYTES=1073741824
unset DATABASE_URL ACCTSTREAM_PARTITIONS
for tool in curl psql python3; do
    command -v $tool >/dev/null || { echo "bench: needs $tool on PATH" >&2; exit 1; }
done

echo "building the release binary..." >&2
cargo build --release --quiet
BIN=$PWD/target/release/acctstream
REUSE=${REUSE:-0}
if [ "$REUSE" != 1 ]; then
    rm -rf "$DATA_DIR"
fi
mkdir -p "$DATA_DIR"
SOCK="host=$DATA_DIR/sock&port=5432"
URL="postgresql://acctstream@/acctstream?$SOCK"
PLAIN_URL="postgresql://acctstream@/plain?$SOCK"
ACCTSTREAM_BIND=127.0.0.1:$PORT "$BIN" serve &
SERVER=$!
PLAIN=
trap 'kill -INT $SERVER $PLAIN 2>/dev/null; wait $SERVER $PLAIN 2>/dev/null || true' EXIT
wait_up() {
    for _ in $(seq 1 600); do
        curl -s -o /dev/null "http://127.0.0.1:$1/healthz" && return
        sleep 0.2
    done
    echo "bench: the server on port $1 did not start" >&2
    exit 1
}
wait_up "$PORT"
sql() { local url=$1; shift; psql "$url" -qAtX -v ON_ERROR_STOP=1 "$@"; }
if [ "$REUSE" != 1 ]; then
    sql "$URL" -c "CREATE DATABASE plain" >/dev/null
    DATABASE_URL=$PLAIN_URL ACCTSTREAM_PARTITIONS=none "$BIN" migrate >/dev/null 2>&1
fi
DATABASE_URL=$PLAIN_URL ACCTSTREAM_PARTITIONS=none ACCTSTREAM_BIND=127.0.0.1:$PLAIN_PORT "$BIN" serve &
PLAIN=$!
wait_up "$PLAIN_PORT"

this_month=$(date -u +%Y-%m-01)
first=$(date -u -d "$this_month -12 months" +%Y-%m-%d)
second=$(date -u -d "$this_month -11 months" +%Y-%m-%d)
day=$(date -u -d "$this_month -6 months +14 days" +%Y-%m-%d)
first_name=auth_event_p$(date -u -d "$first" +%Y_%m)
for _ in $(seq 1 300); do
    [ "$(sql "$URL" -c "SELECT to_regclass('$first_name') IS NOT NULL")" = t ] && break
    sleep 0.2
done
[ "$(sql "$URL" -c "SELECT relkind FROM pg_class WHERE oid = 'auth_event'::regclass")" = p ] \
    || { echo "bench: auth_event is not partitioned" >&2; exit 1; }
[ "$(sql "$PLAIN_URL" -c "SELECT relkind FROM pg_class WHERE oid = 'auth_event'::regclass")" = r ] \
    || { echo "bench: plain.auth_event is partitioned" >&2; exit 1; }
[ "$(sql "$URL" -c "SELECT to_regclass('$first_name') IS NOT NULL")" = t ] \
    || { echo "bench: the partitions job did not make $first_name" >&2; exit 1; }

echo "auth_event: $EVENTS events over the 12 months from $first; $(sql "$URL" -c "SELECT count(*) FROM pg_inherits WHERE inhparent = 'auth_event'::regclass") partitions"

# EVENTS events, a month per statement, evenly in time.
load() {
    local url=$1 per=$((EVENTS / 12)) start=0 m from to
    for m in $(seq 0 11); do
        from=$(date -u -d "$first +$m months" +%Y-%m-%d)
        to=$(date -u -d "$first +$((m + 1)) months" +%Y-%m-%d)
        sql "$url" -v n="$per" -v s="$start" -v from="$from" -v to="$to" <<'SQL'
INSERT INTO auth_event (occurred_at, auth_method_type, auth_method_name, auth_request_origin, user_id, event_id)
SELECT :'from'::timestamptz + (g::float8 / :n) * (:'to'::timestamptz - :'from'::timestamptz),
       (ARRAY['PASSWORD', 'OTP', 'SAML', 'KERBEROS'])[1 + g % 4], 'method.' || (g % 7),
       'CN=Appl-' || (g % 50) || ',CN=Server,OU=System,DC=bench', 'user' || (g % 20000) || '@example.com',
       'e' || (:s + g)
FROM generate_series(0, :n - 1) AS g;
SQL
        start=$((start + per))
    done
}
settle() {
    local url=$1
    for _ in $(seq 1 7200); do
        [ "$(sql "$url" -c "SELECT count(*) FROM usage_rollup_queue")" = 0 ] && break
        sleep 1
    done
    [ "$(sql "$url" -c "SELECT count(*) FROM usage_rollup_queue")" = 0 ] \
        || { echo "bench: the rollups did not catch up" >&2; exit 1; }
    sql "$url" -c "VACUUM ANALYZE auth_event" >/dev/null
}
if [ "$REUSE" != 1 ]; then
    t0=$(date +%s)
    load "$URL"
    t1=$(date +%s)
    load "$PLAIN_URL"
    t2=$(date +%s)
    echo "  loaded by SQL in $((t1 - t0)) s (partitioned) and $((t2 - t1)) s (one table); waiting for the rollups..."
    settle "$URL"
    settle "$PLAIN_URL"
    t3=$(date +%s)
    echo "  rollups and VACUUM ANALYZE: $((t3 - t2)) s"
else
    settle "$URL"
    settle "$PLAIN_URL"
    echo "  reused: $(sql "$URL" -c "SELECT count(*) FROM auth_event") and $(sql "$PLAIN_URL" -c "SELECT count(*) FROM auth_event") events"
fi
sql "$URL" -c "SELECT '  partitioned: ' || pg_size_pretty(sum(pg_total_relation_size(relid))) FROM pg_partition_tree('auth_event')"
sql "$PLAIN_URL" -c "SELECT '  one table:   ' || pg_size_pretty(pg_total_relation_size('auth_event'))"

# Ingest: the same events (other ids each time) to each server in turn.
body() {
    python3 - "$INGEST" "$1" <<'PY'
import json, sys, datetime
n, prefix = int(sys.argv[1]), sys.argv[2]
now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
out = sys.stdout
for i in range(n):
    at = (now - datetime.timedelta(seconds=n - i)).strftime('%Y-%m-%dT%H:%M:%SZ')
    out.write(json.dumps({"timestamp": at, "authMethodType": "PASSWORD", "authMethodName": "password.1",
        "authRequestOrigin": "CN=Appl-%d,CN=Server,OU=System,DC=bench" % (i % 50),
        "userId": "user%d@example.com" % (i % 20000), "eventId": "%s-%d" % (prefix, i)}) + "\n")
PY
}
post() {
    curl -s -o "$DATA_DIR/post.out" -w '%{http_code} %{time_total}' -X POST \
        -H 'Authorization: Bearer bench-writer' -H 'Content-Type: application/x-ndjson' \
        --data-binary "@$2" "http://127.0.0.1:$1/api/v1/events"
}
declare -a ingest_p ingest_u
stamp=$(date +%s)
for r in $(seq 1 "$ROUNDS"); do
    body "p$r-$stamp" > "$DATA_DIR/p.ndjson"
    body "u$r-$stamp" > "$DATA_DIR/u.ndjson"
    read -r code secs <<<"$(post "$PORT" "$DATA_DIR/p.ndjson")"
    [ "$code" = 200 ] || { echo "bench: ingest answered $code" >&2; cat "$DATA_DIR/post.out" >&2; exit 1; }
    ingest_p+=("$secs")
    read -r code secs <<<"$(post "$PLAIN_PORT" "$DATA_DIR/u.ndjson")"
    [ "$code" = 200 ] || { echo "bench: ingest answered $code" >&2; cat "$DATA_DIR/post.out" >&2; exit 1; }
    ingest_u+=("$secs")
    settle "$URL"
    settle "$PLAIN_URL"
done

# The day window six months back, as CSV, to each server in turn.
declare -a ttfb_p ttfb_u total_p total_u
rows=$(sql "$URL" -c "SELECT count(*) FROM auth_event WHERE occurred_at >= '$day' AND occurred_at < '$day'::date + 1")
get() {
    curl -s -o /dev/null -w '%{time_starttransfer} %{time_total}' -H 'Authorization: Bearer bench-token' \
        -H 'Accept: text/csv' "http://127.0.0.1:$1/api/v1/statistics/events/day/$day"
}
for _ in 1 2; do get "$PORT" >/dev/null; get "$PLAIN_PORT" >/dev/null; done
for _ in $(seq 1 "$ROUNDS"); do
    read -r a b <<<"$(get "$PORT")"; ttfb_p+=("$a"); total_p+=("$b")
    read -r a b <<<"$(get "$PLAIN_PORT")"; ttfb_u+=("$a"); total_u+=("$b")
done

python3 - "$INGEST" "$rows" "${ingest_p[*]}" "${ingest_u[*]}" "${ttfb_p[*]}" "${ttfb_u[*]}" "${total_p[*]}" "${total_u[*]}" <<'PY'
import statistics, sys
n, rows = int(sys.argv[1]), int(sys.argv[2])
ip, iu, tp, tu, sp, su = ([float(x) for x in a.split()] for a in sys.argv[3:9])
print(f"ingest of {n} events (NDJSON, eventIds), {len(ip)} rounds in turn:")
print(f"  partitioned {n / min(ip):12,.0f} rows/s best, {n / statistics.median(ip):12,.0f} median")
print(f"  one table   {n / min(iu):12,.0f} rows/s best, {n / statistics.median(iu):12,.0f} median")
print(f"  partitioned / one table: {min(iu) / min(ip):.3f} best, {statistics.median(iu) / statistics.median(ip):.3f} median")
print(f"day window ({rows} rows, CSV), {len(tp)} rounds in turn, medians:")
print(f"  partitioned time to first byte {statistics.median(tp) * 1000:7.2f} ms, {rows / statistics.median(sp):12,.0f} rows/s")
print(f"  one table   time to first byte {statistics.median(tu) * 1000:7.2f} ms, {rows / statistics.median(su):12,.0f} rows/s")
print(f"  partitioned / one table: time to first byte {statistics.median(tp) / statistics.median(tu):.3f}, rows/s {statistics.median(su) / statistics.median(sp):.3f}")
PY

# Retention of the oldest month the partitioned table holds (the first of
# the twelve, unless REUSE runs after a purge: the one table then first
# loses, unmeasured, the months the partitioned one no longer has).
first=$(sql "$URL" -c "SELECT to_char(date_trunc('month', min(occurred_at), 'UTC'), 'YYYY-MM-DD') FROM auth_event")
second=$(date -u -d "$first +1 month" +%Y-%m-%d)
first_name=auth_event_p$(date -u -d "$first" +%Y_%m)
if [ "$(sql "$PLAIN_URL" -c "SELECT count(*) FROM auth_event WHERE occurred_at < '$first'")" != 0 ]; then
    sql "$PLAIN_URL" -c "DELETE FROM auth_event WHERE occurred_at < '$first'" >/dev/null
    sql "$PLAIN_URL" -c "VACUUM ANALYZE auth_event" >/dev/null
fi
days=$(( ($(date -u -d "$(date -u +%Y-%m-%d)" +%s) - $(date -u -d "$second" +%s)) / 86400 ))
purge() {
    local url=$1 partitions=$2
    sql "$url" -c "CHECKPOINT" >/dev/null
    local lsn start end
    lsn=$(sql "$url" -c "SELECT pg_current_wal_lsn()")
    start=$(date +%s.%N)
    DATABASE_URL=$url ACCTSTREAM_PARTITIONS=$partitions ACCTSTREAM_RETENTION_DAYS=$days "$BIN" purge > "$DATA_DIR/purge.out"
    end=$(date +%s.%N)
    echo "$(python3 -c "print(f'{$end - $start:.2f}')") \
$(sql "$url" -c "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn')") \
$(sql "$url" -c "SELECT count(*) FROM auth_event WHERE occurred_at < '$second'")"
}
echo "retention of $first's month (cutoff $second, $days days):"
read -r b_time b_wal b_left <<<"$(purge "$PLAIN_URL" none)"
b_rows=$(grep -o "deleted [0-9]* rows of events" "$DATA_DIR/purge.out" | grep -o "[0-9]*")
b_pauses=$(python3 -c "print(f'{($b_rows // 5000 + 1) * 0.05:.2f}')")
printf '  %-42s %8s s (%s s without its pauses), WAL %s MB, %s rows of the month left\n' \
    "batched deletes of $b_rows rows (one table)" "$b_time" \
    "$(python3 -c "print(f'{$b_time - $b_pauses:.2f}')")" \
    "$(python3 -c "print(f'{$b_wal / 1e6:.1f}')")" "$b_left"
read -r p_time p_wal p_left <<<"$(purge "$URL" monthly)"
grep -q "dropped the partition public.$first_name of events whole" "$DATA_DIR/purge.out" \
    || { echo "bench: the partition was not dropped:" >&2; cat "$DATA_DIR/purge.out" >&2; exit 1; }
printf '  %-42s %8s s, WAL %s MB, %s rows of the month left\n' \
    "dropping the partition (partitioned)" "$p_time" \
    "$(python3 -c "print(f'{$p_wal / 1e6:.2f}')")" "$p_left"
read -r e_time e_wal _ <<<"$(purge "$URL" monthly)"
printf '  %-42s %8s s, WAL %s MB\n' "the same pass again (nothing to delete)" "$e_time" \
    "$(python3 -c "print(f'{$e_wal / 1e6:.2f}')")"
python3 -c "print(f'  partition / batches: time {$p_time / $b_time:.4f} ({$p_time / ($b_time - $b_pauses):.4f} without the pauses), WAL {$p_wal / $b_wal:.5f}')"
python3 -c "print(f'  less the pass itself: the drop {$p_time - $e_time:.2f} s, the batches {$b_time - $e_time:.2f} s ({$b_time - $b_pauses - $e_time:.2f} s without the pauses): {($p_time - $e_time) / ($b_time - $e_time):.4f} ({($p_time - $e_time) / ($b_time - $b_pauses - $e_time):.4f})')"
