"""Errors that speak to the user: what was wrong, where, and what to do."""

from __future__ import annotations

import errno
import os
from pathlib import Path

# a folder that turned read-only (EROFS; EPERM for an immutable one, even to root), lost its permissions or filled up
WRITE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT})


class ConfigError(ValueError):
    """A configuration mistake found before any training starts.

    The message always names the offending key and a fix, e.g. ``optimizer.lr=1e-3``.
    """

    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key, self.problem, self.fix = key, problem, fix
        super().__init__(f"config key `{key}`: {problem}\n  fix: {fix}")


class DataError(ValueError):
    """The data cannot be used at all (no classes, no usable images in a split, ...)."""


class WeightsError(RuntimeError):
    """Pretrained or local weights could not be obtained or do not fit the backbone."""


class CheckpointError(ValueError):
    """A checkpoint cannot be used: missing, damaged, not a visiontrain checkpoint, or holding settings we refuse.

    Raised before anything from the file is built, so a damaged or hostile checkpoint ends in one clear message.
    """


class CheckpointRefused(CheckpointError):
    """A checkpoint holds something we never build or run (code, a class outside the allow-list, an interpolation).

    Never skipped for another checkpoint of the run, as a damaged one is: a hostile file means someone wrote it.
    """


class RunWriteError(OSError):
    """A file of the run could not be written (a read-only or full run dir): the command stops once, naming the
    folder to fix and how to continue, whichever writer (checkpoint, logger, history, report) met it first."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.errno = code


CheckpointWriteError = RunWriteError  # its name before every writer of a run shared it


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
