#!/usr/bin/env bash
# Builds the Raspberry Pi (arm64) binary and .deb on a Debian/Ubuntu x86_64 machine, without Docker:
#   bash deploy/build-pi.sh            -> target/aarch64-unknown-linux-gnu/release/millwright
#                                         millwright_<version>-1_arm64.deb (cargo-deb's output path is printed)
# Installs what it needs: the aarch64 cross gcc and libc (apt-get; sudo when not root), the rustup target,
# and cargo-deb. PROFILE=ci-pi builds the faster-to-compile CI profile instead of the shipped release one.
set -euo pipefail
cd "$(dirname "$0")/.."
target=aarch64-unknown-linux-gnu
profile=${PROFILE:-release}
sudo=; [ "$(id -u)" -eq 0 ] || sudo=sudo

need=()
for p in gcc-aarch64-linux-gnu libc6-dev-arm64-cross; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -c 'install ok installed' >/dev/null || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "== apt-get install ${need[*]}"
    $sudo apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi
rustup target list --installed | grep -cx "$target" >/dev/null || rustup target add "$target"
command -v cargo-deb >/dev/null || { echo "== cargo install cargo-deb"; cargo install cargo-deb --locked; }

echo "== cargo build --profile $profile --target $target"
cargo build --locked --profile "$profile" --target "$target"
bin=target/$target/$profile/millwright
echo "== cargo deb"
deb=$(cargo deb --no-build --target "$target" --profile "$profile" | tail -n1)
echo "binary: $bin ($(file -b "$bin" 2>/dev/null | cut -d, -f1-2 || echo aarch64))"
echo "package: $deb"
