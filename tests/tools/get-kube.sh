#!/usr/bin/env bash
# get-kube.sh -- the binaries of a real Kubernetes control plane for the tests, in .tools/kube.
#
# The tests start etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok from the
# directory named by KUBE_ASSETS (tests/kube/cluster.py). When KUBE_ASSETS is unset, tests/run.sh
# calls this script, which unpacks the xz-compressed binaries of the workplace's shared folder
# (KUBE_SHARED, default ../shared/kube beside the repository) into .tools/kube and checks them
# against its SHA256SUMS. Idempotent: binaries that are already there and match are kept.
#
# On another machine, put the same binaries in a directory and point KUBE_ASSETS at it:
#   etcd 3.6, kube-apiserver / kube-controller-manager / kube-scheduler 1.36 (the "server" tarball
#   of a Kubernetes release, or controller-runtime's envtest assets for etcd and kube-apiserver)
#   and kwok (sigs.k8s.io/kwok releases). See the README, "Running the tests".
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SRC="${KUBE_SHARED:-$ROOT/../shared/kube}"
DEST="$ROOT/.tools/kube"
BINS="etcd kube-apiserver kube-controller-manager kube-scheduler kwok"

if [ ! -d "$SRC" ]; then
  echo "get-kube.sh: $SRC does not exist; set KUBE_ASSETS to a directory holding: $BINS" >&2
  exit 2
fi
command -v xz >/dev/null || apt-get install -y -q --no-install-recommends xz-utils
mkdir -p "$DEST"
for b in $BINS; do
  want=$(awk -v b="$b" '$2 == b {print $1}' "$SRC/SHA256SUMS")
  if [ -x "$DEST/$b" ] && [ "$(sha256sum "$DEST/$b" | cut -d' ' -f1)" = "$want" ]; then
    continue
  fi
  xz -dc "$SRC/$b.xz" >"$DEST/$b.tmp"
  got=$(sha256sum "$DEST/$b.tmp" | cut -d' ' -f1)
  if [ -n "$want" ] && [ "$got" != "$want" ]; then
    echo "get-kube.sh: $b: sha256 $got, expected $want" >&2
    rm -f "$DEST/$b.tmp"
    exit 1
  fi
  chmod +x "$DEST/$b.tmp"
  mv "$DEST/$b.tmp" "$DEST/$b"
done
cp "$SRC/kwok-stages.yaml" "$DEST/kwok-stages.upstream.yaml"
echo "Kubernetes binaries in $DEST: $("$DEST/kube-apiserver" --version 2>/dev/null), etcd $("$DEST/etcd" --version 2>/dev/null | head -1 | awk '{print $NF}')"
