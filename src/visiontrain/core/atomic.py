"""One way to replace a file so that no reader ever sees half of it: checkpoints, built-in tables, sweep reports.

The payload goes to a temporary file beside the target (same filesystem, so the rename is atomic), is fsynced,
and is renamed over the target; the folder is fsynced too, so the rename survives a power cut. Several processes
(or threads) may write the same target at once: each has its own temporary name, and the last rename wins whole.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

TEMPORARY_SUFFIX = ".partial"  # a file being written; never read, removed once renamed


def write_atomically(payload: bytes, target: Path) -> None:
    """``payload`` into ``target`` through a temporary file in the same folder: fsync, rename, fsync the folder."""
    temporary = _written_beside(payload, target)
    try:
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):  # a folder that refused the write refuses this too: keep the first error
            temporary.unlink(missing_ok=True)
        raise
    folder = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def create_exclusively(payload: bytes, target: Path) -> bool:
    """``payload`` as a new file ``target``, whole or not at all; False when ``target`` already exists.

    The temporary file is hard-linked in: the link fails if the name exists (the compare-and-swap two writers
    race on), and no reader ever sees the file half written, which an ``O_EXCL`` create then write would show.
    """
    temporary = _written_beside(payload, target)
    try:
        os.link(temporary, target)
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)
    return True


def _written_beside(payload: bytes, target: Path) -> Path:
    """A fsynced temporary file holding ``payload`` in ``target``'s folder (same filesystem: rename and link work)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}-{threading.get_ident()}{TEMPORARY_SUFFIX}")
    try:
        with open(temporary, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise
    return temporary
