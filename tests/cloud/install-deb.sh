#!/bin/bash
# install-deb.sh -- install the Debian-packaged OpenStack (bookworm = Zed) pieces that
# tests/cloud/oscloud-up.sh runs, WITHOUT letting any maintainer script start a service
# (there is no systemd on these machines, so invoke-rc.d would fall back to /etc/init.d and
# start MariaDB on 3306, glance-api, nova-api... : a policy-rc.d that exits 101 forbids that).
#
# Idempotent: when every package is already installed it does nothing (set OSCLOUD_FORCE_INSTALL=1
# to run apt-get update + install anyway). Needs root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

PKGS=(
  mariadb-server python3-pymysql uwsgi-core uwsgi-plugin-python3 curl procps
  python3-keystone neutron-common glance-common glance-api nova-common nova-api
  python3-octavia octavia-common
)

missing=()
for p in "${PKGS[@]}"; do
  if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" != installed ]; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} = 0 ] && [ "${OSCLOUD_FORCE_INSTALL:-0}" != 1 ]; then
  echo "install-deb: all ${#PKGS[@]} packages already installed"
  exit 0
fi
[ ${#missing[@]} = 0 ] || echo "install-deb: missing: ${missing[*]}"

if [ "$(id -u)" != 0 ]; then
  echo "install-deb: must run as root (apt-get install)" >&2
  exit 1
fi

# policy-rc.d: exit 101 = "do not start/stop services". Keep an existing one that already denies
# (Docker-style images ship one); otherwise put ours in place for the install and restore afterwards.
POLICY=/usr/sbin/policy-rc.d
made_policy=0; saved_policy=""
cleanup() {
  if [ "$made_policy" = 1 ]; then
    rm -f "$POLICY"
    if [ -n "$saved_policy" ]; then mv -f "$saved_policy" "$POLICY"; fi
  fi
}
trap cleanup EXIT
rc=0; [ -x "$POLICY" ] && { "$POLICY" mariadb start >/dev/null 2>&1 || rc=$?; }
if [ "$rc" != 101 ]; then
  if [ -e "$POLICY" ]; then saved_policy=$POLICY.oscloud-saved; cp -p "$POLICY" "$saved_policy"; fi
  printf '#!/bin/sh\n# written by tests/cloud/install-deb.sh: no service starts during install\nexit 101\n' > "$POLICY"
  chmod +x "$POLICY"
  made_policy=1
fi

apt-get update -q
apt-get install -y -q --no-install-recommends "${PKGS[@]}"
echo "install-deb: done"
