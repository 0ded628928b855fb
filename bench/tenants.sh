#!/usr/bin/env bash
# Organizations (issue 28): what the organization condition costs a week
# window, and whether a small organization's window reads only its rows.
#
#   bench/tenants.sh                 # EVENTS=2000000 RUNS=5
#
# Seeds EVENTS authentication events over October 2026 into an embedded
# cluster under bench/out/.data-tenants (once), then gives 1 % of them (every
# hundredth id) to organization `small` and the rest to `big`, and starts
# `acctstream serve` with an operator token (`read+tenants`) and a token of
# each organization, so the service builds its indexes by organization.
# Then, median of RUNS interleaved runs of the week window 2026-10-08 as
# CSV:
#   - the operator (no organization condition) against `big`'s token (the
#     condition on every row; `big` holds 99 % of them): rows/s and ratio;
#   - `small`'s token: its rows, time and rows/s, beside the operator's
#     time for all of them;
# the plan of the small organization's window query as the service runs it
# (under row security, with the request pool's planner settings: which
# index, and how many rows it reads); and what the organization costs ingest: COPY of
# a million rows into copies of auth_event without the column, with it,
# and with it and its index (best of 3).
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=${EVENTS:-2000000}
RUNS=${RUNS:-5}
PORT=${PORT:-18087}
DATA_DIR=${DATA_DIR:-$PWD/bench/out/.data-tenants}
export ACCTSTREAM_PSEUDONYM_KEY=bench-key
export ACCTSTREAM_API_TOKENS="op=op-token:read+tenants,big=big-token:read@big,small=small-token:read@small"
export ACCTSTREAM_DATA_DIR=$DATA_DIR ACCTSTREAM_BIND=127.0.0.1:$PORT RUST_LOG=${RUST_LOG:-warn}
export ACCTSTREAM_RETENTION_DAYS=0
unset DATABASE_URL
for tool in curl psql python3; do
    command -v $tool >/dev/null || { echo "bench: needs $tool on PATH" >&2; exit 1; }
done

echo "building the release binary..." >&2
cargo build --release --quiet
mkdir -p bench/out
rustc -O --edition 2021 bench/client.rs -o bench/out/client
BIN=target/release/acctstream
PSQL_URL="postgresql://acctstream@/acctstream?host=$DATA_DIR/sock&port=5432"
marker="$DATA_DIR/seeded-$EVENTS"
if [ ! -e "$marker" ]; then
    rm -rf "$DATA_DIR"; mkdir -p "$DATA_DIR"
    "$BIN" seed --rows events="$EVENTS" --days 31 --end 2026-11-01T00:00:00Z
    touch "$marker"
fi
"$BIN" serve &
SERVER=$!
trap 'kill -INT $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break
    sleep 0.2
done
sql() { psql "$PSQL_URL" -qAtX -v ON_ERROR_STOP=1 "$@"; }

if [ ! -e "$DATA_DIR/tenanted" ]; then
    echo "giving 1 % of the events to 'small', the rest to 'big'..." >&2
    # Triggers off: the rows' organization is all that changes.
    sql -c "SET session_replication_role = replica; \
        UPDATE auth_event SET tenant = CASE WHEN id % 100 = 0 THEN 'small' ELSE 'big' END"
    # The service builds its index by organization concurrently meanwhile;
    # PostgreSQL may end one of the two as a deadlock: the VACUUM is tried
    # again.
    for attempt in 1 2 3 4 5; do
        sql -c "VACUUM (FULL, ANALYZE) auth_event" && break
        [ "$attempt" = 5 ] && { echo "bench: VACUUM FULL kept failing" >&2; exit 1; }
        sleep 5
    done
    touch "$DATA_DIR/tenanted"
fi
echo "waiting for the indexes by organization and the background work..." >&2
for _ in $(seq 1 3600); do
    behind=$(sql -c "SELECT (SELECT count(*) FROM usage_rollup_queue) + \
        (SELECT count(*) FROM auth_event WHERE (change_xid, id) > \
            (SELECT xid, id FROM acctstream_change_summarised WHERE kind = 'events')) + \
        (1 - (SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
              WHERE c.relname = 'auth_event_tenant_occurred_at' AND i.indisvalid))" \
        2>/dev/null || echo 1)
    [ "$behind" = 0 ] && break
    sleep 1
done
[ "$behind" = 0 ] || { echo "bench: background work did not finish" >&2; exit 1; }
sql -c "ANALYZE auth_event"

W="http://127.0.0.1:$PORT/api/v1/statistics/events/week/2026-10-08"
median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
declare -a op big small
for _ in $(seq "$RUNS"); do
    op+=("$(bench/out/client window "$W" op-token text/csv)")
    big+=("$(bench/out/client window "$W" big-token text/csv)")
    small+=("$(bench/out/client window "$W" small-token text/csv)")
done
rate() { awk '{ printf "%.0f\n", $1 / $2 }'; }
secs() { awk '{ print $2 }'; }
rows_of() { printf '%s\n' "$1" | awk '{ print $1 }'; }
o=$(printf '%s\n' "${op[@]}" | rate | median)
b=$(printf '%s\n' "${big[@]}" | rate | median)
s=$(printf '%s\n' "${small[@]}" | rate | median)
ot=$(printf '%s\n' "${op[@]}" | secs | median)
st=$(printf '%s\n' "${small[@]}" | secs | median)
echo "week window 2026-10-08 as CSV, median of $RUNS interleaved runs:"
printf '  %-44s %8s rows %10s rows/s  %6s s\n' "operator, every organization (no condition)" "$(rows_of "${op[0]}")" "$o" "$ot"
printf '  %-44s %8s rows %10s rows/s  ratio %s\n' "big's token (the condition, 99 % of rows)" "$(rows_of "${big[0]}")" "$b" "$(python3 -c "print(f'{$b / $o:.3f}')")"
printf '  %-44s %8s rows %10s rows/s  %6s s (%s of the operator'"'"'s time)\n' "small's token (1 % of rows)" "$(rows_of "${small[0]}")" "$s" "$st" "$(python3 -c "print(f'{$st / $ot:.3f}')")"
echo "the small organization's window query, as the service runs it (row security):"
sql <<'SQL' | sed 's/^/  /'
BEGIN READ ONLY;
SET LOCAL ROLE acctstream_organization;
SET LOCAL acctstream.tenant = 'small';
SET LOCAL enable_seqscan = off;
SET LOCAL enable_bitmapscan = off;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT id FROM auth_event
    WHERE occurred_at >= '2026-10-08' AND occurred_at < '2026-10-15' AND tenant = 'small'
    ORDER BY occurred_at, id;
ROLLBACK;
SQL

# What the organization costs ingest: COPY of 1,000,000 rows (best of 3)
# into copies of auth_event without the column (its eventId unique alone),
# with it left to its default (a deployment without organizations, a token
# that names none), with it written (ingest for a token of an
# organization), and written with the index by organization that a
# deployment with organizations gets.
echo "COPY of 1,000,000 events into auth_event's copies (best of 3):"
sql <<'SQL'
DROP TABLE IF EXISTS bench_no_tenant, bench_tenant, bench_tenant_index;
CREATE TABLE bench_tenant_index (LIKE auth_event INCLUDING ALL);
CREATE TABLE bench_tenant (LIKE auth_event INCLUDING ALL);
DROP INDEX bench_tenant_tenant_occurred_at_id_idx;
CREATE TABLE bench_no_tenant (LIKE auth_event INCLUDING ALL);
DROP INDEX bench_no_tenant_tenant_occurred_at_id_idx;
ALTER TABLE bench_no_tenant DROP COLUMN tenant;
ALTER TABLE bench_no_tenant ADD UNIQUE (event_id);
SQL
rows_file=$(mktemp)
sql -c "\\copy (SELECT occurred_at, auth_method_type, auth_method_name, auth_request_origin, user_id, 'big' FROM auth_event ORDER BY id LIMIT 1000000) TO '$rows_file'"
cut -f1-5 "$rows_file" > "$rows_file.plain"
COLUMNS_PLAIN="occurred_at, auth_method_type, auth_method_name, auth_request_origin, user_id"
copy_into() {
    sql -c "TRUNCATE $1" >/dev/null
    sql -c "CHECKPOINT" >/dev/null
    local t0 t1
    t0=$(date +%s.%N)
    sql -c "\\copy $1 ($2) FROM '$3'"
    t1=$(date +%s.%N)
    python3 -c "print($t1 - $t0)"
}
best() { printf '%s\n' "$@" | sort -g | head -1; }
declare -a none default written indexed
for _ in 1 2 3; do
    none+=("$(copy_into bench_no_tenant "$COLUMNS_PLAIN" "$rows_file.plain")")
    default+=("$(copy_into bench_tenant "$COLUMNS_PLAIN" "$rows_file.plain")")
    written+=("$(copy_into bench_tenant "$COLUMNS_PLAIN, tenant" "$rows_file")")
    indexed+=("$(copy_into bench_tenant_index "$COLUMNS_PLAIN, tenant" "$rows_file")")
done
python3 - "$(best "${none[@]}")" "$(best "${default[@]}")" "$(best "${written[@]}")" "$(best "${indexed[@]}")" <<'PY'
import sys
none, default, written, indexed = map(float, sys.argv[1:5])
print(f"  {'without the organization':<46} {1e6 / none:>10.0f} rows/s")
print(f"  {'with its column, left to its default':<46} {1e6 / default:>10.0f} rows/s  ratio {none / default:.2f}")
print(f"  {'with its column, written':<46} {1e6 / written:>10.0f} rows/s  ratio {none / written:.2f}")
print(f"  {'written, with the index by organization':<46} {1e6 / indexed:>10.0f} rows/s  ratio {none / indexed:.2f}")
PY
rm -f "$rows_file" "$rows_file.plain"
sql -c "DROP TABLE bench_no_tenant, bench_tenant, bench_tenant_index"
