"""The documentation site: the generated config reference is current, and `mkdocs build --strict` passes

The reference (docs/reference/config.md) is generated from the typed config (src/visiontrain/config/) and the
YAML in conf/, so a change to either that is not regenerated fails here rather than drifting; strict mode
fails on a broken link, a missing anchor or a page left out of the nav.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from conftest import REPO

GENERATOR = REPO / "scripts" / "gen_config_reference.py"
REFERENCE = REPO / "docs" / "reference" / "config.md"


def _env() -> dict[str, str]:
    """This checkout's package first, whatever the venv has installed."""
    path = os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "NO_MKDOCS_2_WARNING": "1"}


def test_config_reference_is_current(tmp_path):
    generated = tmp_path / "config.md"
    result = subprocess.run([sys.executable, str(GENERATOR), "--output", str(generated)], cwd=REPO,
                            env=_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert REFERENCE.is_file(), f"{REFERENCE} is missing: run python scripts/gen_config_reference.py"
    assert generated.read_text() == REFERENCE.read_text(), (
        "docs/reference/config.md is out of date with src/visiontrain/config/ or conf/: run "
        "python scripts/gen_config_reference.py and commit docs/reference/config.md")


NO_MKDOCS = importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None


@pytest.mark.skipif(NO_MKDOCS, reason="mkdocs and mkdocs-material are not installed: pip install -e '.[dev]'")
def test_site_builds_in_strict_mode(tmp_path):
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                            cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    assert (site / "reference" / "config" / "index.html").is_file()
