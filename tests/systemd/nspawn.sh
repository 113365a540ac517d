#!/usr/bin/env bash
# The .deb and the unit under a real systemd: boots a minimal Debian (debootstrap, cached under target/) in
# systemd-nspawn with a private network, installs the package this tree builds, and checks what only a real
# systemd shows — install, idle under the watchdog, training inside the unit's sandbox, journald fields,
# stop/kill/restart, upgrade, remove/purge, and the watchdog firing for a stuck runner.
#
#   bash tests/systemd/nspawn.sh            (root; run by ./scripts/test)
#
# A step that cannot run here fails the suite with the reason; nothing is skipped silently.
# Environment: NSPAWN_SUITE=<check,...> runs only some checks (for development); KEEP_ROOTFS=1 keeps the
# booted copy of the root under target/nspawn/run for a post-mortem.
set -euo pipefail
# Checks on command output use `grep -c … >/dev/null`, never `grep -q`: under pipefail, a grep that quits at
# its first match kills the command still writing into the pipe (SIGPIPE), and the check fails though the
# line is there — as it did once the journal ran on past the matching line.
cd "$(dirname "$0")/../.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

work=target/nspawn
base=$work/base-bookworm
run=$work/run
log=$work/container.log
results=$work/results.txt
suite_t0=$(date +%s)

fail() { echo "FAIL: $*" >&2; [ -f "$log" ] && { echo "--- last lines of the container console:" >&2; tail -n 20 "$log" >&2; }; exit 1; }
note() { printf '  %-58s %s\n' "$1" "$2" | tee -a "$results"; }

# --- what this suite needs ------------------------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || fail "the systemd suite needs root (debootstrap and systemd-nspawn); run the tests as root, or pass --skip systemd to ./scripts/test to leave this suite out on purpose"
for c in systemd-nspawn debootstrap nsenter curl dpkg-deb; do
    command -v "$c" >/dev/null || [ -x "/usr/sbin/$c" ] || fail "$c is missing (apt-get install -y systemd-container debootstrap util-linux curl dpkg)"
done
mkdir -p "$work"
: > "$results"

# --- the package -----------------------------------------------------------------------------------------
# The ci-pi profile (release settings, thin LTO) is what CI builds natively for the Pi comparison too.
echo "== build (ci-pi) and the amd64 .deb"
cargo build --locked --profile ci-pi
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
cargo deb --no-build --profile ci-pi --deb-version "$version-1" -o "$work/millwright_1.deb" >/dev/null
cargo deb --no-build --profile ci-pi --deb-version "$version-2" -o "$work/millwright_2.deb" >/dev/null

# --- the root --------------------------------------------------------------------------------------------
if [ ! -f "$base/.complete" ]; then
    echo "== debootstrap bookworm (cached in $base for later runs)"
    rm -rf "$base"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,procps bookworm "$base" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 \
        || fail "debootstrap failed (see $work/debootstrap.log): $(tail -n 3 "$work/debootstrap.log")"
    touch "$base/.complete"
fi
rm -rf "$run"
cp -a "$base" "$run"
cp "$work/millwright_1.deb" "$work/millwright_2.deb" "$run/root/"

# --- boot ------------------------------------------------------------------------------------------------
nspawn_pid=
cleanup() {
    if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
        kill "$nspawn_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$nspawn_pid" 2>/dev/null || true
    fi
    [ "${KEEP_ROOTFS:-0}" = 1 ] || rm -rf "$run"
}
trap cleanup EXIT

echo "== boot the container"
systemd-nspawn -q -D "$run" --boot --console=pipe --register=no --keep-unit --private-network >"$log" 2>&1 &
nspawn_pid=$!
# nspawn forks a short-lived helper before the container's PID 1 exists: wait for the child that runs systemd.
C=
for _ in $(seq 200); do
    for p in $(pgrep -P "$nspawn_pid" || true); do
        [ "$(cat "/proc/$p/comm" 2>/dev/null)" = systemd ] && C=$p
    done
    [ -n "$C" ] && break
    sleep 0.1
done
[ -n "$C" ] || fail "systemd-nspawn did not start a container"
ct() { nsenter -t "$C" -a -- "$@"; }
state=
for _ in $(seq 120); do
    state=$(ct systemctl is-system-running 2>/dev/null || true)
    case $state in running|degraded) break ;; esac
    sleep 0.5
done
case $state in running|degraded) ;; *) fail "the container's systemd did not come up (state: ${state:-none})" ;; esac
note "container systemd" "$state"

api() { # METHOD PATH [BODY] -> body; the container's loopback, reached through its network namespace
    local m=$1 p=$2 body=${3:-}
    local args=(-s -m 20 -X "$m" -H "Authorization: Bearer $token" -H 'Content-Type: application/json')
    [ -n "$body" ] && args+=(--data "$body")
    nsenter -t "$C" -n -- curl "${args[@]}" "http://127.0.0.1:8080$p"
}
json() { python3 -c "import json,sys; v=json.load(sys.stdin); print(eval(sys.argv[1], {'v': v}))" "$1"; }
prop() { ct systemctl show -p "$1" --value millwright; }
wait_active() {
    local s
    for _ in $(seq 240); do s=$(ct systemctl is-active millwright 2>/dev/null || true); [ "$s" = active ] && return 0; sleep 0.5; done
    fail "millwright is not active (${s:-?}): $(ct journalctl -u millwright -n 20 --no-pager)"
}
wait_task() { # id seconds -> final status
    local id=$1 limit=$2 s t0; t0=$(date +%s)
    while :; do
        s=$(api GET "/api/ml/tasks/$id" | json "v['status']" 2>/dev/null || echo "?")
        case $s in SUCCESS|FAILURE|REVOKED) echo "$s"; return 0 ;; esac
        [ $(( $(date +%s) - t0 )) -lt "$limit" ] || { echo "TIMEOUT($s)"; return 0; }
        sleep 1
    done
}

# --- install ---------------------------------------------------------------------------------------------
echo "== install"
t0=$(date +%s.%N)
ct dpkg -i /root/millwright_1.deb >"$work/dpkg-install.log" 2>&1 || fail "dpkg -i failed: $(tail -n 5 "$work/dpkg-install.log")"
wait_active
t1=$(date +%s.%N)
ct getent passwd millwright >/dev/null || fail "no millwright user after install"
ct getent group millwright >/dev/null || fail "no millwright group after install"
owner=$(ct stat -c '%U:%G %a' /var/lib/millwright)
[ "$owner" = "millwright:millwright 750" ] || fail "/var/lib/millwright is $owner, want millwright:millwright 750"
for _ in $(seq 100); do ct test -f /var/lib/millwright/token && break; sleep 0.2; done
tokmode=$(ct stat -c '%U %a' /var/lib/millwright/token) || fail "no token file"
[ "$tokmode" = "millwright 600" ] || fail "token file is $tokmode, want millwright 600"
token=$(ct cat /var/lib/millwright/token)
ct dpkg-query -W -f='${Conffiles}\n' millwright | grep -c '/etc/millwright/config.toml' >/dev/null || fail "/etc/millwright/config.toml is not a conffile"
[ "$(ct systemctl is-enabled millwright)" = enabled ] || fail "the service is not enabled"
status=$(prop StatusText)
case $status in idle*|training*) ;; *) fail "no STATUS from the daemon (StatusText=$status)" ;; esac
ct journalctl -u millwright --no-pager | grep -c 'systemd notified: ready' >/dev/null || fail "no READY in the journal"
note "install: user, state folder 750, token 600, conffile, enabled" "ok"
note "install to active (READY), incl. demo fleet" "$(awk "BEGIN{printf \"%.1f s\", $t1-$t0}")"
note "STATUS" "$status"

# --- boot-to-READY and idle RSS --------------------------------------------------------------------------
t0=$(date +%s.%N); ct systemctl restart millwright; t1=$(date +%s.%N)
note "systemctl restart until READY (Type=notify)" "$(awk "BEGIN{printf \"%.2f s\", $t1-$t0}")"
sleep 5
pid=$(prop MainPID)
rss=$(ct awk '/VmRSS/{print $2}' "/proc/$pid/status")
note "idle RSS under systemd (5 s after READY)" "$(( rss / 1024 )) MB"

# --- idle under a short watchdog -------------------------------------------------------------------------
echo "== idle: 10 watchdog periods with WatchdogSec=3s"
ct mkdir -p /etc/systemd/system/millwright.service.d
ct sh -c 'printf "[Service]\nWatchdogSec=3s\n" > /etc/systemd/system/millwright.service.d/watchdog.conf'
ct systemctl daemon-reload
ct systemctl restart millwright
wait_active
since=$(ct date '+%Y-%m-%d %H:%M:%S')
sleep 33
restarts=$(prop NRestarts)
[ "$restarts" = 0 ] || fail "idle daemon restarted $restarts times under WatchdogSec=3s: $(ct journalctl -u millwright --since "$since" --no-pager | grep -i watchdog | head -n 5)"
# `since` has whole seconds, so the start's own "systemd watchdog enabled" line may fall inside the window.
watchdog_trouble() { ct journalctl -u millwright --since "$since" --no-pager | grep -i 'watchdog' | grep -v 'systemd watchdog enabled'; }
if watchdog_trouble >/dev/null; then
    fail "watchdog lines in the journal of an idle daemon: $(watchdog_trouble | head -n 3)"
fi
[ "$(ct systemctl is-active millwright)" = active ] || fail "not active after idling"
note "idle 33 s = 11 periods of WatchdogSec=3s: NRestarts" "$restarts"

# --- a batch inside the sandbox --------------------------------------------------------------------------
echo "== a 4-model batch inside the unit's sandbox"
machine=$(api GET /api/ml/train/machines/available | json "v['machines'][0]['machine_id']") || fail "no machine listed"
t0=$(date +%s)
id=$(api POST /api/ml/train/batch "{\"machine_id\":\"$machine\"}" | json "v['task_id']") || fail "the batch was not accepted"
final=$(wait_task "$id" 300)
[ "$final" = SUCCESS ] || fail "the batch ended $final: $(api GET "/api/ml/tasks/$id" | head -c 600)"
note "4-model batch on $machine in the sandbox" "SUCCESS in $(( $(date +%s) - t0 )) s"
ct journalctl -u millwright --no-pager | grep -cE 'SECCOMP|audit.*millwright' >/dev/null && fail "seccomp/audit lines for millwright in the journal"

# --- journald fields -------------------------------------------------------------------------------------
fields=$(ct journalctl -u millwright -o json --no-pager | python3 -c '
import json, sys
seen = set()
for line in sys.stdin:
    try: e = json.loads(line)
    except ValueError: continue
    for k in ("TASK_ID", "MACHINE_ID", "MODEL_TYPE"):
        if e.get(k): seen.add(k)
print(",".join(sorted(seen)))')
[ "$fields" = "MACHINE_ID,MODEL_TYPE,TASK_ID" ] || fail "journal fields seen: '$fields', want MACHINE_ID, MODEL_TYPE and TASK_ID"
note "journal carries TASK_ID, MACHINE_ID, MODEL_TYPE" "ok"

# --- stop with a job waiting; kill -9 while training -------------------------------------------------------
echo "== systemctl stop with a job running and one waiting"
machines=$(api GET /api/ml/train/machines/available | json "' '.join(m['machine_id'] for m in v['machines'][1:3])")
set -- $machines
running=$(api POST /api/ml/train/batch "{\"machine_id\":\"$1\"}" | json "v['task_id']")
waiting=$(api POST /api/ml/train/batch "{\"machine_id\":\"$2\"}" | json "v['task_id']")
for _ in $(seq 120); do
    [ "$(api GET "/api/ml/tasks/$running" | json "v['status']")" = PROGRESS ] && break
    sleep 0.5
done
[ "$(api GET "/api/ml/tasks/$running" | json "v['status']")" = PROGRESS ] || fail "the first job never started training"
t0=$(date +%s.%N); ct systemctl stop millwright; t1=$(date +%s.%N)
took=$(awk "BEGIN{printf \"%.1f\", $t1-$t0}")
awk "BEGIN{exit !($t1-$t0 < 10)}" || fail "systemctl stop took $took s (limit 10 s)"
ct journalctl -u millwright --no-pager -n 50 | grep -c 'SIGTERM: shutting down' >/dev/null || fail "no shutdown line in the journal after stop"
note "systemctl stop (job running) until exited" "$took s"
ct systemctl start millwright
wait_active
w=$(api GET "/api/ml/tasks/$waiting" | json "v['status']")
case $w in PENDING|STARTED|PROGRESS|SUCCESS) ;; *) fail "the waiting job is $w after stop/start" ;; esac
note "job waiting at stop, after start" "$w"
stopped=$(api GET "/api/ml/tasks/$running" | json "v['status'] + ' ' + str(v['error'])")
case $stopped in "FAILURE interrupted by shutdown"*) ;; *) fail "the job running at stop is '$stopped', want FAILURE interrupted by shutdown" ;; esac
copies=$(api GET /api/ml/tasks | json "len([t for t in v['tasks'] if t.get('requeued_from') == '$running'])")
[ "$copies" = 1 ] || fail "the job running at stop was requeued $copies times, want once (queue.shutdown = cancel_and_requeue)"
note "job running at stop: interrupted, requeued once" "ok"

echo "== kill -9 of the main process while training"
for _ in $(seq 120); do
    r=$(api GET /api/health | json "(v.get('running') or {}).get('task_id') or ''")
    [ -n "$r" ] && break
    sleep 0.5
done
[ -n "$r" ] || fail "nothing was training after the restart"
before=$(prop NRestarts)
ct sh -c "kill -9 \$(systemctl show -p MainPID --value millwright)"
for _ in $(seq 60); do [ "$(prop NRestarts)" -gt "$before" ] && break; sleep 0.5; done
[ "$(prop NRestarts)" -gt "$before" ] || fail "systemd did not restart the daemon after kill -9"
wait_active
killed=$(api GET "/api/ml/tasks/$r" | json "v['status'] + ' ' + str(v['error'])")
case $killed in "FAILURE interrupted by restart"*) ;; *) fail "the killed job is '$killed', want FAILURE interrupted by restart" ;; esac
copies=$(api GET /api/ml/tasks | json "len([t for t in v['tasks'] if t.get('requeued_from') == '$r'])")
[ "$copies" = 1 ] || fail "the interrupted job was requeued $copies times, want once"
note "kill -9 while training: restarted by systemd, job requeued" "ok"

# --- upgrade, remove, purge ------------------------------------------------------------------------------
echo "== upgrade over a running install"
ct sh -c 'echo "# kept across upgrades" >> /etc/millwright/config.toml'
pid_before=$(prop MainPID)
jobs_before=$(api GET /api/ml/tasks | json "len(v['tasks'])")
ct dpkg -i /root/millwright_2.deb >"$work/dpkg-upgrade.log" 2>&1 || fail "upgrade failed: $(tail -n 5 "$work/dpkg-upgrade.log")"
wait_active
[ "$(prop MainPID)" != "$pid_before" ] || fail "the upgrade did not restart the daemon"
ct grep -q '# kept across upgrades' /etc/millwright/config.toml || fail "the upgrade replaced the edited config"
[ "$(ct cat /var/lib/millwright/token)" = "$token" ] || fail "the upgrade changed the token"
jobs_after=$(api GET /api/ml/tasks | json "len(v['tasks'])")
[ "$jobs_after" -ge "$jobs_before" ] || fail "jobs lost in the upgrade: $jobs_before before, $jobs_after after"
live=$(api GET "/api/ml/models/$machine" | json "len([t for t in v['models'].values() if t])")
[ "$live" = 4 ] || fail "models lost in the upgrade: $live of 4 types left for $machine"
note "upgrade: restarted; config, token, jobs, models kept" "ok ($jobs_after jobs)"

echo "== remove and purge"
ct dpkg -r millwright >"$work/dpkg-remove.log" 2>&1 || fail "dpkg -r failed: $(tail -n 5 "$work/dpkg-remove.log")"
ct test -f /var/lib/millwright/token || fail "remove deleted the state"
ct dpkg -P millwright >"$work/dpkg-purge.log" 2>&1 || fail "dpkg -P failed: $(tail -n 5 "$work/dpkg-purge.log")"
ct test ! -e /var/lib/millwright || fail "purge left /var/lib/millwright"
note "remove keeps state; purge removes it" "ok"

# --- the watchdog fires for a stuck runner ---------------------------------------------------------------
echo "== a stuck runner: the watchdog fires and systemd restarts the daemon"
ct dpkg -i /root/millwright_2.deb >"$work/dpkg-reinstall.log" 2>&1 || fail "reinstall failed: $(tail -n 5 "$work/dpkg-reinstall.log")"
wait_active
ct sh -c 'printf "[Service]\nWatchdogSec=3s\nEnvironment=MILLWRIGHT_TEST_HANG_AT=runner.idle\n" > /etc/systemd/system/millwright.service.d/watchdog.conf'
ct systemctl daemon-reload
since=$(ct date '+%Y-%m-%d %H:%M:%S')
before=$(prop NRestarts)
ct systemctl restart millwright || true
fired=
for _ in $(seq 60); do
    if ct journalctl -u millwright --since "$since" --no-pager | grep -c 'Watchdog timeout' >/dev/null; then fired=1; break; fi
    sleep 0.5
done
[ -n "$fired" ] || fail "no watchdog timeout with a stuck runner: $(ct journalctl -u millwright --since "$since" --no-pager | tail -n 5)"
for _ in $(seq 40); do [ "$(prop NRestarts)" -gt "$before" ] && break; sleep 0.5; done
[ "$(prop NRestarts)" -gt "$before" ] || fail "systemd did not restart the daemon after the watchdog fired"
ct journalctl -u millwright --since "$since" --no-pager | grep -c 'pings withheld' >/dev/null || fail "the daemon did not log why it withheld the pings"
note "stuck runner: watchdog timeout, restart" "ok"
ct rm -f /etc/systemd/system/millwright.service.d/watchdog.conf
ct systemctl daemon-reload

echo
echo "== systemd suite passed in $(( $(date +%s) - suite_t0 )) s"
cat "$results"
