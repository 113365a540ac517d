#!/usr/bin/env bash
# The Pi's view (BENCHMARKS.md, table 3): the demo machine's batch of four trained by the aarch64 binary under
# qemu-user beside the native binary, in one run, at the full thread budget and at the guard's hot budget
# (guard.hot_threads). Needs the packages deploy/ci-aarch64.sh installs (gcc-aarch64-linux-gnu,
# libc6-dev-arm64-cross, qemu-user-static) and the aarch64 Rust target.
#   bash benches/pi-view.sh            # ROWS=50000 REPEAT=1 by default
set -euo pipefail
cd "$(dirname "$0")/.."
target=aarch64-unknown-linux-gnu
profile=ci-pi
rows=${ROWS:-50000}
repeat=${REPEAT:-1}
cargo build --locked --profile "$profile" --target "$target" >&2
cargo build --locked --profile "$profile" >&2
native=target/$profile/millwright
arm=target/$target/$profile/millwright
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
args=(bench scaling --cases "$rows" --hot --repeat "$repeat" --json)
echo "== native ($(uname -m))" >&2
"$native" "${args[@]}" >"$out/native.json"
echo "== aarch64 under qemu-user" >&2
qemu-aarch64-static -L /usr/aarch64-linux-gnu "$arm" "${args[@]}" >"$out/qemu.json"
python3 - "$out/native.json" "$out/qemu.json" <<'PY'
import json, sys
native, qemu = (json.load(open(p)) for p in sys.argv[1:3])
print(f"native: {native['machine']}")
print(f"qemu:   {qemu['machine']}")
print(f"{'case':<14} {'threads':>7} {'model':<15} {'native s':>9} {'qemu s':>9} {'ratio':>7} {'native MB':>9} {'qemu MB':>8}")
for n, q in zip(native["scaling"], qemu["scaling"]):
    assert (n["case"], n["model"], n["threads"]) == (q["case"], q["model"], q["threads"])
    print(f"{n['case']:<14} {n['threads']:>7} {n['model']:<15} {n['seconds']:>9.2f} {q['seconds']:>9.2f} {q['seconds']/n['seconds']:>7.1f} {n['peak_rss_mb']:>9.0f} {q['peak_rss_mb']:>8.0f}")
PY
