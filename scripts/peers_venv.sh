#!/usr/bin/env bash
# The peers' environment for scripts/bench_peers.py: fastai 2.8 and timm's train.py, kept out of .venv
# (fastai pulls spaCy and more). torch, torchvision and timm at the project's tested versions (constraints.txt)
# so every side runs the same kernels; the default CUDA wheels (they run on the CPU too), never +cpu ones.
#   bash scripts/peers_venv.sh [folder]      # default: .venv-peers (git-ignored)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv-peers}"
python3.11 -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install -c constraints.txt torch==2.14.1 torchvision==0.29.1 timm==1.0.31 'fastai>=2.8,<2.9' psutil
"$venv/bin/python" -c "import fastai, timm, torch; print('fastai', fastai.__version__, 'timm', timm.__version__, 'torch', torch.__version__)"
