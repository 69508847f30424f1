#!/bin/bash
# install-deb.sh -- install the Debian-packaged OpenStack (bookworm = Zed) pieces that
# tests/cloud/oscloud-up.sh runs, WITHOUT letting any maintainer script start a service
# (there is no systemd on these machines, so invoke-rc.d would fall back to /etc/init.d and
# start MariaDB on 3306, glance-api, nova-api... : tests/tools/apt-install-no-start.sh forbids that).
#
# Idempotent: when every package is already installed it does nothing (OSCLOUD_FORCE_INSTALL=1 runs
# apt-get update + install anyway). Needs root.
set -euo pipefail
PKGS=(
  mariadb-server python3-pymysql uwsgi-core uwsgi-plugin-python3 curl procps
  python3-keystone neutron-common glance-common glance-api nova-common nova-api
  python3-octavia octavia-common
)
APT_FORCE_INSTALL="${OSCLOUD_FORCE_INSTALL:-0}" exec bash "$(dirname "$0")/../tools/apt-install-no-start.sh" "${PKGS[@]}"
