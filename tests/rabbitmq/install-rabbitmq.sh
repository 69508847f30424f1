#!/bin/bash
# install-rabbitmq.sh -- install Debian's rabbitmq-server (bookworm: RabbitMQ 3.10, Erlang 25) for
# tests/test_messaging.py, WITHOUT letting the maintainer scripts start the service or epmd (a
# policy-rc.d that exits 101 forbids that; there is no systemd here, so invoke-rc.d would otherwise
# fall back to /etc/init.d). The tests start their own broker (tests/rabbitmq/plugin.py) on
# 127.0.0.1 with private ports and directories, and stop it by PID.
#
# Idempotent: when the package is already installed it does nothing (RABBITMQ_FORCE_INSTALL=1 to run
# apt-get update + install anyway). Needs root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

PKGS=(rabbitmq-server)

missing=()
for p in "${PKGS[@]}"; do
  if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" != installed ]; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} = 0 ] && [ "${RABBITMQ_FORCE_INSTALL:-0}" != 1 ]; then
  echo "install-rabbitmq: ${PKGS[*]} already installed"
  exit 0
fi
[ ${#missing[@]} = 0 ] || echo "install-rabbitmq: missing: ${missing[*]}"

if [ "$(id -u)" != 0 ]; then
  echo "install-rabbitmq: must run as root (apt-get install)" >&2
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
rc=0; [ -x "$POLICY" ] && { "$POLICY" rabbitmq-server start >/dev/null 2>&1 || rc=$?; }
if [ "$rc" != 101 ]; then
  if [ -e "$POLICY" ]; then saved_policy=$POLICY.rabbitmq-saved; cp -p "$POLICY" "$saved_policy"; fi
  printf '#!/bin/sh\n# written by tests/rabbitmq/install-rabbitmq.sh: no service starts during install\nexit 101\n' > "$POLICY"
  chmod +x "$POLICY"
  made_policy=1
fi

apt-get update -q
apt-get install -y -q --no-install-recommends "${PKGS[@]}"
echo "install-rabbitmq: done"
