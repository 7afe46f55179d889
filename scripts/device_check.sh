#!/usr/bin/env bash
# The GPU check, one command: on a lent device machine, from the repository root, with `.device` carried
# (packed here first by scripts/device_wheels.sh). Figures and logs go to $OUT (else outputs/device_check).
# Without CUDA it is a dry run: GPU steps are skipped with a line each, exit 0. Options: scripts/device/check.py -h
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] && [ -z "${OUT:-}" ] && PYTHON=.venv/bin/python   # a dry run here uses the project's venv
export PYTHONUNBUFFERED=1
exec "$PYTHON" scripts/device/check.py "$@"
