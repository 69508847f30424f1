#!/usr/bin/env bash
# tests/octavia_real/install-octavia.sh -- the real Octavia, from PyPI, in a venv of its own.
#
#   bash tests/octavia_real/install-octavia.sh          # -> /opt/octavia-venv
#   OCTAVIA_VENV=/tmp/ov bash tests/octavia_real/install-octavia.sh
#
# Installs images/octavia/requirements.txt (Octavia, PyMySQL, pyuwsgi) with the constraints of the
# operator's default release (images/octavia/constraints-2026.1.txt: Octavia 18.0.1) into
# $OCTAVIA_VENV: the same two files the project's Octavia image installs (images/octavia/Dockerfile). Octavia never goes into the project's own venv: its package name
# and its dependency set would clash with the operator's.
#
# Idempotent: a venv that already holds this exact pin set (stamp file) is left alone, so a
# second run takes a second. Measured on this machine kind (2 cores, Python 3.11.7):
# ~60 s with pip's cache warm, see docs/database.md for the cold figure.
#
# Environment: OCTAVIA_VENV (default /opt/octavia-venv), PYTHON (default python3; must be 3.11
# or newer), FORCE=1 to rebuild the venv from scratch.
set -Eeuo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${OCTAVIA_VENV:-/opt/octavia-venv}"
PY="${PYTHON:-python3}"
IMAGES="$(cd "$HERE/../../images/octavia" && pwd)"
RELEASE="${OCTAVIA_RELEASE:-2026.1}"
CONSTRAINTS="$IMAGES/constraints-$RELEASE.txt"
REQUIREMENTS="$IMAGES/requirements.txt"
export PIP_DISABLE_PIP_VERSION_CHECK=1
t0=$(date +%s)

want="$(cat "$REQUIREMENTS" "$CONSTRAINTS" | sha256sum | cut -d' ' -f1)"
stamp="$VENV/.octavia-operator-install"

if [ "${FORCE:-0}" != 1 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
   && [ -x "$VENV/bin/octavia-db-manage" ] && [ -x "$VENV/bin/oslo-config-validator" ] && [ -x "$VENV/bin/uwsgi" ]; then
  echo "install-octavia: $VENV is up to date ($("$VENV/bin/python" -c 'import importlib.metadata as m; print("octavia", m.version("octavia"))'))"
  exit 0
fi

# Debian's own python3 has no ensurepip without python3-venv.
if ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "install-octavia: $PY cannot create venvs; installing python3-venv"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv
  else
    echo "install-octavia: $PY cannot create venvs (install python3-venv)" >&2
    exit 1
  fi
fi

if [ "${FORCE:-0}" = 1 ] || [ ! -x "$VENV/bin/pip" ]; then
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
fi
rm -f "$stamp"
"$VENV/bin/pip" install --quiet -c "$CONSTRAINTS" -r "$REQUIREMENTS" 2> >(grep -v "is ignored: it is neither" >&2)
"$VENV/bin/octavia-db-manage" --help >/dev/null
"$VENV/bin/oslo-config-validator" --help >/dev/null
"$VENV/bin/uwsgi" --version >/dev/null
echo "$want" > "$stamp"
echo "install-octavia: $("$VENV/bin/python" -c 'import importlib.metadata as m; print("octavia", m.version("octavia"))') in $VENV ($(( $(date +%s) - t0 )) s)"
