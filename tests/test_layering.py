"""Layers only look down: the import contracts in pyproject.toml ([tool.importlinter]) hold for the code as it is.

The core (``visiontrain.core``) imports no other visiontrain layer and no torch; ``deploy`` and ``monitoring``
import no training code (data, models, training, tasks, tabular, export) and no torch, not even lazily inside a
function: import-linter reads every import statement, so a test of what happens to be imported cannot miss one.
"""

from __future__ import annotations

from importlinter.cli import lint_imports

from conftest import REPO


def test_the_import_contracts_are_kept(capsys):
    exit_code = lint_imports(config_filename=str(REPO / "pyproject.toml"), no_cache=True, no_logo=True)
    report = capsys.readouterr().out
    # the layers, the torch-free core, the torch-free inference side, the torch-free retraining loop
    assert "Contracts: 4 kept, 0 broken." in report, report
    assert exit_code == 0, report
