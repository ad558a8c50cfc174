#!/usr/bin/env bash
# Sets up ./.venv and runs the demo: an aggregator, three homes and their
# software actuators as real twistd processes on loopback, under a DR event.
# Options go to the demo (python -m jeisson.demo --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m jeisson.demo "$@"
