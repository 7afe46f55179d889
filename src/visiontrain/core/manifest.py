"""Image manifests: a CSV with columns ``path,label`` and an optional ``split``, read and written in one place.

Training reads a manifest as its data, ``visiontrain evaluate`` as ``data_root`` and ``visiontrain predict`` as
its input; every run writes its own split as one (``split.csv``). They share this module so that a path, a label
or a split means the same on both sides. Paths are relative to the CSV's own folder (an absolute path stays
absolute). A path must resolve, symlinks included, inside that folder unless the caller allows otherwise: a
manifest someone shared could otherwise make us read any file on the machine.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from visiontrain.errors import DataError

SPLITS = ("train", "val", "test")
COLUMNS = ("path", "label", "split")


def outside_folder(allow_key: str) -> str:
    """The reason a row is refused for naming a file outside the manifest's folder, with the key that allows it."""
    return f"outside the manifest folder (set {allow_key}=true to allow)"


@dataclass(frozen=True)
class ManifestRow:
    """One data row: the file it names (``path``), its label and split, and why it cannot be used (or None).

    ``source`` is what a rejects listing shows: the path, or ``<manifest>:<line>`` for a row that names no file.
    """

    source: str
    path: Path | None
    label: str
    split: str | None
    problem: str | None = None


def read_manifest(manifest: Path, allow_outside_root: bool = False, label_required: bool = True,
                  allow_key: str = "data.allow_outside_root") -> list[ManifestRow]:
    """Every data row of ``manifest``, in file order, usable or with its problem.

    ``label_required=False`` (predict) reads a manifest without a ``label`` column, or with empty labels.
    """
    with manifest.open(newline="") as handle:
        reader = csv.DictReader(handle)
        try:
            return _rows(manifest, reader, allow_outside_root, label_required, allow_key)
        except (csv.Error, UnicodeDecodeError) as error:
            raise DataError(f"manifest {manifest}, line {reader.line_num + 1}: cannot be read as a UTF-8 CSV "
                            f"({error}); save it as UTF-8 CSV with columns path,label[,split]") from None


def header_columns(csv_file: Path) -> set[str]:
    """The column names of a CSV's header, lower case (none where it cannot be read as UTF-8 CSV)."""
    try:
        with csv_file.open(newline="") as handle:
            header = next(csv.reader(handle), [])
    except (csv.Error, UnicodeDecodeError):
        return set()
    return {name.strip().lower() for name in header}


def _rows(manifest: Path, reader: csv.DictReader, allow_outside_root: bool, label_required: bool,
          allow_key: str) -> list[ManifestRow]:
    base = manifest.parent
    confine_to = Path(os.path.realpath(base))
    columns = {name.strip().lower() for name in reader.fieldnames or []}
    needed = ("path", "label") if label_required else ("path",)
    if not set(needed) <= columns:
        raise DataError(f"manifest {manifest} needs columns '{','.join(needed)}' (optional 'split'); "
                        f"found {sorted(columns)}")
    rows = []
    for line_number, row in enumerate(reader, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        raw, label, split = row["path"], row.get("label", ""), row.get("split") or None
        if not raw or "\0" in raw:
            problem = "manifest row has no path" if not raw else "manifest path contains a NUL byte"
            rows.append(ManifestRow(f"{manifest}:{line_number}", None, label, split, problem))
            continue
        path = base / raw  # an absolute path stays absolute
        problem = None
        if not allow_outside_root and not Path(os.path.realpath(path)).is_relative_to(confine_to):
            problem = outside_folder(allow_key)
        elif label_required and not label:
            problem = "manifest row has no label"
        elif split is not None and split not in SPLITS:
            problem = f"unknown split {split!r} (use train/val/test)"
        rows.append(ManifestRow(str(path), path, label, split, problem))
    return rows


def write_manifest(manifest: Path, rows: Iterable[tuple[str, str, str]]) -> Path:
    """Write ``(path, label, split)`` rows as a manifest, each path relative to the manifest's own folder.

    Relative paths keep the file free of the machine's absolute prefix: the same data beside the same run
    folder gives the same file on any machine, and the two can move together (a different drive, where no
    relative path exists, keeps the absolute one). The folders at both ends are resolved first (symlinks too),
    so a ``..`` reads back exactly as the system walks it; a symlinked image keeps its own name.
    """
    manifest.parent.mkdir(parents=True, exist_ok=True)
    folder = os.path.realpath(manifest.parent)
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for path, label, split in rows:
            real = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
            writer.writerow([_relative(real, folder), label, split])
    return manifest


def _relative(path: str, folder: str) -> str:
    try:
        return Path(os.path.relpath(path, folder)).as_posix()
    except ValueError:  # another drive (Windows): no relative path exists
        return path
