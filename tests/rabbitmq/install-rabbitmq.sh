#!/bin/bash
# install-rabbitmq.sh -- install Debian's rabbitmq-server (bookworm: RabbitMQ 3.10, Erlang 25) for
# tests/test_messaging.py, without starting the service or epmd (tests/tools/apt-install-no-start.sh).
# The tests start their own broker (tests/rabbitmq/plugin.py) on 127.0.0.1 with private ports and
# directories, and stop it by PID. Idempotent. Needs root.
set -euo pipefail
exec bash "$(dirname "$0")/../tools/apt-install-no-start.sh" rabbitmq-server
