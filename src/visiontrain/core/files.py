"""Walk a folder and say what every entry is, without opening anything that could block, loop or crash.

Training (the inventory), ``visiontrain predict`` and ``visiontrain drift`` all list folders with :func:`walk`,
so the three agree on what is tried and why anything else is not. A folder that cannot be read (or can be listed
but not entered), a FIFO, a socket, a device file, a broken or looping symlink: each comes back as an entry with
the reason it cannot be used, so nothing under the folder is skipped in silence. Only ``stat`` calls are made
here; a FIFO is never opened (opening one blocks).

:func:`sha256_of_file` is the one checksum of a file's bytes (model versions, weights reports, duplicates).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

_FILE_TYPES = ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket"),
               (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"))
IN_CLOSED_FOLDER = "unreadable: permission denied (a folder on its path cannot be entered)"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Entry:
    """One thing found under a folder: a folder, a usable regular file, or something else and why."""

    path: Path
    is_dir: bool = False
    problem: str | None = None  # None: a folder, or a regular file (directly or through a symlink)


def walk(folder: Path) -> Iterator[Entry]:
    """Every entry under ``folder``, depth first in name order; symlinked folders are followed once."""
    try:
        identity = _identity(os.stat(folder))
    except OSError as error:
        yield Entry(folder, problem=f"unreadable folder: {describe(error)}")
        return
    yield from _walk(folder, frozenset({identity}))


def list_images(folder: Path, suffixes: Sequence[str] | None = None) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Every regular file under ``folder`` to try, and every other entry with the reason it is not tried.

    Unreadable folders, FIFOs, broken or looping symlinks and hidden files are listed, never skipped in silence;
    non-images are rejected later, when decoding, with their own reason. ``suffixes``: only files with these
    extensions are tried (the others are listed with the reason).
    """
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for entry in walk(folder):
        if entry.is_dir and entry.problem is None:
            continue
        if entry.problem:
            skipped.append((entry.path, entry.problem))
        elif is_hidden(entry.path.relative_to(folder).parts):
            skipped.append((entry.path, "hidden file"))
        elif suffixes is not None and entry.path.suffix.lower() not in suffixes:
            skipped.append((entry.path, f"not an image suffix ({', '.join(sorted(suffixes))})"))
        else:
            files.append(entry.path)
    return sorted(files), sorted(skipped)


def is_hidden(parts: Sequence[str]) -> bool:
    """A path (as its parts below the folder walked) that a dot-file or dot-folder holds: never data."""
    return any(part.startswith(".") for part in parts)


def path_problem(path: Path) -> str | None:
    """Why ``path`` is not a regular file that can be read (for paths named in a manifest), or None."""
    target, problem = _follow(path)
    if problem is None and not stat.S_ISREG(target.st_mode):
        problem = f"not a regular file: {file_type(target.st_mode)}"
    return problem


def file_type(mode: int) -> str:
    return next((name for is_type, name in _FILE_TYPES if is_type(mode)), "unknown file type")


def describe(error: OSError) -> str:
    """An OSError in words a user reads in rejects.csv (``permission denied``, ``file not found``)."""
    if error.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if error.errno == errno.ENOENT:
        return "file not found"
    return (error.strerror or type(error).__name__).lower()


def sha256_of_file(path: str | Path) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB blocks (``hashlib.file_digest`` needs Python 3.11)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _walk(folder: Path, ancestors: frozenset[tuple[int, int]]) -> Iterator[Entry]:
    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
    except OSError as error:
        yield Entry(folder, problem=f"unreadable folder: {describe(error)}")
        return
    for entry in entries:
        path = Path(entry.path)
        try:
            own = entry.stat(follow_symlinks=False)
        except OSError as error:  # listed, but the folder has no execute (enter) permission
            yield Entry(path, problem=IN_CLOSED_FOLDER if error.errno == errno.EACCES else _unreadable(error))
            continue
        target, problem = _follow(path, own)
        if problem is not None:
            yield Entry(path, problem=problem)
        elif stat.S_ISDIR(target.st_mode):
            if _identity(target) in ancestors:
                yield Entry(path, problem="symlink loop: points to a folder that contains it")
                continue
            yield Entry(path, is_dir=True)
            yield from _walk(path, ancestors | {_identity(target)})
        elif stat.S_ISREG(target.st_mode):
            yield Entry(path)
        else:
            yield Entry(path, problem=f"not a regular file: {file_type(target.st_mode)}")


def _follow(path: Path, own: os.stat_result | None = None) -> tuple[os.stat_result | None, str | None]:
    """The stat of what ``path`` names (through symlinks), or None and why there is none."""
    try:
        own = own or os.lstat(path)
    except OSError as error:
        return None, IN_CLOSED_FOLDER if error.errno == errno.EACCES else _unreadable(error)
    if not stat.S_ISLNK(own.st_mode):
        return own, None
    try:
        return os.stat(path), None
    except OSError as error:
        if error.errno == errno.ELOOP:
            return None, "symlink loop: the link never reaches a file"
        if error.errno in (errno.ENOENT, errno.ENOTDIR):
            return None, f"broken symlink: its target {os.readlink(path)} does not exist"
        return None, _unreadable(error)


def _unreadable(error: OSError) -> str:
    return f"unreadable: {describe(error)}"


def _identity(result: os.stat_result) -> tuple[int, int]:
    return result.st_dev, result.st_ino
