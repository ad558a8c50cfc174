#!/usr/bin/env bash
# Sets up ./.venv with the test tools and runs the linter, the type checker
# (mypy, configured in pyproject.toml) and every test,
# unit and end-to-end (real twistd processes on loopback ports).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/python -m ruff check jeisson tests twisted bench
bash scripts/typecheck.sh
exec .venv/bin/python -m pytest -q "$@"
