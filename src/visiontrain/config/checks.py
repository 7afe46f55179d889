"""The config checks that need no library but pydantic: types, ranges, choices, rules across keys, files.

`visiontrain` runs them on the composed config before it imports the command's module, so a mistake is reported
within a second, and passes what they return (the typed settings) to the command; :mod:`visiontrain.commands.
validation` adds the checks that need torch, timm or scikit-learn. Nothing here imports those, or any module that
does.
"""

from __future__ import annotations

from typing import Any, Callable, Literal

from omegaconf import DictConfig, OmegaConf
from pydantic import Field, model_validator

from visiontrain.config.choices import LR_FIND_MIN_POINTS, LR_FIND_MODES, TABULAR_MODELS, TASK_NAMES
from visiontrain.config.commands import (
    DriftOptions,
    EvaluateOptions,
    ExportOptions,
    ModelsOptions,
    PredictOptions,
    RetrainOptions,
    ServeOptions,
    StreamOptions,
)
from visiontrain.config.image import ImageTrainConfig
from visiontrain.config.reading import Section, parse
from visiontrain.config.sections import Monitor, Optimizer, Trainer
from visiontrain.config.tabular import (
    EstimatorModel,
    MlpModel,
    TableData,
    TabularModelKind,
    TabularRun,
    TabularTrainConfig,
)
from visiontrain.core.names import IMAGE_TASK, TABULAR_TASK
from visiontrain.core.redaction import has_secret
from visiontrain.errors import ConfigError


class TaskChoice(Section):
    task: Literal[TASK_NAMES]  # type: ignore[valid-type]


class LrFind(Section):
    """``lr_find.*``: a range to probe, enough points for Lightning's suggestion, a stop rule (null: none)."""

    min_lr: float = Field(gt=0, examples=["1e-6"])
    max_lr: float = Field(gt=0, examples=["1.0"])
    num_training: int = Field(ge=LR_FIND_MIN_POINTS, examples=["100"])
    mode: Literal[LR_FIND_MODES]  # type: ignore[valid-type]
    early_stop_threshold: float | None = Field(None, gt=1, examples=["4.0"])

    @model_validator(mode="after")
    def _a_range(self) -> LrFind:
        if self.max_lr <= self.min_lr:
            raise ConfigError("lr_find.max_lr", f"is {self.max_lr:g}, not above lr_find.min_lr={self.min_lr:g}: "
                              "nothing to probe", f"lr_find.max_lr={self.min_lr * 1e6:g}")
        return self


SWEEP_DIRECTIONS = {"max": "maximize", "min": "minimize"}  # monitor.mode -> the sweeper's direction


class Sweeper(Section):
    """The sweeper settings a multirun reads (``hydra.sweeper.*``); absent ones are the sweeper's defaults
    (conf/hydra/sweeper/optuna.yaml documents each)."""

    n_trials: int | None = Field(None, ge=1, examples=["20"])
    workers: int | None = Field(None, ge=1, examples=["2"])
    timeout_min: float | None = Field(None, gt=0, examples=["60"])
    heartbeat_s: float | None = Field(None, gt=0, examples=["30"])
    grace_s: float | None = Field(None, gt=0, examples=["120"])
    study_name: str | None = Field(None, examples=["churn-search"])
    resume: str | None = Field(None, examples=["latest"])

    @model_validator(mode="after")
    def _heartbeat_within_grace(self) -> Sweeper:
        if self.heartbeat_s and self.grace_s and self.grace_s <= 2 * self.heartbeat_s:
            raise ConfigError("hydra.sweeper.grace_s", f"is {self.grace_s:g} s, not above two heartbeats "
                              f"({self.heartbeat_s:g} s each): live trials would be taken for dead",
                              f"hydra.sweeper.grace_s={4 * self.heartbeat_s:g}")
        return self


RETIRED_SWEEPER_KEYS = {"n_jobs": "hydra.sweeper.workers=N (processes that join one study)",
                        "max_failure_rate": "nothing: a crashed trial never ends the sweep (failed.json)",
                        "custom_search_space": "hydra.sweeper.params with when: conditions"}


TrainSettings = ImageTrainConfig | TabularTrainConfig  # what a training config parses into, by its ``task``


def check_train_config(cfg: DictConfig) -> TrainSettings:
    """Every check of ``train`` that needs no library; returns the parsed, typed settings (``.task`` names the
    task), which the run then reads instead of the raw config."""
    task = parse(TaskChoice, cfg).task
    check_no_literal_secrets(cfg)
    return TRAIN_CHECKS[task](cfg)


def check_evaluate_config(cfg: DictConfig) -> EvaluateOptions:
    """`visiontrain evaluate`: its own keys and its trainer (the checkpoint's settings are checked when read)."""
    options = parse(EvaluateOptions, cfg)
    parse(Trainer, cfg, "trainer")
    return options


def check_export_config(cfg: DictConfig) -> ExportOptions:
    """`visiontrain export`: its own keys (the opset's range needs torch: see the library checks)."""
    return parse(ExportOptions, cfg)


def check_predict_config(cfg: DictConfig) -> PredictOptions:
    """`visiontrain predict`: every option, then the model and input files."""
    return parse(PredictOptions, cfg)


def check_serve_config(cfg: DictConfig) -> ServeOptions:
    """`visiontrain serve`: every option (a port out of range would end in asyncio's traceback)."""
    return parse(ServeOptions, cfg)


def check_stream_config(cfg: DictConfig) -> StreamOptions:
    """`visiontrain stream`: every option, each Kafka address and the rules across them, before anything
    connects."""
    return parse(StreamOptions, cfg)


def check_drift_config(cfg: DictConfig) -> DriftOptions:
    """`visiontrain drift`: thresholds, exit code, and the reference and current data named."""
    return parse(DriftOptions, cfg)


def check_models_config(cfg: DictConfig) -> ModelsOptions:
    """`visiontrain models`: the action and what it needs (a registry, a model name, a run or a file)."""
    return parse(ModelsOptions, cfg)


def check_retrain_config(cfg: DictConfig) -> RetrainOptions:
    """`visiontrain retrain`: every option, the extra overrides' syntax, then the registry, data and trigger named
    (the champion and the data's columns are checked by the command, before it trains)."""
    return parse(RetrainOptions, cfg)


def check_lr_find_config(cfg: DictConfig) -> TrainSettings:
    """`visiontrain lr_find`: an image run (everything `train` checks), then the range test's own keys."""
    if OmegaConf.select(cfg, "task") == TABULAR_TASK:
        raise ConfigError("task", "lr_find tunes image classifiers; tabular models train with their own rates",
                          "visiontrain lr_find experiment=hymenoptera data.root=/path/to/images")
    settings = check_train_config(cfg)
    parse(LrFind, cfg, "lr_find")
    return settings  # an image run's: tabular was refused above


def check_sweeper(cfg: DictConfig) -> None:
    """The sweeper's settings (``hydra.sweeper.*`` of a config composed with its Hydra node), checked once
    before a multirun launches its first trial.

    Inside a trial they would fail every trial alike and the sweep would go on; and a direction against
    ``monitor.mode`` fails nothing at all, it just searches for the worst model.
    """
    sweeper = OmegaConf.select(cfg, "hydra.sweeper") or {}
    if OmegaConf.is_config(sweeper):  # an Optuna storage URL with its password written into a file
        check_no_literal_secrets(sweeper, "hydra.sweeper")
    for key, fix in RETIRED_SWEEPER_KEYS.items():
        if key in sweeper and "visiontrain_sweeper" in str(sweeper.get("_target_", "")):
            raise ConfigError(f"hydra.sweeper.{key}", "was a setting of hydra-optuna-sweeper, which visiontrain "
                              "no longer uses", fix)
    parse(Sweeper, cfg, "hydra.sweeper")
    if "direction" not in sweeper:
        return
    monitor = parse(Monitor, cfg, "monitor")  # a misspelt mode would leave the direction unchecked
    mode, metric = monitor.mode, monitor.metric
    wanted = SWEEP_DIRECTIONS[mode]
    direction = sweeper["direction"]
    if OmegaConf.is_list(direction):  # a multi-objective study: the monitored metric is not the only objective
        return
    if direction not in ("maximize", "minimize"):
        raise ConfigError("hydra.sweeper.direction", f"must be maximize or minimize, got {direction!r}",
                          f"hydra.sweeper.direction={wanted}")
    if direction != wanted:
        raise ConfigError("hydra.sweeper.direction", f"is {direction}, but monitor.mode={mode} ({metric}): the "
                          "search would look for the worst model", f"hydra.sweeper.direction={wanted}")


# the checks `visiontrain <command>` runs before importing the command's module, one for every command; what each
# returns is the typed settings the command receives
COMMAND_CHECKS: dict[str, Callable[[DictConfig], Any]] = {
    "train": check_train_config, "lr_find": check_lr_find_config, "evaluate": check_evaluate_config,
    "export": check_export_config, "predict": check_predict_config, "serve": check_serve_config,
    "stream": check_stream_config, "drift": check_drift_config, "models": check_models_config,
    "retrain": check_retrain_config}


def _check_image(cfg: DictConfig) -> ImageTrainConfig:
    """Table data or a tabular model in an image run points at the tabular experiments; then every key."""
    if OmegaConf.select(cfg, "data.kind") == "table":
        raise ConfigError("data", "is a table, but this run trains an image classifier",
                          "experiment=churn (or experiment=diabetes), which selects task=tabular")
    if OmegaConf.select(cfg, "model.kind") in ("mlp", "estimator"):
        raise ConfigError("model", "is a tabular model, but this run trains an image classifier",
                          "model=timm for images, or experiment=churn model=... for tables")
    return parse(ImageTrainConfig, cfg)


def _check_tabular(cfg: DictConfig) -> TabularTrainConfig:
    """Run, model, trainer and table, in that order; the declared columns are read as training reads them."""
    return tabular_settings(cfg)


def tabular_settings(cfg: DictConfig, stored: bool = False) -> TabularTrainConfig:
    """A tabular training config (``stored``: a checkpoint's, which keeps no trainer) checked key by key, in the
    order of its mistakes' messages, into the one typed :class:`TabularTrainConfig` the run reads."""
    run = parse(TabularRun, cfg)
    if "backbone" in (OmegaConf.select(cfg, "model") or {}):
        raise ConfigError("model", "is an image backbone, but this run trains on a table",
                          " or ".join(f"model={name}" for name in TABULAR_MODELS))
    if OmegaConf.select(cfg, "data.kind") != "table":
        raise ConfigError("data", "is an image dataset, but this run trains on a table",
                          "data=churn, data=diabetes, or data.source=<your table> with experiment=churn")
    optimizer = None
    model: MlpModel | EstimatorModel
    if parse(TabularModelKind, cfg, "model").kind == "mlp":
        optimizer = parse(Optimizer, cfg, "optimizer")
        model = parse(MlpModel, cfg, "model")
    else:
        model = parse(EstimatorModel, cfg, "model")
        task_type = run.data.task_type
        if not OmegaConf.select(cfg, f"model.estimator.{task_type}._target_"):
            raise ConfigError(f"model.estimator.{task_type}", f"this model has no estimator for {task_type}",
                              " or ".join(f"model={name}" for name in TABULAR_MODELS if name != "mlp"))
    trainer = None if stored else parse(Trainer, cfg, "trainer")
    data = parse(TableData, cfg, "data")  # the declared schema (and its file) read and checked with it
    if data.declaration.task_type == "classification" and not data.declaration.positive_label:
        raise ConfigError("data.positive_label", "a classification target needs the value that means positive",
                          'data.positive_label="Yes"')
    run_keys = {name: getattr(run, name) for name in TabularRun.model_fields if name in run.model_fields_set}
    return TabularTrainConfig(**{**run_keys, "data": data, "model": model, "optimizer": optimizer,
                                 "trainer": trainer})


# each task's library-free check of its training config, returning its typed settings (one line per task)
TRAIN_CHECKS: dict[str, Callable[[DictConfig], TrainSettings]] = {IMAGE_TASK: _check_image,
                                                                   TABULAR_TASK: _check_tabular}


def check_no_literal_secrets(cfg: DictConfig, prefix: str = "") -> None:
    """A password typed into a config file: stop before it is used (the run dir is then removed, with the copy
    Hydra wrote of it). An ``${oc.env:...}`` interpolation is the way to give one."""

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, child in node.items():
                walk(child, f"{path}.{key}" if path else str(key))
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(child, f"{path}[{index}]")
        elif isinstance(node, str) and "${" not in node and has_secret(node):
            raise ConfigError(path, "holds a URL with a password or token, which would be stored with the run",
                              f"export DB_URL='...' and set {path}='${{oc.env:DB_URL}}'"
                              + (" (or data.source_env=DB_URL)" if path == "data.source" else ""))

    walk(OmegaConf.to_container(cfg, resolve=False), prefix)
