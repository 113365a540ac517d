#!/usr/bin/env bash
# Inspects a millwright .deb: contents, control fields, conffile, maintainer scripts, binary architecture,
# and (when systemd-analyze exists) verifies the packaged unit.   deploy/check-deb.sh FILE.deb
set -euo pipefail
deb=$1
fail() { echo "DEB CHECK FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
dpkg-deb -I "$deb" | tee "$tmp/info"
dpkg-deb -c "$deb" | tee "$tmp/contents"
grep -q '^ Architecture: arm64$' "$tmp/info" || fail "Architecture is not arm64"
grep -q '^ Package: millwright$' "$tmp/info" || fail "Package is not millwright"
grep -q '^ Depends:.*systemd' "$tmp/info" || fail "Depends lacks systemd"
for f in ./usr/bin/millwright ./usr/lib/systemd/system/millwright.service ./usr/lib/sysusers.d/millwright.conf ./etc/millwright/config.toml; do
    grep -q " $f\$" "$tmp/contents" || fail "missing $f"
done
dpkg-deb -x "$deb" "$tmp/root"
dpkg-deb -e "$deb" "$tmp/control"
grep -qx '/etc/millwright/config.toml' "$tmp/control/conffiles" || fail "config.toml is not a conffile"
file -b "$tmp/root/usr/bin/millwright" | grep -c 'ARM aarch64' >/dev/null || fail "binary is not aarch64: $(file -b "$tmp/root/usr/bin/millwright")"
grep -q 'systemd-sysusers' "$tmp/control/postinst" || fail "postinst does not create the user"
grep -q 'deb-systemd-helper' "$tmp/control/postinst" || fail "postinst does not enable the unit"
grep -q '_dh_action=start' "$tmp/control/postinst" || fail "postinst does not start the unit"
grep -q 'mqtt-password' "$tmp/control/postinst" || fail "postinst does not create the credential file"
grep -q 'deb-systemd-invoke stop' "$tmp/control/prerm" || fail "prerm does not stop the unit"
grep -q 'purge' "$tmp/control/postrm" || fail "postrm has no purge step"
echo "deb check: ok ($(stat -c %s "$deb") bytes)"
if command -v systemd-analyze >/dev/null; then
    # verify needs ExecStart's binary at its path: point it into the extracted tree.
    sed "s#^ExecStart=/usr/bin/millwright#ExecStart=$tmp/root/usr/bin/millwright#" \
        "$tmp/root/usr/lib/systemd/system/millwright.service" > "$tmp/millwright.service"
    echo "== systemd-analyze verify"
    systemd-analyze verify "$tmp/millwright.service" && echo "systemd-analyze verify: ok"
    echo "== systemd-analyze security (offline)"
    systemd-analyze security --offline=true "$tmp/millwright.service" 2>&1 | tail -n 3 || true
fi
