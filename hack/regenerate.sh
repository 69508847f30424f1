#!/usr/bin/env bash
# Regenerate every generated file after changing the API model (operator/octavia_operator/spec.py):
# the CRD, the chart's copy of it, and deploy/operator.yaml (rendered from the chart with Helm).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
$PY -m octavia_operator.crd > deploy/crds/octaviadeployments.octavia-operator.dev.yaml
[ -x .tools/bin/helm ] || bash tests/tools/get-helm.sh
$PY tests/test_chart.py
