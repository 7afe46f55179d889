"""Checkpoints that are never lost or half-written, and that are read without trusting their contents.

* :class:`AtomicCheckpointIO` writes each checkpoint to a temporary file beside its target, fsyncs it and renames
  it into place, so a kill at any moment leaves the old checkpoint or the new one, never a truncated file.
  (Lightning's own transaction writes the temporary file in ``$TMPDIR``; on another filesystem its final move is
  a copy, and a kill during that copy leaves a truncated checkpoint in the run dir.)
* :class:`EveryEpochCheckpoint` rewrites ``last.ckpt`` after every finished epoch. Lightning 2.6 rewrites it
  only when a top-k checkpoint is saved too, so ``last.ckpt`` could lag epochs behind and a resume repeat them.
* :func:`read_checkpoint` loads with ``weights_only=True`` (no unpickling of code) from a local file, says
  clearly what is wrong with a damaged one, and refuses one whose stored settings name anything to build outside
  the allow-list (:func:`check_stored_settings`); :func:`newest_intact` is what a resume falls back to.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from visiontrain.config.targets import ENV_REFERENCE, check_targets
from visiontrain.core.atomic import write_atomically
from visiontrain.core.redaction import config_without_secrets
from visiontrain.errors import CheckpointError, CheckpointRefused, UntrustedTarget

log = logging.getLogger("visiontrain")


# Where a checkpoint's stored settings may name something to build, and of which role (paths under the checkpoint;
# "*" is any one key or index). Everywhere else it stores plain data: no `_target_`, and no interpolation in a
# setting. The run config's trainer, loggers and callbacks are left out of new checkpoints (stored_run_config);
# older ones recorded them.
STORED_ROLES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("hyper_parameters", "optimizer"), "optimizer"),
    (("hyper_parameters", "estimator"), "estimator"),
    (("hyper_parameters", "run_config", "optimizer"), "optimizer"),
    (("hyper_parameters", "run_config", "model", "estimator", "*"), "estimator"),
    (("hyper_parameters", "run_config", "augment", "train", "*"), "augmentation"),
    (("hyper_parameters", "run_config", "trainer"), "trainer"),
    (("hyper_parameters", "run_config", "logger", "*"), "logger"),
    (("hyper_parameters", "run_config", "callbacks", "*"), "callback"),
)
ALLOWED_PLACES = "the optimizer, the estimator, the augmentations (run_config.augment.train) and the run config's " \
                 "trainer, loggers and callbacks"
NAMES = ("class_names", "feature_names")  # names from the data, never resolved: any text is fine there
ENV_SETTING = ("hyper_parameters", "run_config", "data", "source")  # a secret URL, kept as ${oc.env:NAME}
RUN_ONLY_KEYS = ("trainer", "logger", "callbacks")  # how a run ran, kept in .hydra/config.yaml, not in checkpoints


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with every write atomic inside the run dir itself."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        target = Path(path)
        try:
            write_atomically(buffer.getvalue(), target)
        except OSError as error:  # named after the checkpoint, not its temporary file (the CLI words it once)
            raise OSError(error.errno, error.strerror or str(error), str(target)) from None


class EveryEpochCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` is always the latest finished epoch, whether or not it was best."""

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_behind(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_behind(trainer)

    def _save_last_if_behind(self, trainer: pl.Trainer) -> None:
        if not self.save_last or self._should_skip_saving_checkpoint(trainer):
            return
        if self._last_global_step_saved != trainer.global_step or not self.last_model_path:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


@dataclass(frozen=True)
class CheckpointInfo:
    """Where a checkpoint is and how far its training got."""

    path: Path
    epoch: int
    global_step: int


def read_checkpoint(path: str | Path, key: str = "ckpt") -> dict[str, Any]:
    """The checkpoint's contents, loaded as plain data; a :class:`CheckpointError` naming what is wrong.

    Only local files are read (Lightning would unpickle a URL with ``weights_only=False``), and only with
    ``weights_only=True``: tensors, numbers, strings, bytes and containers, never objects.
    """
    text = str(path)
    if "://" in text:
        raise CheckpointError(f"{key}={text}: only local checkpoint files are read; download it first, "
                              "and only from a source you trust")
    path = Path(text).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{key}={path}: no such checkpoint file")
    try:
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises RuntimeError, UnpicklingError, EOFError, ...
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "weights_only" in str(error) or "Unsupported global" in str(error):
            raise CheckpointRefused(f"{key}={path}: refused, it holds Python objects that loading would run "
                                  f"(only tensors and plain data are accepted): {first[:200]}") from None
        raise CheckpointError(f"{key}={path}: damaged or not a checkpoint ({first[:200]})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{key}={path}: not a visiontrain checkpoint (no state_dict)")
    try:
        check_stored_settings(checkpoint)
    except UntrustedTarget as error:
        raise CheckpointRefused(f"{key}={path}: refused, {error}") from None
    return checkpoint


def check_stored_settings(checkpoint: dict[str, Any]) -> None:
    """Raise :class:`UntrustedTarget` unless all a checkpoint stores is plain data, but where :data:`STORED_ROLES`
    lets a node name a class of its role (whose nested nodes and interpolations are checked too).

    Every reader goes through :func:`read_checkpoint`, so no command can use a stored setting that skipped this,
    whether or not it builds it today: evaluation never builds the optimizer, but a later change might.
    """
    _check_stored(checkpoint, ())


def _check_stored(node: Any, path: tuple[Any, ...]) -> None:
    role = next((role for pattern, role in STORED_ROLES if len(pattern) == len(path) and all(
        wanted in ("*", part) for wanted, part in zip(pattern, path))), None)
    if role is not None:
        check_targets(node, role, _dotted(path))
    elif isinstance(node, dict):
        if "_instantiator" in node:
            raise UntrustedTarget(f"it names an instantiator ({node['_instantiator']!r}); visiontrain rebuilds its "
                                  "models from its own classes only")
        if "_target_" in node:
            raise UntrustedTarget(f"{_dotted(path)}._target_ = {node['_target_']!r}: nothing is built from there "
                                  f"(a checkpoint may name classes only in {ALLOWED_PLACES})")
        for key, value in node.items():
            _check_stored(value, (*path, key))
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            _check_stored(value, (*path, index))
    elif isinstance(node, str) and "${" in node and _is_setting(path) and \
            not (path == ENV_SETTING and ENV_REFERENCE.fullmatch(node)):
        raise UntrustedTarget(f"{_dotted(path)}: stored settings must be plain values, got {node!r} (an "
                              "interpolation is resolved when read: ${oc.env:...} would read this machine's "
                              "environment)")


def _dotted(path: tuple[Any, ...]) -> str:
    """A path as the messages name it: ``("run_config", "augment", "train", 0)`` is ``run_config.augment.train[0]``."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")


def _is_setting(path: tuple[Any, ...]) -> bool:
    """A stored hyper-parameter (which OmegaConf may resolve), not a name from the data or a training state."""
    return path[:1] == ("hyper_parameters",) and (len(path) < 2 or path[1] not in NAMES)


def stored_run_config(cfg: Any) -> dict[str, Any]:
    """The run's config as its checkpoints keep it: no secret (see :mod:`visiontrain.core.redaction`), and not the run's
    trainer, loggers and callbacks, which say how it ran, not what it trained, and may name a user's own classes."""
    run_config = config_without_secrets(cfg)
    for key in RUN_ONLY_KEYS:
        run_config.pop(key, None)
    return run_config


def checkpoint_info(path: Path, key: str = "ckpt") -> CheckpointInfo:
    """Epoch and step of an intact checkpoint; :class:`CheckpointError` for a damaged one (naming ``key=``)."""
    checkpoint = read_checkpoint(path, key)
    return CheckpointInfo(path, int(checkpoint.get("epoch", -1)), int(checkpoint.get("global_step", -1)))


def newest_intact(folder: Path, preferred: Path | None = None, key: str = "ckpt"
                  ) -> tuple[CheckpointInfo | None, list[str]]:
    """The intact checkpoint of ``folder`` that got furthest (``preferred`` wins ties), and why others were skipped.

    Temporary files of an interrupted write are never candidates.
    """
    problems: list[str] = []
    intact: list[CheckpointInfo] = []
    for path in sorted(folder.glob("*.ckpt")):
        try:
            intact.append(checkpoint_info(path, key))
        except CheckpointError as error:
            problems.append(str(error))
    if not intact:
        return None, problems
    best = max(intact, key=lambda info: (info.epoch, info.global_step, info.path == preferred,
                                         info.path.stat().st_mtime))
    return best, problems


def module_from_checkpoint(cls: type[pl.LightningModule], checkpoint: dict[str, Any], path: str | Path,
                           **overrides: Any) -> pl.LightningModule:
    """Rebuild ``cls`` from a checkpoint read by :func:`read_checkpoint`: our class, its stored arguments as data.

    What Lightning's ``load_from_checkpoint`` does, without its instantiator hook: the class always comes from our
    code, and the stored settings passed :func:`check_stored_settings` when the file was read.
    """
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    try:
        module = cls(**{**hparams, **overrides})
        module.on_load_checkpoint(checkpoint)
        module.load_state_dict(checkpoint["state_dict"])
    except UntrustedTarget as error:
        raise CheckpointError(f"ckpt={path}: refused, {error}") from None
    except (TypeError, KeyError, RuntimeError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"ckpt={path}: does not fit {cls.__name__} ({first[:300]})") from None
    return module
