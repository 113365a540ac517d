#!/usr/bin/env bash
# Smoke test of a millwright binary, native or aarch64 under qemu-user:
#   deploy/qemu-smoke.sh BINARY [RUNNER...]
#   deploy/qemu-smoke.sh target/aarch64-unknown-linux-gnu/ci-pi/millwright qemu-aarch64-static -L /usr/aarch64-linux-gnu
# Runs --version, `simulate` on a small fleet, `serve` on a free loopback port, trains one demo machine's
# four models through the API (curl, bearer token via MILLWRIGHT_AUTH__TOKEN), checks that all four
# succeeded, and stops the daemon with SIGTERM. Prints `SMOKE_BATCH_SECONDS=<s>` (submit to SUCCESS) for
# the caller's native/emulated ratio. Env: SMOKE_ROWS (rows per machine, default 20000), SMOKE_MACHINES (3).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 BINARY [RUNNER...]" >&2; exit 2; }
bin=$1; shift
run=("$@" "$bin")
rows=${SMOKE_ROWS:-20000}
machines=${SMOKE_MACHINES:-3}
token=smoke-token-$RANDOM$RANDOM$RANDOM
work=$(mktemp -d "${TMPDIR:-/tmp}/millwright-smoke.XXXXXX")
pid=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "SMOKE FAIL: $*" >&2; [ -f "$work/serve.err" ] && tail -n 40 "$work/serve.err" >&2; exit 1; }
now() { date +%s.%N; }

echo "== $(basename "$bin"): --version"
"${run[@]}" --version | tee "$work/version"
grep -q '^millwright ' "$work/version" || fail "--version printed no version"

echo "== simulate $machines machines x $rows rows"
"${run[@]}" simulate --out "$work/data" --machines "$machines" --rows "$rows" >/dev/null
n=$(find "$work/data/machines" -mindepth 1 -maxdepth 1 -type d | wc -l)
[ "$n" -eq "$machines" ] || fail "simulate made $n machines, expected $machines"

echo "== serve on a loopback port"
MILLWRIGHT_AUTH__TOKEN=$token MILLWRIGHT_DATA_DIR=$work/data MILLWRIGHT_STATE_DIR=$work/state \
    MILLWRIGHT_MQTT__ENABLED=false MILLWRIGHT_TRAINING__QUALITY=fast \
    "${run[@]}" serve --listen 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.err" &
pid=$!
addr=
for _ in $(seq 1 300); do
    addr=$(sed -n 's#^millwright listening on http://\([^/]*\)/$#\1#p' "$work/serve.out" | head -n1)
    [ -n "$addr" ] && break
    kill -0 "$pid" 2>/dev/null || fail "daemon exited before listening"
    sleep 0.1
done
[ -n "$addr" ] || fail "daemon did not listen within 30 s"
base=http://$addr
curl -fsS "$base/api/health" | grep -c '"status":"ok"' >/dev/null || fail "/api/health is not ok"
machine=$(curl -fsS "$base/api/ml/train/machines/available" | sed -n 's/.*"machine_id":"\([a-z0-9_-]*\)".*/\1/p' | head -n1)
[ -n "$machine" ] || fail "no machine listed"

echo "== train all four models of $machine"
t0=$(now)
resp=$(curl -fsS -X POST -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d "{\"machine_id\":\"$machine\"}" "$base/api/ml/train/batch") || fail "submission refused"
task=$(printf '%s' "$resp" | sed -n 's/.*"task_id":"\([^"]*\)".*/\1/p')
[ -n "$task" ] || fail "no task id in $resp"
status=
for _ in $(seq 1 3600); do
    body=$(curl -fsS "$base/api/ml/tasks/$task")
    # The task's own status is the key just before task_id (serde_json sorts keys); per-model statuses are nested.
    status=$(printf '%s' "$body" | sed -n 's/.*"status":"\(SUCCESS\|FAILURE\|REVOKED\)","task_id".*/\1/p' | head -n1)
    [ -n "$status" ] && break
    sleep 0.5
done
t1=$(now)
[ "$status" = SUCCESS ] || fail "task ended ${status:-never}: $body"
printf '%s' "$body" | grep -c '"models_trained":4' >/dev/null || fail "not all four models trained: $body"
for t in classification regression anomaly timeseries; do
    curl -fsS "$base/api/ml/models/$machine/$t" >/dev/null || fail "no $t model after SUCCESS"
done
batch=$(awk "BEGIN{printf \"%.1f\", $t1 - $t0}")
echo "4 models SUCCESS for $machine in ${batch} s"

echo "== SIGTERM"
kill -TERM "$pid"
ts=$(now)
wait "$pid" || fail "daemon exited with $? on SIGTERM"
pid=
echo "stopped in $(awk "BEGIN{printf \"%.2f\", $(now) - $ts}") s"
echo "SMOKE_BATCH_SECONDS=$batch"
