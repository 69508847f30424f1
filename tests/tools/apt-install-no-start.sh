#!/bin/bash
# apt-install-no-start.sh PACKAGE... -- install Debian packages WITHOUT letting their maintainer scripts
# start a service (a policy-rc.d that exits 101 forbids that; there is no systemd here, so invoke-rc.d
# would otherwise fall back to /etc/init.d and start, say, redis-server on 6379). The tests start their
# own servers on 127.0.0.1 with private ports and directories, and stop them by PID.
#
# Idempotent: packages already installed are skipped (APT_FORCE_INSTALL=1 to run apt-get anyway).
# Needs root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
[ $# -gt 0 ] || { echo "usage: $0 PACKAGE..." >&2; exit 2; }

missing=()
for p in "$@"; do
  if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" != installed ]; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} = 0 ] && [ "${APT_FORCE_INSTALL:-0}" != 1 ]; then
  echo "apt-install-no-start: $* already installed"
  exit 0
fi
[ ${#missing[@]} = 0 ] || echo "apt-install-no-start: missing: ${missing[*]}"
if [ "$(id -u)" != 0 ]; then
  echo "apt-install-no-start: must run as root (apt-get install)" >&2
  exit 1
fi

# policy-rc.d: exit 101 = "do not start/stop services". Keep an existing one that already denies;
# otherwise put ours in place for the install and restore the previous state afterwards.
POLICY=/usr/sbin/policy-rc.d
made_policy=0; saved_policy=""
cleanup() {
  if [ "$made_policy" = 1 ]; then
    rm -f "$POLICY"
    if [ -n "$saved_policy" ]; then mv -f "$saved_policy" "$POLICY"; fi
  fi
}
trap cleanup EXIT
rc=0; [ -x "$POLICY" ] && { "$POLICY" "$1" start >/dev/null 2>&1 || rc=$?; }
if [ "$rc" != 101 ]; then
  if [ -e "$POLICY" ]; then saved_policy=$POLICY.apt-install-saved; cp -p "$POLICY" "$saved_policy"; fi
  printf '#!/bin/sh\n# written by tests/tools/apt-install-no-start.sh: no service starts during install\nexit 101\n' > "$POLICY"
  chmod +x "$POLICY"
  made_policy=1
fi

apt-get update -q
apt-get install -y -q --no-install-recommends "$@"
echo "apt-install-no-start: $* installed"
