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
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}-{threading.get_ident()}{TEMPORARY_SUFFIX}")
    try:
        with open(temporary, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
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
