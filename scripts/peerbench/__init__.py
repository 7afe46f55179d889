"""The pieces of scripts/bench_peers.py: each side's command and results, the watched process, the shared
weights files, the peers' split, the linear probe and the report. ``fastai_run.py`` runs in the peers' venv."""
