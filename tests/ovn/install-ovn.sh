#!/bin/bash
# tests/ovn/install-ovn.sh -- install Debian's OVN central pieces (ovsdb-server, ovsdb-tool, ovn-nbctl,
# ovn-sbctl and the NB/SB schemas in /usr/share/ovn) that tests/ovn/plugin.py and tests/ovn/prototype.py
# run by hand, WITHOUT letting a maintainer script start ovn-northd or the OVN databases on the default
# 6641/6642 ports (tests/tools/apt-install-no-start.sh). Idempotent. Needs root. Bookworm ships OVN 23.03
# and Open vSwitch 3.1.
set -euo pipefail
exec bash "$(dirname "$0")/../tools/apt-install-no-start.sh" ovn-central ovn-common openvswitch-common
