#!/usr/bin/env bash
# Sets up ./.venv with the test tools and runs the linter and every test,
# unit and end-to-end (real twistd processes on loopback ports).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/python -m ruff check jeisson tests twisted bench
exec .venv/bin/python -m pytest -q "$@"
