"""Every error visiontrain raises, each with its exit code: what was wrong, where, and what to do.

An error reaching the command line ends the command with one line, ``visiontrain: <kind>: <message>`` (secrets
masked, no traceback), and its class's exit code:

- 1: the machine, not what the user gave: a file the run dir refused, messages the broker did not take
- 2: what the user gave: the config, the data, the weights, a checkpoint, a model file or its metadata, a JSON
  body, an image, a ``_target_`` outside what its role allows
- 3: the exported ONNX file disagrees with the trained model beyond the tolerance

This module is the bottom layer: it imports the standard library only, so every layer can raise these.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import ClassVar

# a folder that turned read-only (EROFS; EPERM for an immutable one, even to root), lost its permissions or filled up
WRITE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT})


class VisiontrainError(Exception):
    """Base of every visiontrain error: ``kind`` names it on the console line, ``exit_code`` ends the command."""

    kind: ClassVar[str] = "error"
    exit_code: ClassVar[int] = 1


class ConfigError(VisiontrainError, ValueError):
    """A configuration mistake found before any training starts.

    The message always names the offending key and a fix, e.g. ``optimizer.lr=1e-3``.
    """

    kind, exit_code = "config error", 2

    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key, self.problem, self.fix = key, problem, fix
        super().__init__(f"config key `{key}`: {problem}\n  fix: {fix}")


class DataError(VisiontrainError, ValueError):
    """The data cannot be used at all (no classes, no usable images in a split, ...)."""

    kind, exit_code = "data error", 2


class WeightsError(VisiontrainError, RuntimeError):
    """Pretrained or local weights could not be obtained or do not fit the backbone."""

    kind, exit_code = "weights error", 2


class CheckpointError(VisiontrainError, ValueError):
    """A checkpoint cannot be used: missing, damaged, not a visiontrain checkpoint, or holding settings we refuse.

    Raised before anything from the file is built, so a damaged or hostile checkpoint ends in one clear message.
    """

    kind, exit_code = "checkpoint error", 2


class CheckpointRefused(CheckpointError):
    """A checkpoint holds something we never build or run (code, a class outside the allow-list, an interpolation).

    Never skipped for another checkpoint of the run, as a damaged one is: a hostile file means someone wrote it.
    """


class RunWriteError(VisiontrainError, OSError):
    """A file of the run could not be written (a read-only or full run dir): the command stops once, naming the
    folder to fix and how to continue, whichever writer (checkpoint, logger, history, report) met it first."""

    kind, exit_code = "write error", 1  # the disk, not the config

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.errno = code


CheckpointWriteError = RunWriteError  # its name before every writer of a run shared it


class UntrustedTarget(VisiontrainError, ValueError):
    """A ``_target_`` (or an interpolation) outside what its role allows: refused before anything is imported."""

    kind, exit_code = "config error", 2


class MetadataError(VisiontrainError, ValueError):
    """The file's metadata cannot be read as a visiontrain model's; the message names the field."""

    kind, exit_code = "model error", 2


class ModelError(VisiontrainError, ValueError):
    """The file is not a model these commands can run; the message says why and what to do."""

    kind, exit_code = "model error", 2


class RegistryError(VisiontrainError, ValueError):
    """A model registry that cannot be read or written, or a name, version or alias it does not hold."""

    kind, exit_code = "registry error", 2


class ImageRejected(VisiontrainError, ValueError):
    """An input that cannot be used as an image; the message is the reason shown to the user."""

    kind, exit_code = "image rejected", 2


class ImageTooLarge(ImageRejected):
    """More decoded pixels than a pixel limit allows: found from the header, before anything is decoded."""


class JsonProblem(VisiontrainError, ValueError):
    """The text is not JSON we can read; the message says why."""

    kind, exit_code = "data error", 2


class ColumnsError(VisiontrainError, ValueError):
    """The rows lack columns the model needs; ``missing`` names them."""

    kind, exit_code = "data error", 2

    def __init__(self, missing: list[str], unexpected: list[str]) -> None:
        self.missing, self.unexpected = missing, unexpected
        hint = f" (unknown columns given: {', '.join(unexpected[:10])})" if unexpected else ""
        super().__init__(f"missing column(s) the model needs: {', '.join(missing)}{hint}")


class DeliveryFailed(VisiontrainError, RuntimeError):
    """The broker refused or timed out messages: nothing of this batch is committed."""

    kind, exit_code = "delivery failed", 1


class ChallengerFailed(VisiontrainError, RuntimeError):
    """`visiontrain retrain`: the challenger's training run failed; the message names its run dir and output."""

    kind, exit_code = "retrain error", 1


class ExportMismatch(VisiontrainError, RuntimeError):
    """onnxruntime and PyTorch disagree on the exported model beyond the configured tolerance."""

    kind, exit_code = "export error", 3


class TrialPruned(Exception):
    """A sweep trial the pruner stopped early: not an error. The sweeper records it as pruned, with the last
    value it reported; nothing is written to ``failed.json``."""

    def __init__(self, epoch: int, value: float | None) -> None:
        self.epoch, self.value = epoch, value
        super().__init__(f"pruned after epoch {epoch} (last value {value})")


def write_failure(error: BaseException, folder: Path) -> OSError | None:
    """The earliest error in ``error``'s chain (causes and contexts) that failed to write inside ``folder``.

    The earliest, because a later one is only teardown (a logger saving on the way out) failing the same way.
    """
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)  # as a traceback shows it: ``raise ... from None`` hides what it replaced
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    for candidate in reversed(chain):
        if isinstance(candidate, OSError) and candidate.errno in WRITE_ERRNOS and candidate.filename and \
                is_inside(os.fsdecode(candidate.filename), folder):
            return candidate
    return None


def is_inside(path: str | Path, folder: str | Path) -> bool:
    """Whether ``path`` is ``folder`` or lies under it, symlinks resolved."""
    path, root = os.path.realpath(path), os.path.realpath(folder)
    return path == root or path.startswith(root + os.sep)


def run_write_error(failure: OSError, run_dir: Path, command: str) -> RunWriteError:
    """One message for a write the run dir refused: the file, why, the folder to fix and the command to continue."""
    path = Path(os.fsdecode(failure.filename))
    folder, run_dir = path.parent, Path(run_dir)
    reason = failure.strerror or str(failure)
    fix = f"make {folder} writable" if folder == run_dir else \
        f"make {folder} writable, and the rest of the run dir {run_dir} with it"
    if command == "train":
        then = f"The run stopped: {fix} (and check free space), then continue with " \
               f"`visiontrain train <the same overrides> resume={run_dir}`"
    else:
        then = f"`visiontrain {command}` stopped: {fix} (and check free space), then run it again"
    return RunWriteError(f"cannot write {path} ({reason}). {then}", failure.errno)
