#!/bin/bash
# get-promtool.sh -- install promtool (Prometheus' rule checker and rule unit-test runner) for
# tests/test_alerts.py, which checks and unit-tests the chart's PrometheusRule with it.
#
# promtool comes from Debian's `prometheus` package (bookworm: 2.42, /usr/bin/promtool). The package
# also ships the Prometheus server and its init script: it is installed with apt-install-no-start.sh,
# so the server is NOT started (nothing of the tests needs it; promtool runs the rules itself).
#
# Idempotent: does nothing but print the version when promtool already runs (FORCE=1 to reinstall).
# Needs root (apt-get install).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROMTOOL="${PROMTOOL:-/usr/bin/promtool}"

if [[ "${FORCE:-0}" != 1 ]] && command -v "$PROMTOOL" >/dev/null && "$PROMTOOL" --version >/dev/null 2>&1; then
  echo "promtool already installed: $(command -v "$PROMTOOL") ($("$PROMTOOL" --version 2>&1 | head -n1))"
  exit 0
fi

if [[ "${FORCE:-0}" == 1 ]]; then
  APT_FORCE_INSTALL=1 bash "$HERE/apt-install-no-start.sh" prometheus
else
  bash "$HERE/apt-install-no-start.sh" prometheus
fi

# refuse an install whose promtool does not run
/usr/bin/promtool --version >/dev/null 2>&1 || { echo "get-promtool.sh: /usr/bin/promtool does not run" >&2; exit 1; }
echo "promtool installed: /usr/bin/promtool ($(/usr/bin/promtool --version 2>&1 | head -n1))"
