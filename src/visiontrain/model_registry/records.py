"""What a registered version remembers of the run that made it, read from the run dir's own files.

The record is plain data (JSON): the held-out metrics, which data (a fingerprint), the config and the overrides
the run was launched with, and the code version. Nothing in it is ever instantiated: ``visiontrain retrain``
re-runs the overrides through the same command-line checks as any `visiontrain train`.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from visiontrain.core.files import sha256_of_file
from visiontrain.errors import RegistryError

DATA_FILES = ("split_csv", "lineage_csv")  # what the run used, row by row (images: path,label,split)


def training_record(run_dir: str | Path) -> dict[str, Any]:
    """The record of the finished run in ``run_dir`` (its summary.json, .hydra/ files and data listing)."""
    run_dir = Path(run_dir)
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError) as error:
        raise RegistryError(f"{run_dir}: no readable summary.json ({error}); register a finished run, or the "
                            "model file alone with `visiontrain models register onnx=<file>`") from None
    evaluation = summary.get("evaluation") or {}
    data = summary.get("data") or {}
    return {
        "task": summary.get("task"),
        "experiment": summary.get("experiment"),
        "run_dir": str(run_dir),
        "monitor": summary.get("monitor"),
        "metrics": {split: (result or {}).get("metrics", {}) for split, result in evaluation.items()
                    if isinstance(result, dict)},
        "held_out_rows": {split: (result or {}).get("rows") for split, result in evaluation.items()
                          if isinstance(result, dict)},
        "classes": summary.get("classes"),
        "data": {key: data.get(key) for key in ("source", "rows_in", "rows_kept", "rows_rejected", "split_rows")
                 if key in data},
        "data_fingerprint": data_fingerprint(summary),
        "overrides": _overrides(run_dir),
        "config": _text(run_dir / ".hydra" / "config.yaml"),
        "code_version": code_version(summary.get("versions") or {}),
        "versions": summary.get("versions"),
    }


def data_fingerprint(summary: dict[str, Any]) -> str | None:
    """sha256 of what the run trained on: its row-by-row listing (split.csv or the table's lineage), else the
    source file; None when neither is on disk any more."""
    files = summary.get("files") or {}
    data = summary.get("data") or {}
    for key in DATA_FILES:
        path = files.get(key) or data.get(key)
        if path and Path(path).is_file():
            return f"{key}:sha256:{sha256_of_file(path)}"
    source = data.get("source")
    if isinstance(source, str) and Path(source).is_file():
        return f"source:sha256:{sha256_of_file(source)}"
    return None


def code_version(versions: dict[str, Any]) -> str:
    """``visiontrain 0.1.0`` plus the git commit of the source tree when it is a checkout (``+dirty`` if edited)."""
    release = f"visiontrain {versions.get('visiontrain', 'unknown')}"
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return release
    return f"{release} (git {commit}{'+dirty' if dirty else ''})" if commit else release


def record_digest(record: dict[str, Any]) -> str:
    """A short stable digest of a record (shown by `models show` to tell two registrations of one run apart)."""
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _overrides(run_dir: Path) -> list[str]:
    """The run's command line as Hydra saved it (.hydra/overrides.yaml: a YAML list of strings)."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    from omegaconf import OmegaConf  # plain YAML, nothing instantiated

    return [str(item) for item in OmegaConf.to_container(OmegaConf.load(path)) or []]


def _text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None
