"""The `visiontrain` command: `train`, `evaluate` and `export`, each a Hydra app over conf/."""

from __future__ import annotations

import os
import sys
from typing import Callable

USAGE = """usage: visiontrain <command> [key=value ...] [--help] [--cfg job] [-m]

commands:
  train      fine-tune a backbone, evaluate the best checkpoint, export it to ONNX
             (no overrides: the quickstart on built-in digits, CPU, about a minute)
  evaluate   ckpt=<file.ckpt> [split=val|test] [data_root=<folder>]: metrics and confusion matrix
  export     ckpt=<file.ckpt> [output=<file.onnx>]: ONNX with metadata, checked against PyTorch

`visiontrain <command> --help` lists its config groups and options.
"""


def _commands() -> dict[str, tuple[str, Callable]]:
    from visiontrain import commands, runner

    return {"train": ("train", runner.train), "evaluate": ("evaluate", commands.evaluate),
            "export": ("export", commands.export)}


def _run_hydra(config_name: str, function: Callable) -> None:
    import hydra
    from omegaconf import DictConfig

    from visiontrain.config import config_dir
    from visiontrain.errors import ConfigError, DataError, WeightsError

    @hydra.main(version_base="1.3", config_path=str(config_dir()), config_name=config_name)
    def entry(cfg: DictConfig):
        try:
            return function(cfg)
        except Exception as error:
            if _in_multirun():  # a crashed trial is recorded and the sweep goes on
                _record_failed_trial(error)
                if _sweeper_counts_exceptions():
                    raise  # the Optuna sweeper marks the trial failed and goes on (max_failure_rate)
                return float("nan")  # Hydra's basic sweeper would stop at an exception
            if not isinstance(error, (ConfigError, DataError, WeightsError)):
                raise
            kind = {ConfigError: "config error", DataError: "data error", WeightsError: "weights error"}[type(error)]
            print(f"visiontrain: {kind}: {error}", file=sys.stderr, flush=True)
            if isinstance(error, ConfigError):
                _remove_empty_run_dir()
            raise SystemExit(2) from None

    try:
        _check_overrides(config_name)
        if config_name == "train":
            _resolve_resume(config_name)
    except ConfigError as error:
        print(f"visiontrain: config error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    entry()


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.get().mode == RunMode.MULTIRUN


def _sweeper_counts_exceptions() -> bool:
    from hydra.core.hydra_config import HydraConfig

    return "optuna" in str(HydraConfig.get().sweeper.get("_target_", "")).lower()


def _record_failed_trial(error: Exception) -> None:
    """Write failed.json (error, traceback, overrides) in the trial's dir for the sweep summary."""
    import json
    import traceback
    from pathlib import Path

    from hydra.core.hydra_config import HydraConfig

    from visiontrain.sweeps.summary import FAILED_FILE

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / FAILED_FILE).write_text(json.dumps({
        "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc(),
        "overrides": list(HydraConfig.get().overrides.task)}, indent=2))
    print(f"visiontrain: trial {run_dir.name} failed ({type(error).__name__}: {error}); the sweep goes on",
          file=sys.stderr, flush=True)


def _check_overrides(config_name: str) -> None:
    """Unknown keys fail with a suggestion before Hydra starts (Hydra still reports every other mistake)."""
    from hydra._internal.utils import get_args_parser

    from visiontrain.config import config_dir
    from visiontrain.config.overrides import check_override_keys
    from visiontrain.errors import ConfigError

    try:
        args = get_args_parser().parse_args(sys.argv[1:])
    except SystemExit:  # malformed flags: let Hydra print its own usage
        return
    if args.config_dir or args.config_path or args.config_name or args.help or args.hydra_help:
        return
    try:
        check_override_keys(config_name, args.overrides, config_dir())
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001 - a bad group name or override syntax: Hydra explains it next
        return


def _resolve_resume(config_name: str) -> None:
    """``resume=latest`` becomes the run dir and checkpoint to continue (see visiontrain.training.resume)."""
    from hydra._internal.utils import get_args_parser

    from visiontrain.config import config_dir
    from visiontrain.training.resume import resume_overrides

    args = get_args_parser().parse_args(sys.argv[1:])
    if not any(o.startswith("resume=") for o in args.overrides):
        return
    resolved = resume_overrides(config_name, args.overrides, config_dir(), multirun=bool(args.multirun))
    flags = [a for a in sys.argv[1:] if a not in args.overrides]
    sys.argv = [sys.argv[0], *flags, *resolved]


def _remove_empty_run_dir() -> None:
    """A run stopped by a config mistake leaves no output dir behind (only Hydra's own files were in it)."""
    import shutil
    from pathlib import Path

    from hydra.core.hydra_config import HydraConfig

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if run_dir.is_dir() and all(p.name == ".hydra" or p.suffix == ".log" for p in run_dir.iterdir()):
        shutil.rmtree(run_dir, ignore_errors=True)
        for parent in run_dir.parents:  # outputs/<experiment>/runs, if this run made them
            if parent == Path.cwd() or any(parent.iterdir()):
                break
            parent.rmdir()


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = ("train", "evaluate", "export")
    if argv and argv[0] in commands:
        command, rest = argv[0], argv[1:]
    elif os.environ.get("LOCAL_RANK") and (not argv or "=" in argv[0] or argv[0].startswith("-")):
        # a DDP worker started by Lightning re-runs this script with the overrides of `train`
        command, rest = "train", argv
    else:
        print(USAGE, file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        raise SystemExit(0 if argv and argv[0] in ("-h", "--help") else 2)
    config_name, function = _commands()[command]
    sys.argv = [sys.argv[0], *rest]
    _run_hydra(config_name, function)
