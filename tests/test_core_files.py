"""The one file checksum (core.files.sha256_of_file), against hashlib and on the oldest Python we support."""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from visiontrain.core.files import sha256_of_file

SRC = Path(__file__).resolve().parents[1] / "src"


def _python_310() -> str | None:
    """A Python 3.10 interpreter on this machine (requires-python is >=3.10), or None."""
    candidates = [shutil.which("python3.10"), *sorted(glob.glob("/root/.pyenv/versions/3.10*/bin/python3.10"))]
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 10))"],
                               capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return candidate
    return None


def test_the_checksum_is_hashlib_s_sha256_of_the_bytes(tmp_path):
    data = os.urandom(2_500_000)  # more than two of the 1 MiB blocks it reads
    path = tmp_path / "weights.bin"
    path.write_bytes(data)
    assert sha256_of_file(path) == hashlib.sha256(data).hexdigest()
    assert sha256_of_file(str(path)) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_of_file(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


def test_the_checksum_and_the_package_s_syntax_work_on_python_3_10(tmp_path):
    """``hashlib.file_digest`` (3.11) once crashed here; every source file must compile on 3.10 too."""
    python = _python_310()
    if python is None:
        pytest.skip("no Python 3.10 interpreter on this machine")
    path = tmp_path / "model.onnx"
    path.write_bytes(os.urandom(1_500_000))
    script = ("import pathlib, sys\n"
              "bad = []\n"
              "for source in sorted(pathlib.Path(sys.argv[1]).rglob('*.py')):\n"
              "    try:\n"
              "        compile(source.read_text(), str(source), 'exec')\n"
              "    except SyntaxError as error:\n"
              "        bad.append(f'{source}: {error}')\n"
              "print('\\n'.join(bad) or 'compiled')\n"
              "sys.path.insert(0, sys.argv[1])\n"
              "from visiontrain.core.files import sha256_of_file\n"
              "print(sha256_of_file(sys.argv[2]))\n")
    result = subprocess.run([python, "-c", script, str(SRC), str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["compiled", hashlib.sha256(path.read_bytes()).hexdigest()], result.stdout


def test_no_source_file_uses_python_3_11_s_file_digest():
    users = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if "hashlib.file_digest(" in p.read_text()]
    assert users == [], f"hashlib.file_digest needs Python 3.11; use core.files.sha256_of_file in {users}"
