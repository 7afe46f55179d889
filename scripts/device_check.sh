#!/usr/bin/env bash
# The GPU check, one command: on a lent device machine, from the repository root, with `.device` carried
# (packed here first by scripts/device_wheels.sh). Figures and logs go to $OUT (else outputs/device_check).
# Without CUDA it is a dry run: GPU steps are skipped with a line each, exit 0. Options: scripts/device/check.py -h
set -uo pipefail
cd "$(dirname "$0")/.."
# the device's own python3 there; here (no $OUT) the project's venv, for a dry run; $PYTHON wins over both
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3
  [ -z "${OUT:-}" ] && [ -x .venv/bin/python ] && PYTHON=.venv/bin/python
fi
export PYTHONUNBUFFERED=1
exec "$PYTHON" scripts/device/check.py "$@"
