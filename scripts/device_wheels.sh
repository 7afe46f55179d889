#!/usr/bin/env bash
# Pack what the GPU check needs into .device/ (git-ignored): the wheels the device image lacks, timm's train.py,
# a small copy of hymenoptera; then prove the folder installs and fits. Run here, where the registry is reachable.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" scripts/device/prepare.py "$@"
