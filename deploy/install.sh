#!/usr/bin/env bash
# Installs millwright on a Raspberry Pi over ssh, for people without an apt repository:
#   deploy/install.sh [--deb FILE] HOST             install or upgrade (HOST as for ssh: pi@raspberrypi.local)
#   deploy/install.sh --uninstall HOST              stop and remove; keeps /var/lib/millwright (queue, models, token, data)
#   deploy/install.sh --purge HOST                  remove everything, state included
# HOST needs sudo for the ssh user. With a .deb (default: the newest target/debian/millwright_*_arm64.deb,
# made by deploy/build-pi.sh) the Pi's dpkg runs the package's scripts: user, conffile, enable, start.
# With --files (for a Pi without dpkg) the binary, unit, sysusers file and config are copied and
# systemctl is driven directly; --uninstall/--purge undo either way.
set -euo pipefail
cd "$(dirname "$0")/.."
ssh_cmd=${SSH:-ssh}
scp_cmd=${SCP:-scp}
mode=install deb= files=0
while [ $# -gt 1 ]; do
    case $1 in
        --deb) deb=$2; shift 2 ;;
        --files) files=1; shift ;;
        --uninstall) mode=uninstall; shift ;;
        --purge) mode=purge; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[ $# -eq 1 ] && [ "${1#-}" = "$1" ] || { sed -n '2,9p' "$0" >&2; exit 2; }
host=$1
remote() { $ssh_cmd "$host" "$@"; }

case $mode in
uninstall | purge)
    action=remove; [ $mode = purge ] && action=purge
    remote "set -e
        if dpkg-query -W millwright >/dev/null 2>&1; then sudo dpkg --$action millwright
        else
            sudo systemctl disable --now millwright.service 2>/dev/null || true
            sudo rm -f /usr/bin/millwright /usr/lib/systemd/system/millwright.service /usr/lib/sysusers.d/millwright.conf
            sudo systemctl daemon-reload
            if [ $mode = purge ]; then sudo rm -rf /etc/millwright /var/lib/millwright /var/lib/private/millwright; fi
        fi
        echo 'millwright removed ($mode)'"
    exit 0 ;;
esac

if [ $files = 0 ]; then
    if [ -z "$deb" ]; then deb=$(ls -t target/aarch64-unknown-linux-gnu/debian/millwright_*_arm64.deb target/debian/millwright_*_arm64.deb 2>/dev/null | head -n1 || true); fi
    [ -n "$deb" ] && [ -f "$deb" ] || { echo "no .deb found: run deploy/build-pi.sh first, or pass --deb FILE or --files" >&2; exit 1; }
    echo "== copying $(basename "$deb") to $host"
    $scp_cmd "$deb" "$host:/tmp/millwright.deb"
    # apt-get resolves the package's dependencies from the Pi's own sources; the unit starts at the end.
    remote "set -e; sudo apt-get install -y /tmp/millwright.deb || sudo dpkg -i /tmp/millwright.deb; rm -f /tmp/millwright.deb"
else
    bin=${BIN:-target/aarch64-unknown-linux-gnu/release/millwright}
    [ -f "$bin" ] || { echo "no $bin: run deploy/build-pi.sh first" >&2; exit 1; }
    stage=$(remote mktemp -d)
    echo "== copying files to $host:$stage"
    $scp_cmd "$bin" systemd/millwright.service systemd/millwright.sysusers systemd/config.toml "$host:$stage/"
    remote "set -e; cd $stage
        sudo install -m 0755 millwright /usr/bin/millwright
        sudo install -m 0644 millwright.service /usr/lib/systemd/system/millwright.service
        sudo install -m 0644 millwright.sysusers /usr/lib/sysusers.d/millwright.conf
        sudo install -d -m 0755 /etc/millwright
        # Never overwrite a config the technician edited.
        [ -e /etc/millwright/config.toml ] || sudo install -m 0644 config.toml /etc/millwright/config.toml
        [ -e /etc/millwright/mqtt-password ] || sudo install -m 0600 /dev/null /etc/millwright/mqtt-password
        sudo systemd-sysusers millwright.conf
        sudo systemctl daemon-reload
        sudo systemctl enable millwright.service
        sudo systemctl restart millwright.service
        cd /; rm -rf $stage"
fi
echo "== status"
remote "systemctl --no-pager --lines=5 status millwright.service || true"
echo "token: ssh $host sudo cat /var/lib/millwright/token"
