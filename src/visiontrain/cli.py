"""The `visiontrain` command: the table of commands and the dispatch.

argv is read once (:mod:`visiontrain.config.argv`). Before Hydra runs, that reading decides the fast ``--help``
and fails fast on a mistake in the overrides (unreadable, unknown keys, secrets, a sweeper setting, an unusable
``resume=``). Then each command is a Hydra app over conf/ (``@hydra.main`` composes the config: it owns the run
dir, ``-m`` multirun, the launcher and the sweeper); its library-free check parses that config once into typed
settings (:data:`visiontrain.config.checks.COMMAND_CHECKS`), and the command receives them.

Dispatch is lazy on purpose. A command's module is imported only once its config has passed those checks, so
`--help`, `--cfg job` and a config mistake answer within a second, before torch, Lightning or timm load.
`predict`, `serve`, `stream` and `drift` import onnxruntime, `visiontrain.deploy` and `visiontrain.monitoring`
only, never torch, Lightning, timm, albumentations or scikit-learn, so they start fast and run where only the
inference side is installed.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from visiontrain.config.argv import CommandLine

USAGE = """usage: visiontrain <command> [key=value ...] [--help] [--cfg job] [-m]

commands:
  train      fine-tune a backbone, evaluate the best checkpoint, export it to ONNX
             (no overrides: the quickstart, ImageNet EfficientNet-Lite0 fine-tuned on built-in digits, CPU, ~2 min)
  lr_find    <the overrides of train>: learning-rate range test, writes lr_find.png/.json and prints
             the optimizer.lr=... to train with
  evaluate   ckpt=<file.ckpt> [split=val|test] [data_root=<folder | manifest.csv>] [tta=none|hflip]: metrics
             and confusion matrix (tta=hflip: averaged over each image and its mirror)
  export     ckpt=<file.ckpt> [output=<file.onnx>]: ONNX with metadata, checked against PyTorch
  predict    model=<file.onnx> input=<image | folder | manifest.csv [split=val] | table> [top_k=5]
             [output=predictions.csv|.json]: onnxruntime only; unreadable inputs listed in a rejects
             file beside the output (a run's split.csv is a manifest: see docs/images.md)
  serve      model=<file.onnx> [host=127.0.0.1] [port=8000] [max_batch_size=32] [max_wait_ms=5]:
             HTTP service: POST /predict, GET /health, GET /metadata (onnxruntime only); a bearer
             token from $VISIONTRAIN_SERVE_TOKEN or token_file=<file>, never token=...
             registry=<dir|URL> model=<name> [canary_share=0.1] [sticky_key=header:X-User-Id] [shadow=true]:
             a registered model's production (and candidate) version, switched as its aliases move
  stream     model=<file.onnx> source=kafka://host:port/<topic> group=<id> output=kafka://.../<topic>
             [sink=<folder | file.db | URL>] [dead_letter=kafka://.../<topic>] [metrics_port=9108]:
             score a Kafka topic at least once (onnxruntime only); SIGTERM finishes the batch and commits
  drift      reference=<run dir | model.onnx> current=<table | image folder | predictions.jsonl>:
             compare new data with the training data, exit 1 on drift
  models     list | show | history | register | promote | rollback  registry=<folder | URL> [model=<name>]:
             the team's model registry (versions, aliases production/candidate, their history);
             e.g. `models promote model=churn version=candidate to=production`
  retrain    registry=<folder | URL> model=<name> data=<fresh table | image folder> [promote_to=candidate]:
             train a challenger with the production model's config on fresh data, score both on the same
             held-out rows, register it and promote it if at least as good (decision.md says why)

`visiontrain <command> --help` lists its config groups and options. Your own table needs no schema:
`visiontrain train experiment=churn data.source=my.csv data.target=<column>`; your own config files live
outside the package with `visiontrain train --config-dir my_conf experiment=<your experiment>`.
"""


class Command(NamedTuple):
    """One command: its config (conf/<config>.yaml), its "module:function", and what the function takes after
    the typed settings its check returns: ``config`` (the composed config, first: Hydra instantiates from it),
    ``run_dir`` (this run's dir) or nothing."""

    config: str
    function: str
    takes: str = ""


COMMANDS: dict[str, Command] = {
    "train": Command("train", "visiontrain.commands.train:train", "config"),
    "lr_find": Command("lr_find", "visiontrain.commands.lr_find:lr_find", "config"),
    "evaluate": Command("evaluate", "visiontrain.commands.evaluate:evaluate", "config"),
    "export": Command("export", "visiontrain.commands.export:export", "config"),
    "predict": Command("predict", "visiontrain.commands.predict:predict", "run_dir"),
    "serve": Command("serve", "visiontrain.commands.serve:serve"),
    "stream": Command("stream", "visiontrain.commands.stream:stream", "run_dir"),
    "drift": Command("drift", "visiontrain.commands.drift:drift", "run_dir"),
    "models": Command("models", "visiontrain.commands.models:models"),
    "retrain": Command("retrain", "visiontrain.commands.retrain:retrain", "run_dir"),
}
STORED_CONFIGS = ("predict", "serve", "stream", "models", "retrain")  # a `model` (or `data`) key named like a conf/ group


def _run_command(name: str, cfg: DictConfig) -> Any:
    """Check ``cfg`` (library-free, once) and run command ``name`` with the typed settings; its module (and so
    torch, for the training side) is imported only now."""
    from visiontrain.config.checks import COMMAND_CHECKS
    from visiontrain.core.log_routing import route_library_output

    command = COMMANDS[name]
    settings = COMMAND_CHECKS[name](cfg)  # before the command's module loads torch
    module, function_name = command.function.split(":")
    function = getattr(importlib.import_module(module), function_name)
    route_library_output()  # after the import: Lightning attaches its console handler then
    if command.takes == "config":
        return function(cfg, settings)
    if command.takes == "run_dir":
        return function(settings, Path(cfg.paths.run_dir))
    return function(settings)


def _store_config(config_name: str) -> str:
    """conf/<config_name>.yaml with its `paths` and `hydra` defaults inlined, as a ConfigStore entry.

    The app then runs without conf/ on its search path, so a key named like a conf/ group (`model=<file.onnx>`
    vs conf/model/) stays a plain key. Stored under other names: Hydra takes a same-named entry for a schema.
    """
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from visiontrain.config import config_dir

    conf = config_dir()
    node = OmegaConf.load(conf / f"{config_name}.yaml")
    defaults = [entry for entry in node.pop("defaults", []) if entry != "_self_"]
    for entry in defaults:  # {paths: default}, {hydra: default}
        (group, option), = entry.items()
        node[group] = OmegaConf.load(conf / group / f"{option}.yaml")
    stored = f"visiontrain_{config_name}"
    ConfigStore.instance().store(name=stored, node=node)
    return stored


def _run_hydra(command: str, line: CommandLine | None) -> None:
    """Fail fast on the command line (``line``: argv as read once; None when Hydra should explain it), answer
    ``--help``, else run the command as a Hydra app."""
    import hydra

    from visiontrain.commands.failures import (
        as_write_error,
        close_failed_run,
        in_multirun,
        record_failed_trial,
        sweeper_counts_exceptions,
    )
    from visiontrain.config import config_dir
    from visiontrain.core.exits import exit_with, user_error
    from visiontrain.errors import CheckpointError, ConfigError, TrialPruned

    config_name = COMMANDS[command].config
    config_path: str | None = str(config_dir())
    app_config = config_name
    if config_name in STORED_CONFIGS:
        app_config, config_path = _store_config(config_name), None  # the ConfigStore only

    @hydra.main(version_base="1.3", config_path=config_path, config_name=app_config)
    def entry(cfg: DictConfig):
        try:
            return _run_command(command, cfg)
        except TrialPruned:
            raise  # not a failure: the sweeper records the trial as pruned
        except Exception as error:
            error = as_write_error(error, command)
            if in_multirun():  # a crashed trial is recorded and the sweep goes on
                record_failed_trial(error)
                if sweeper_counts_exceptions():
                    raise  # the Optuna sweeper records the trial as crashed and goes on
                return float("nan")  # Hydra's basic sweeper would stop at an exception
            if user_error(error) is None:
                raise
            close_failed_run(error)
            exit_with(error)

    try:
        if config_name == "serve":  # a token typed on the command line, even beside a flag Hydra refuses
            from visiontrain.deploy.access import refuse_command_line_secrets

            refuse_command_line_secrets(sys.argv[1:])
        if line is not None:
            line = _check_command_line(command, line)
    except (ConfigError, CheckpointError) as error:
        exit_with(error)
    if line is not None:
        sys.argv = [sys.argv[0], *line.argv]  # what Hydra reads (resume= resolved)
        if line.help and _print_help(app_config, config_path, line):
            return
    entry()


def _check_command_line(command: str, line: CommandLine) -> CommandLine:
    """The checks of the command line before Hydra starts; returns it with ``resume=`` resolved (train)."""
    from visiontrain.config.overrides import check_no_secrets, check_override_syntax

    config_name = COMMANDS[command].config
    check_no_secrets(list(line.overrides))  # before anything can store or echo the command line
    check_override_syntax(list(line.overrides))  # an unquoted URL: the fix, not Hydra's grammar
    if not (line.own_config or line.help or line.hydra_help):
        _check_override_keys(config_name, line)
    if config_name == "train":
        line = _resolve_resume(config_name, line)
        if line.runs and not line.own_config:
            _check_sweep(config_name, line)
    return line


def _print_help(app_config: str, config_path: str | None, line: CommandLine) -> bool:
    """`--help` as Hydra prints it (its ``hydra.help.template`` over the composed config), in a second.

    Hydra's own help lists the config groups by deep-copying its whole config repository (every plugin's
    structured configs) twice per group, which takes seconds; the app's groups are the folders of conf/.
    """
    import copy
    import string

    from hydra import compose, initialize, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    if line.hydra_help or line.own_config:
        return False
    setup = initialize_config_dir(version_base="1.3", config_dir=config_path) if config_path else \
        initialize(version_base="1.3", config_path=None)
    try:
        with setup:
            cfg = compose(app_config, overrides=list(line.overrides), return_hydra_config=True)
    except Exception:  # noqa: BLE001 - a bad group name or override syntax: Hydra explains it next
        return False
    HydraConfig.instance().set_config(cfg)  # `${hydra:...}` values resolve as in Hydra's help (--resolve)
    template = str(cfg.hydra.help.template)
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    groups = _config_groups(Path(config_path)) if config_path else ""
    print(string.Template(template).safe_substitute(APP_CONFIG_GROUPS=groups,
                                                    CONFIG=OmegaConf.to_yaml(cfg, resolve=line.resolve)))
    return True


def _config_groups(conf: Path) -> str:
    """``group: option, option`` for every folder of YAML files under conf/ but hydra/, as Hydra lists them."""
    lines = []
    for folder in sorted(p for p in conf.rglob("*") if p.is_dir()):
        group = folder.relative_to(conf).as_posix()
        options = sorted(p.stem for p in folder.glob("*.yaml"))
        if options and group != "hydra" and not group.startswith("hydra/"):
            lines.append(f"{group}: {', '.join(options)}\n")
    return "".join(lines)


def _check_override_keys(config_name: str, line: CommandLine) -> None:
    """Unknown keys fail naming the nearest real ones before Hydra starts (Hydra still reports every other
    mistake). Composes the config once (the group choices only), and only when there are plain keys to look up."""
    from visiontrain.config import config_dir
    from visiontrain.config.overrides import check_override_keys
    from visiontrain.errors import ConfigError

    overrides = list(line.overrides)
    if config_name in STORED_CONFIGS:  # `model=<file.onnx>` is a plain key there, not conf/model/
        overrides = [o for o in overrides if not (config_dir() / o.split("=")[0].lstrip("+~")).is_dir()]
    try:
        check_override_keys(config_name, overrides, config_dir())
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001 - a bad group name or override syntax: Hydra explains it next
        return


def _check_sweep(config_name: str, line: CommandLine) -> None:
    """A multirun's sweeper settings fail once, here, rather than in every trial (or not at all)."""
    from visiontrain.config import config_dir
    from visiontrain.config.checks import check_sweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from visiontrain.config.overrides import compose_for_sweep
    from visiontrain.sweeps.checks import check_sweep_settings

    sweep_keys = ("hparams_search", "hydra.mode", "hydra/sweeper", "hydra.sweeper.")
    if not (line.multirun or any(o.lstrip("+").startswith(sweep_keys) for o in line.overrides)):
        return
    try:
        cfg = compose_for_sweep(config_name, list(line.overrides), config_dir())
        parsed = OverridesParser.create().parse_overrides(list(line.overrides))
    except Exception:  # noqa: BLE001 - a bad group name or override syntax: Hydra explains it next
        return
    check_sweeper(cfg)
    check_sweep_settings(cfg, [o for o in parsed if o.is_sweep_override() and not o.get_key_element()
                               .startswith("hydra")])


def _resolve_resume(config_name: str, line: CommandLine) -> CommandLine:
    """``resume=latest`` becomes the run dir and checkpoint to continue (see visiontrain.training.resume); in a
    sweep (``-m`` or ``hparams_search=``), the sweep to continue."""
    from visiontrain.config import config_dir

    if not any(o.startswith("resume=") for o in line.overrides):
        return line
    if line.multirun or any(o.startswith("hparams_search=") and o != "hparams_search=null" for o in line.overrides):
        # a sweep resumes as a whole: its sweeper finds the sweep dir and the study (hydra.sweeper.resume)
        return line.with_overrides([f"hydra.sweeper.{o}" if o.startswith("resume=") else o for o in line.overrides])
    from visiontrain.training.resume import resume_overrides  # reads checkpoints with torch: only when asked

    return line.with_overrides(resume_overrides(config_name, list(line.overrides), config_dir(),
                                                multirun=line.multirun))


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        command, rest = argv[0], argv[1:]
    elif os.environ.get("LOCAL_RANK") and (not argv or "=" in argv[0] or argv[0].startswith("-")):
        # a DDP worker started by Lightning re-runs this script with the overrides of `train`
        command, rest = "train", argv
    else:
        print(USAGE, file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        raise SystemExit(0 if argv and argv[0] in ("-h", "--help") else 2)
    from visiontrain.config.argv import parse_command_line
    from visiontrain.config.overrides import pass_through_overrides

    if command == "models" and rest and "=" not in rest[0] and not rest[0].startswith("-"):
        rest = [f"action={rest[0]}", *rest[1:]]  # `visiontrain models promote ...`: the action as a word
    rest = pass_through_overrides(command, rest)
    sys.argv = [sys.argv[0], *rest]
    _run_hydra(command, parse_command_line(rest))
