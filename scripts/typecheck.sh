#!/usr/bin/env bash
# Type-checks the jeisson package with mypy, configured in pyproject.toml
# ([tool.mypy]: the whole package, the pure modules under --strict's flags).
# Needs the test tools: bash scripts/setup.sh --test.  Extra arguments go to
# mypy (e.g. a file or two while working on them).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m mypy "$@"
