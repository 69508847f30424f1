#!/bin/bash
# oscloud-down.sh -- stop what oscloud-up.sh started, by the PIDs it recorded in $OSCLOUD_BASE/run
# (default /tmp/oscloud/run), including the workers the eventlet servers forked. Never kills by name.
# The state dir is kept (next start is a warm start); remove it for a cold one.
BASE=$(realpath -m "${OSCLOUD_BASE:-/tmp/oscloud/run}"); R=$BASE/run
APIS="octavia nova glance neutron keystone"
alive() { # name : its recorded PID is running AND is ours (its command line names $BASE/), so a
         # PID reused by another process after a reboot or a lost session is never touched
  local p; [ -f "$R/$1.pid" ] && p=$(cat "$R/$1.pid") && kill -0 "$p" 2>/dev/null &&
    tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$BASE/"
}
descendants() { # pid : all descendant PIDs, depth first
  local c
  for c in $(pgrep -P "$1" 2>/dev/null); do echo "$c"; descendants "$c"; done
}
[ -d "$R" ] || { echo "oscloud-down: nothing to stop ($R does not exist)"; exit 0; }

kids=()
for n in $APIS; do
  if alive $n; then
    pid=$(cat "$R/$n.pid"); kids+=($(descendants "$pid"))
    kill -TERM "$pid" 2>/dev/null
  fi
done
for i in $(seq 50); do
  left=0; for n in $APIS; do alive $n && left=1; done
  [ $left = 0 ] && break; sleep 0.2
done
for n in $APIS; do alive $n && { echo "oscloud-down: $n did not stop on TERM, killing" >&2; kill -KILL "$(cat "$R/$n.pid")"; }; done
# forked API workers normally exit with their parent; kill any that did not
for k in "${kids[@]}"; do kill -0 "$k" 2>/dev/null && kill -KILL "$k" 2>/dev/null; done
if alive mysql; then
  kill -TERM "$(cat "$R/mysql.pid")"
  for i in $(seq 150); do alive mysql || break; sleep 0.2; done
  alive mysql && { echo "oscloud-down: mariadbd did not stop on TERM, killing" >&2; kill -KILL "$(cat "$R/mysql.pid")"; }
fi
rm -f "$R"/*.pid "$BASE/clouds.yaml"
echo "oscloud-down: stopped (state kept in $BASE)"
true
