#!/usr/bin/env bash
# images/build.sh -- build the project's images with podman, from Debian's packages and PyPI only.
#
#   bash images/build.sh                 # the Octavia image of the default release and the operator image
#   RELEASES="2025.2 2026.1" bash images/build.sh
#
# Images (the operator's defaults, see operator/octavia_operator/releases.py):
#   ghcr.io/octavia-operator/octavia:<release>-<version>      images/octavia/Dockerfile
#   ghcr.io/octavia-operator/octavia-operator:<version>       Dockerfile (operator and host agent)
#
# No registry is needed:
#   - the Debian 12 base is a root filesystem made by debootstrap (minbase) and imported into podman as
#     localhost/debian:bookworm-slim (BASE=... to use another base image instead);
#   - Python packages come from a wheelhouse that pip fills on the host (pip wheel, with the same
#     requirements and constraints the tests install), bound into the build at /wheels.
# Idempotent: an image whose inputs (Dockerfile, requirements, constraints, project sources) have not
# changed is not rebuilt (label octavia-operator.dev/inputs). Needs root, podman with runc, debootstrap.
set -Eeuo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TOOLS="$ROOT/.tools"; mkdir -p "$TOOLS"
VERSION="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' operator/octavia_operator/__init__.py)"
DEFAULT_RELEASE="$(sed -n 's/^DEFAULT_RELEASE = "\(.*\)"/\1/p' operator/octavia_operator/spec.py)"
RELEASES="${RELEASES:-$DEFAULT_RELEASE}"
BASE="${BASE:-localhost/debian:bookworm-slim}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PY="${PYTHON:-python3}"
PODMAN=(podman --runtime runc)
BUILD=("${PODMAN[@]}" build --network host --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
t0=$(date +%s)
log() { echo "images: $* ($(( $(date +%s) - t0 )) s)"; }
build() { # log-name podman-build-args... : the build's output goes to .tools/images-<name>.log
  local name="$1"; shift
  if ! "${BUILD[@]}" "$@" >"$TOOLS/images-$name.log" 2>&1; then
    tail -n 60 "$TOOLS/images-$name.log" >&2
    echo "images: building $name failed (whole log: $TOOLS/images-$name.log)" >&2
    exit 1
  fi
}

inputs_of() { cat "$@" | sha256sum | cut -c1-16; }
current() { # image inputs: does the image exist with these inputs?
  [ "$("${PODMAN[@]}" image inspect --format '{{ index .Labels "octavia-operator.dev/inputs" }}' "$1" 2>/dev/null)" = "$2" ]
}

# 1. the base
if [ "$BASE" = localhost/debian:bookworm-slim ] && ! "${PODMAN[@]}" image exists "$BASE"; then
  rootfs="$TOOLS/rootfs-bookworm"
  rm -rf "$rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >"$TOOLS/debootstrap.log" 2>&1 \
    || { tail -20 "$TOOLS/debootstrap.log" >&2; exit 1; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | "${PODMAN[@]}" import --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
  rm -rf "$rootfs"
  log "base $BASE imported from a debootstrap root filesystem"
fi

# 2. the Octavia image, per release
for rel in $RELEASES; do
  img="ghcr.io/octavia-operator/octavia:$rel-$VERSION"
  cons="images/octavia/constraints-$rel.txt"
  [ -f "$cons" ] || { echo "images: no $cons" >&2; exit 1; }
  want="$(inputs_of images/octavia/Dockerfile images/octavia/requirements.txt "$cons" <(echo "$BASE"))"
  if current "$img" "$want"; then log "$img is up to date"; continue; fi
  wheels="$TOOLS/wheelhouse/octavia-$rel"
  mkdir -p "$wheels"
  "$PY" -m pip wheel --quiet --disable-pip-version-check -w "$wheels" -c "$cons" -r images/octavia/requirements.txt 2> >(grep -v "is ignored: it is neither" >&2)
  # every pin, also those only the image's Python needs (environment markers: Debian's 3.11.2 wants
  # async-timeout for redis, the host's newer 3.11 does not, so the resolution above skipped it)
  "$PY" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$wheels" \
    -r <(grep -E '^[A-Za-z0-9][^ ]*==' "$cons") 2> >(grep -v "is ignored: it is neither" >&2)
  build "octavia-$rel" --build-arg BASE="$BASE" --build-arg RELEASE="$rel" \
    --build-arg PIP_OPTS="--no-index --find-links /wheels" -v "$wheels:/wheels:ro" \
    --label "octavia-operator.dev/inputs=$want" -t "$img" -f images/octavia/Dockerfile images/octavia
  log "$img built"
done

# 3. the operator image (operator and host agent)
img="ghcr.io/octavia-operator/octavia-operator:$VERSION"
want="$(inputs_of Dockerfile pyproject.toml <(find operator hostagent -type f \( -name "*.py" -o -name "*.toml" \) -not -path "*/__pycache__/*" | sort | xargs sha256sum) <(echo "$BASE"))"
if current "$img" "$want"; then
  log "$img is up to date"
else
  wheels="$TOOLS/wheelhouse/operator"
  rm -rf "$wheels"; mkdir -p "$wheels"
  "$PY" -m pip wheel --quiet --disable-pip-version-check -w "$wheels" . "setuptools>=69" wheel 2> >(grep -v "is ignored: it is neither" >&2)
  build operator --build-arg BASE="$BASE" --build-arg PIP_OPTS="--no-index --find-links /wheels" \
    -v "$wheels:/wheels:ro" --label "octavia-operator.dev/inputs=$want" -t "$img" -f Dockerfile .
  log "$img built"
fi
