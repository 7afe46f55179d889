"""A search space read from ``hydra.sweeper.params``: what Optuna samples for each trial, as Hydra overrides.

Each key is a config key (or a config group, such as ``model``) and its value is either Hydra's sweep grammar,
as the command line writes it, or a small mapping for what the grammar cannot say (a condition)::

    params:
      model: choice(mlp, logistic_regression, hist_gradient_boosting)     # a config group: the model family
      optimizer.lr: tag(log, interval(1e-4, 1e-2))
      model.dropout: {float: [0.0, 0.5], when: {model: mlp}}               # sampled only for the MLP
      model.estimator.classification.max_iter: {int: [50, 400], log: true, when: {model: hist_gradient_boosting}}
      data.batch_size: {choice: [64, 128, 256]}

Parameters are sampled in the order written (define-by-run), so a condition names keys written above it. A
sweep override on the command line (``optimizer.lr=choice(0.002,0.01)``) replaces the key's entry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from visiontrain.errors import ConfigError

if TYPE_CHECKING:
    import optuna

KINDS = ("float", "int", "choice")
FIX = "e.g. optimizer.lr: tag(log, interval(1e-4, 1e-2)) or {float: [1e-4, 1e-2], log: true, when: {model: mlp}}"


@dataclass(frozen=True)
class Param:
    """One searched key: its kind, its range or choices, and the values of earlier keys it is sampled under."""

    key: str
    kind: str                      # float | int | choice
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def applies(self, sampled: Mapping[str, Any]) -> bool:
        """Whether every condition holds for the values sampled so far (a key not sampled fails it)."""
        return all(key in sampled and sampled[key] in allowed for key, allowed in self.when.items())

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)

    def describe(self) -> str:
        shown = f"choice{self.choices}" if self.kind == "choice" else \
            f"{self.kind}[{self.low}, {self.high}]{' log' if self.log else ''}"
        conditions = " and ".join(f"{k} in {list(v)}" for k, v in self.when.items())
        return f"{self.key}: {shown}" + (f" when {conditions}" if conditions else "")


@dataclass(frozen=True)
class SearchSpace:
    """The searched keys, in sampling order."""

    params: tuple[Param, ...]

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        """The values of one trial: each key whose conditions hold, asked of Optuna in order."""
        sampled: dict[str, Any] = {}
        for param in self.params:
            if param.applies(sampled):
                sampled[param.key] = param.suggest(trial)
        return sampled

    @property
    def keys(self) -> list[str]:
        return [param.key for param in self.params]

    def is_grid(self) -> bool:
        return all(param.kind == "choice" and not param.when for param in self.params)

    def draw(self, trials: int, seed: int = 0) -> list[dict[str, Any]]:
        """What ``trials`` trials of a seeded random search ask for, define-by-run as the sweeper asks (to run
        the same trials twice, or to check a space)."""
        import optuna

        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        drawn = []
        for _ in range(trials):
            trial = study.ask()
            drawn.append(self.sample(trial))
            study.tell(trial, 0.0)
        return drawn

    def grid(self) -> dict[str, list[Any]]:
        """Optuna's GridSampler search space (choices only, no conditions)."""
        return {param.key: list(param.choices) for param in self.params}


def as_overrides(values: Mapping[str, Any]) -> list[str]:
    """Hydra overrides for sampled values (``key=value``; strings quoted where the grammar needs it)."""
    return [f"{key}={_override_value(value)}" for key, value in values.items()]


def _override_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_override_value(v) for v in value) + "]"
    text = str(value)
    if any(c in text for c in " ,()[]{}'\"=:") and not text.startswith(("[", "{")):
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return text


def read_space(params: Mapping[str, Any] | None, sweep_overrides: Sequence[Any] = ()) -> SearchSpace:
    """The search space of ``hydra.sweeper.params`` with the command line's sweep overrides (parsed Hydra
    ``Override`` objects) replacing same-named keys. Raises :class:`ConfigError` naming the key."""
    entries: dict[str, Param] = {}
    for key, spec in (params or {}).items():
        entries[str(key)] = _param(str(key), spec)
    for override in sweep_overrides:
        key = override.get_key_element()
        entries[key] = _from_hydra_override(key, override)
    known: set[str] = set()
    for param in entries.values():
        unknown = [k for k in param.when if k not in known]
        if unknown:
            raise ConfigError(f"hydra.sweeper.params.{param.key}.when", f"names {unknown}, not searched above it",
                              "write the condition's key earlier in params (they are sampled in order)")
        known.add(param.key)
    if not entries:
        raise ConfigError("hydra.sweeper.params", "is empty: nothing to search",
                          "choose hparams_search=<name> or give params, " + FIX)
    return SearchSpace(tuple(entries.values()))


def _param(key: str, spec: Any) -> Param:
    if isinstance(spec, str):
        return _from_grammar(key, spec)
    if isinstance(spec, Mapping):
        return _from_mapping(key, spec)
    if isinstance(spec, (list, tuple)):
        return Param(key, "choice", choices=tuple(_categorical(c) for c in spec))
    raise ConfigError(f"hydra.sweeper.params.{key}", f"is {spec!r}: not a range or a choice", FIX)


def _from_grammar(key: str, text: str) -> Param:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        override = OverridesParser.create().parse_override(f"{key}={text}")
    except Exception as error:  # noqa: BLE001 - Hydra's grammar error, reworded with the key
        raise ConfigError(f"hydra.sweeper.params.{key}", f"{text!r} is not a sweep ({error})", FIX) from None
    if not override.is_sweep_override():
        raise ConfigError(f"hydra.sweeper.params.{key}", f"{text!r} is one value, not a range or a choice", FIX)
    return _from_hydra_override(key, override)


def _from_hydra_override(key: str, override: Any) -> Param:
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    sweep = override.value()
    log = "log" in getattr(sweep, "tags", set())
    if isinstance(sweep, ChoiceSweep):
        return Param(key, "choice", choices=tuple(_categorical(c) for c in sweep.list))
    if isinstance(sweep, RangeSweep):
        values = list(override.sweep_iterator())
        if all(isinstance(v, int) for v in values) and sweep.step is not None and not log:
            return Param(key, "int", low=int(sweep.start), high=int(values[-1]), step=int(sweep.step))
        return Param(key, "choice", choices=tuple(values))
    if isinstance(sweep, IntervalSweep):
        if isinstance(sweep.start, int) and isinstance(sweep.end, int):
            return Param(key, "int", low=sweep.start, high=sweep.end, log=log)
        return Param(key, "float", low=float(sweep.start), high=float(sweep.end), log=log)
    raise ConfigError(f"hydra.sweeper.params.{key}", f"{type(sweep).__name__} is not supported", FIX)


def _categorical(choice: Any) -> Any:
    """Optuna stores None, bools, numbers and strings; a list choice (``[128, 64]``) travels as its override."""
    if choice is None or isinstance(choice, (bool, int, float, str)):
        return choice
    if isinstance(choice, Mapping):
        choice = dict(choice)
    return _override_value(list(choice) if isinstance(choice, (list, tuple)) else choice)


def _from_mapping(key: str, spec: Mapping[str, Any]) -> Param:
    where = f"hydra.sweeper.params.{key}"
    kinds = [kind for kind in KINDS if kind in spec]
    unknown = sorted(set(spec) - set(KINDS) - {"log", "step", "when"})
    if len(kinds) != 1 or unknown:
        raise ConfigError(where, f"needs exactly one of {list(KINDS)}" + (f" (unknown: {unknown})" if unknown
                                                                             else ""), FIX)
    kind = kinds[0]
    when = {str(k): tuple(v) if isinstance(v, (list, tuple)) else (v,) for k, v in (spec.get("when") or {}).items()}
    if kind == "choice":
        choices = tuple(_categorical(c) for c in spec["choice"])
        if not choices:
            raise ConfigError(where, "choice is empty", FIX)
        return Param(key, "choice", choices=choices, when=when)
    bounds = spec[kind]
    if not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
        raise ConfigError(where, f"{kind} must be [low, high], got {bounds!r}", FIX)
    low, high = bounds
    cast = int if kind == "int" else float
    try:
        low, high = cast(low), cast(high)
    except (TypeError, ValueError):
        raise ConfigError(where, f"{kind} bounds {bounds!r} are not numbers", FIX) from None
    log = bool(spec.get("log", False))
    if not low < high or (log and low <= 0):
        raise ConfigError(where, f"[{low}, {high}] is not a range" + (" above 0 (log)" if log else ""), FIX)
    return Param(key, kind, low=low, high=high, log=log, step=spec.get("step"), when=when)
