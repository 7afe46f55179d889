"""A rule a tool checks is a rule: ruff's checks ([tool.ruff] in pyproject.toml) hold for src, tests and scripts."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_ruff_finds_nothing():
    command = [sys.executable, "-m", "ruff", "check", "--no-cache", "src", "tests", "scripts"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{' '.join(command[2:])} (rc {result.returncode}):\n{result.stdout}{result.stderr}"
