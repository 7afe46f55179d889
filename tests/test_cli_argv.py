"""The command line is read once, by our own parser of Hydra's flags, and nothing reaches into Hydra's internals."""

from __future__ import annotations

import ast

import pytest

from conftest import REPO
from visiontrain.config.argv import parse_command_line


def test_no_module_imports_hydras_internals():
    """Hydra's public doors only (`hydra.main`, `compose`, `hydra.core`): `hydra._internal` moves between releases."""
    found = []
    for path in sorted((REPO / "src" / "visiontrain").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += [f"{path.relative_to(REPO)}:{node.lineno} {name}" for name in names
                      if name == "hydra._internal" or name.startswith("hydra._internal.")]
    assert not found, found


@pytest.mark.parametrize(("argv", "expected"), [
    ([], {"overrides": (), "multirun": False, "cfg": None, "runs": True}),
    (["-m", "optimizer.lr=1e-3,1e-2"], {"overrides": ("optimizer.lr=1e-3,1e-2",), "multirun": True, "runs": True}),
    (["--multirun", "hparams_search=image_optuna"], {"overrides": ("hparams_search=image_optuna",),
                                                      "multirun": True}),
    (["--cfg", "job"], {"cfg": "job", "runs": False, "overrides": ()}),
    (["--cfg", "job", "--resolve", "experiment=churn"], {"cfg": "job", "resolve": True,
                                                         "overrides": ("experiment=churn",)}),
    (["--config-dir", "my_conf", "experiment=x"], {"config_dir": "my_conf", "own_config": True,
                                                   "overrides": ("experiment=x",), "runs": True}),
    (["-cd", "my_conf", "hydra/launcher=joblib", "-m"], {"config_dir": "my_conf", "multirun": True,
                                                         "overrides": ("hydra/launcher=joblib",)}),
    (["--help"], {"help": True, "runs": False, "overrides": ()}),
    (["-h", "experiment=churn"], {"help": True, "overrides": ("experiment=churn",)}),
    (["--hydra-help"], {"hydra_help": True, "runs": False}),
    (["--info", "defaults"], {"info": "defaults", "runs": False}),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_argv_is_read_once_as_hydra_reads_it(argv, expected):
    line = parse_command_line(argv)

    assert line is not None and line.argv == tuple(argv)
    for name, value in expected.items():
        assert getattr(line, name) == value, name


@pytest.mark.parametrize("argv", [["--bogus"], ["--cfg", "nothing"], ["--config-dir"]])
def test_what_hydra_would_refuse_is_left_to_hydra(argv):
    assert parse_command_line(argv) is None  # Hydra prints its own usage


def test_resume_rewrites_the_overrides_and_keeps_the_flags():
    line = parse_command_line(["-m", "resume=latest", "seed=1"])

    resolved = line.with_overrides(["seed=1", "ckpt_path=last.ckpt", "hydra.run.dir=outputs/x"])

    assert resolved.multirun and resolved.argv == ("-m", "seed=1", "ckpt_path=last.ckpt", "hydra.run.dir=outputs/x")


def test_the_cli_parses_argv_once(monkeypatch, capsys):
    """`visiontrain predict --help`: one reading of argv, our own, before the fast help answers."""
    import visiontrain.cli as cli
    import visiontrain.config.argv as argv_module

    calls = []
    original = argv_module.parse_command_line

    def counted(argv):
        calls.append(list(argv))
        return original(argv)

    monkeypatch.setattr(argv_module, "parse_command_line", counted)
    monkeypatch.setattr("sys.argv", ["visiontrain", "predict", "--help"])
    cli.main()

    assert calls == [["--help"]]
    assert "Composed config:\ntask_name: predict\nmodel: ???" in capsys.readouterr().out  # Hydra's help template
