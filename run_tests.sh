#!/usr/bin/env bash
# Runs the test suite in the project's venv (created on first use).
# Extra arguments go to pytest, e.g. `bash run_tests.sh -k clip` or `bash run_tests.sh -m slow`.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_env.sh
lseg_setup
exec "$LSEG_PYTHON" -m pytest "$@"
