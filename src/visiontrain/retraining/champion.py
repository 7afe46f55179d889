"""The champion: the registered version an alias (``production``) points at, and what retraining needs of it.

Retraining replays the run that made the champion, so the version must carry its training record
(:func:`visiontrain.model_registry.records.training_record`): the overrides it was launched with and the metric it
was selected on. A version registered from an ONNX file alone has neither, and is refused with the way to
register it properly, before anything is split or trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from visiontrain.errors import ConfigError, RegistryError
from visiontrain.model_registry.store import ModelRegistry, ModelVersion

REGISTER_FIX = ("register the champion from its run dir, so that its record (summary.json, .hydra/overrides.yaml) "
                "comes with it: visiontrain models register model=<name> run=<run dir> (or train with "
                "register=<name>), then visiontrain models promote model=<name> version=latest")


@dataclass(frozen=True)
class Champion:
    """The version in service and the parts of its record the loop uses."""

    version: ModelVersion
    alias: str
    model_file: Path  # its ONNX file on this machine (sha256 checked against the registration)
    overrides: tuple[str, ...]  # the command line of the run that trained it
    metric: str  # its monitor metric as the held-out rows are scored: ``roc_auc`` for ``val/roc_auc``
    mode: str  # max | min: the direction that metric improves in

    @property
    def label(self) -> str:
        return self.version.label


def resolve_champion(registry: ModelRegistry, name: str, alias: str, cache_dir: Path | None = None) -> Champion:
    """The version ``alias`` names, with its ONNX file and record checked; a ConfigError naming the key to fix."""
    try:
        known = registry.names()
    except (OSError, ValueError) as error:  # an unreachable bucket, a folder we may not list
        raise ConfigError("registry", f"{registry.where} cannot be read: {error}",
                          "registry=<a registry folder or URL this machine can read>") from None
    if name not in known:
        listed = f"it holds {', '.join(known)}" if known else "it holds no model yet"
        raise ConfigError("model", f"{registry.where} has no model {name!r} ({listed})",
                          f"model={known[0]}" if known else "register the champion first, from its run dir")
    aliases = registry.aliases(name).aliases
    if alias not in aliases:
        shown = ", ".join(f"{a} -> v{v}" for a, v in sorted(aliases.items())) or "no aliases yet"
        other = next(iter(sorted(aliases)), None)
        raise ConfigError("champion_alias", f"{name} has no alias {alias!r} ({shown}): retraining needs the "
                          "version in service to compare a challenger with",
                          f"promote the version in service to {alias} first" + (
                              f", or champion_alias={other}" if other else ""))
    version = registry.version(name, alias)
    record = version.record or {}
    if "overrides" not in record or not record.get("task"):
        raise ConfigError("model", f"{version.label} (at {alias}) was registered without a training record, so "
                          "there is no run to replay: retraining trains the challenger with the champion's own "
                          "overrides", REGISTER_FIX)
    monitor = record.get("monitor") or {}
    if not monitor.get("metric") or monitor.get("mode") not in ("max", "min"):
        raise ConfigError("model", f"{version.label}'s training record names no monitor metric and mode (its "
                          "run's summary.json had none), so there is no metric to compare on", REGISTER_FIX)
    try:
        model_file = registry.local_model(version, cache_dir)
    except RegistryError as error:
        raise ConfigError("model", str(error), "register the champion again from its run dir") from None
    return Champion(version=version, alias=alias, model_file=model_file,
                    overrides=tuple(str(item) for item in record["overrides"]),
                    metric=str(monitor["metric"]).rsplit("/", 1)[-1], mode=str(monitor["mode"]))
