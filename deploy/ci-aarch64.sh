#!/usr/bin/env bash
# CI for the Pi build (no Pi, no Docker): cross-builds the aarch64 binary, runs it under qemu-user
# (--version, simulate, serve, one demo machine's four models trained through the API), compares the batch's
# wall time with the native binary's, builds the arm64 .deb with cargo-deb and inspects it.
# Uses the ci-pi profile (release with thin LTO): much faster to build than the shipped fat-LTO release.
#   bash deploy/ci-aarch64.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
target=aarch64-unknown-linux-gnu
profile=ci-pi
sudo=; [ "$(id -u)" -eq 0 ] || sudo=sudo
t_start=$(date +%s)
declare -A took
timed() { local name=$1; shift; local t0; t0=$(date +%s); "$@"; took[$name]=$(( $(date +%s) - t0 )); }

install_tools() {
    local need=()
    for p in gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static curl file; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -c 'install ok installed' >/dev/null || need+=("$p")
    done
    if [ ${#need[@]} -gt 0 ]; then
        $sudo apt-get update -q
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
    fi
    rustup target list --installed | grep -cx "$target" >/dev/null || rustup target add "$target"
}
echo "== tools"
timed apt install_tools

echo "== cross build ($profile, $target)"
timed cross_build cargo build --locked --profile "$profile" --target "$target"
arm=target/$target/$profile/millwright
file -b "$arm" | grep -c 'ARM aarch64' >/dev/null || { echo "not an aarch64 binary: $(file -b "$arm")" >&2; exit 1; }
echo "highest glibc symbol: $(aarch64-linux-gnu-objdump -T "$arm" | grep -o 'GLIBC_[0-9.]*' | sort -V | tail -n1)"

echo "== native build ($profile), for the emulation ratio"
timed native_build cargo build --locked --profile "$profile"

smoke() { # name binary [runner...] -> batch seconds in $batch_<name>
    local name=$1; shift
    local out; out=$(mktemp)
    deploy/qemu-smoke.sh "$@" | tee "$out"
    printf -v "batch_$name" '%s' "$(sed -n 's/^SMOKE_BATCH_SECONDS=//p' "$out")"
    rm -f "$out"
}
echo "== smoke: native"
timed smoke_native smoke native "target/$profile/millwright"
echo "== smoke: aarch64 under qemu"
timed smoke_qemu smoke qemu "$arm" qemu-aarch64-static -L /usr/aarch64-linux-gnu

echo "== .deb"
if ! command -v cargo-deb >/dev/null; then timed cargo_deb_install cargo install cargo-deb --locked; fi
timed deb_build cargo deb --no-build --target "$target" --profile "$profile"
deb=$(ls -t target/$target/debian/millwright_*_arm64.deb target/debian/millwright_*_arm64.deb 2>/dev/null | head -n1)
[ -n "$deb" ] || { echo "no .deb produced" >&2; exit 1; }
deploy/check-deb.sh "$deb"

echo
echo "== summary"
for k in apt cross_build native_build smoke_native smoke_qemu cargo_deb_install deb_build; do
    [ -n "${took[$k]:-}" ] && printf '%-18s %5s s\n' "$k" "${took[$k]}"
done
echo "batch (4 models, submit to SUCCESS): native ${batch_native} s, qemu ${batch_qemu} s, ratio $(awk "BEGIN{printf \"%.1f\", $batch_qemu / $batch_native}")x"
echo "package: $deb ($(du -h "$deb" | cut -f1))"
echo "total: $(( $(date +%s) - t_start )) s"
