#!/bin/bash
# install-rsyslog.sh -- Debian's rsyslog for tests/test_amphora_logging.py, without starting the service
# (tests/tools/apt-install-no-start.sh). The tests run their own rsyslogd processes in network namespaces
# and stop them by PID. Idempotent. Needs root.
set -euo pipefail
exec bash "$(dirname "$0")/../tools/apt-install-no-start.sh" rsyslog
