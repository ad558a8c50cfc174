#!/usr/bin/env bash
# Sets up ./.venv and runs the demo: an aggregator, three homes and their
# software actuators as real twistd processes on loopback, under a DR event.
# It prints the dashboard's URL, the manhole's ssh command and `jeisson`
# commands to try (kept on screen, and in access.txt in its work directory);
# its console view is the API's: OVER LIMIT with the figure whenever measured
# or committed power is above the limit, and countdowns to the events.
# Options go to the demo (python -m jeisson.demo --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m jeisson.demo "$@"
