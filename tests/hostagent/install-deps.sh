#!/bin/bash
# Install what the host agent's netns tests need (Debian 12), idempotently, without
# letting any maintainer script start a service on this machine (policy-rc.d guard;
# removed afterwards only if this script created it).
#   openvswitch-switch : ovsdb-server, ovs-vswitchd, ovs-vsctl, ovsdb-tool, vswitch.ovsschema
#                        (the tests start the daemons by hand, inside their own netns)
#   iproute2           : ip netns / ip link / ip addr
#   iptables           : iptables-nft / iptables-legacy (+ -save/-restore) used by the agent
#   nftables           : nft, to inspect/flush rules in tests
#   ethtool            : turn TX checksum offload off on veths plugged into the userspace br-int
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(openvswitch-switch iproute2 iptables nftables ethtool)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all present: ${pkgs[*]}"; exit 0
fi
made_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made_policy=1
fi
trap 'if [ $made_policy = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi' EXIT
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
