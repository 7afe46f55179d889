"""Find every input file, check it, and decide which split and class it belongs to.

The result is an :class:`Inventory`: usable samples per split plus a list of rejected files with reasons.
Its invariant is the project's promise: every file found is either used or listed as rejected.
"""

from __future__ import annotations

import csv
import logging
import os
import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from visiontrain.config.choices import IMAGE_FORMATS as FORMATS
from visiontrain.core.files import describe, is_hidden, walk
from visiontrain.core.image_decode import PixelLimit
from visiontrain.core.machine import available_cores
from visiontrain.core.manifest import SPLITS, outside_folder, read_manifest, write_manifest
from visiontrain.errors import DataError
from visiontrain.image.duplicates import DuplicatePolicy, describe_group, resolve_duplicates
from visiontrain.image.image_io import TRAINING_LIMIT, why_unusable

log = logging.getLogger("visiontrain")


@dataclass(frozen=True)
class Sample:
    """One usable image and its class index."""

    path: str
    label: int


@dataclass(frozen=True)
class RejectedFile:
    """One input file that is not used, and why."""

    path: str
    split: str
    reason: str


@dataclass
class Inventory:
    """Usable samples per split, class names, and everything rejected on the way."""

    root: str
    format: str
    classes: list[str]
    splits: dict[str, list[Sample]]
    rejected: list[RejectedFile] = field(default_factory=list)
    files_in: int = 0
    warnings: list[str] = field(default_factory=list)  # usable, but worth a word: empty classes, duplicates
    pixel_limit: PixelLimit = TRAINING_LIMIT  # what the scan checked; the dataset decodes with the same

    @property
    def files_used(self) -> int:
        return sum(len(samples) for samples in self.splits.values())

    def class_counts(self, split: str) -> dict[str, int]:
        counts = Counter(sample.label for sample in self.splits.get(split, []))
        return {name: counts.get(index, 0) for index, name in enumerate(self.classes)}

    def counts(self) -> dict:
        """Counts for logs and summary.json; files_in == files_used + files_rejected always."""
        rejected_by_reason = Counter(r.reason.split(":")[0] for r in self.rejected)
        return {
            "files_in": self.files_in,
            "files_used": self.files_used,
            "files_rejected": len(self.rejected),
            "rejected_by_reason": dict(rejected_by_reason),
            "per_split": {split: len(samples) for split, samples in self.splits.items()},
            "per_class": {split: self.class_counts(split) for split in self.splits},
            "warnings": list(self.warnings),
        }

    def write_split(self, path: Path) -> Path:
        """Write every used image as a manifest (path, label, split), in the order training reads them.

        With ``rejects.csv`` it lists every file found once: ``files_in`` = rows here + rows there. Training on
        it (``data.root=split.csv``) gives the same splits, classes and sample order.
        """
        return write_manifest(path, ((sample.path, self.classes[sample.label], split)
                                     for split, samples in self.splits.items() for sample in samples))

    def write_rejects(self, path: Path) -> Path:
        """Write the rejects report (path, split, reason) as CSV; written even when empty."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "split", "reason"])
            for item in self.rejected:
                writer.writerow([item.path, item.split, item.reason])
        return path


@dataclass(frozen=True)
class _Candidate:
    path: Path
    split: str | None  # None: to be assigned by the stratified split
    class_name: str


@dataclass
class _Discovery:
    """What a format's discovery found: files to check, and the class folders seen (and what is in them)."""

    candidates: list[_Candidate] = field(default_factory=list)
    class_folders: dict[tuple[str | None, str], Path] = field(default_factory=dict)  # (split, class): folder
    entries: Counter = field(default_factory=Counter)  # (split, class): entries found inside, used or not


DEFAULT_DUPLICATES = DuplicatePolicy()  # data.duplicates' defaults


def build_inventory(
    root: str | os.PathLike,
    data_format: str = "auto",
    val_fraction: float = 0.2,
    seed: int = 0,
    classes: list[str] | None = None,
    check_workers: int | None = None,
    required_splits: tuple[str, ...] = ("train", "val"),
    duplicates: DuplicatePolicy = DEFAULT_DUPLICATES,
    allow_outside_root: bool = False,
    allow_key: str = "data.allow_outside_root",
    pixel_limit: PixelLimit = TRAINING_LIMIT,
    reduce_to: int | None = None,
) -> Inventory:
    """Discover, check and split the images under ``root``.

    ``classes`` fixes the class list (e.g. when evaluating a trained model on new data); files of other
    classes are then rejected rather than silently relabelled. ``allow_outside_root`` lets a manifest name
    files outside its own folder (refused by default: a shared manifest could otherwise read any file);
    ``allow_key`` is the config key that sets it, named in the reason a row is refused. Every file is decoded
    as the dataset will decode it: an image over ``pixel_limit`` is rejected from its header (a decompression
    bomb is never decoded), a JPEG is decoded at reduced DCT scale down to ``reduce_to`` (the resize size).
    """
    root_path = Path(root).expanduser()
    resolved_format = detect_format(root_path) if data_format == "auto" else data_format
    rejected: list[RejectedFile] = []
    if resolved_format == "imagefolder":
        found = _discover_imagefolder(root_path, rejected)
    elif resolved_format == "class_tree":
        found = _discover_class_folders(root_path, False, rejected)
    elif resolved_format == "manifest":
        found = _Discovery(_discover_manifest(root_path, rejected, allow_outside_root, allow_key))
    else:
        raise DataError(f"unknown data format {data_format!r}; use one of {', '.join(FORMATS)}")
    files_in = len(found.candidates) + len(rejected)
    workers = check_workers or min(8, available_cores() * 2)  # threads: decoding releases the GIL

    usable = _check_files(found.candidates, rejected, workers, pixel_limit, reduce_to)
    if classes is not None:  # files of unknown classes are rejected as such, not compared
        usable = _keep_known_classes(usable, list(classes), rejected)
    resolution = resolve_duplicates(usable, duplicates, workers)
    rejected += [RejectedFile(str(c.path), c.split or "unassigned", reason) for c, reason in resolution.rejected]
    class_names = list(classes) if classes is not None else _class_names(resolution.kept, resolved_format)
    usable = _keep_known_classes(resolution.kept, class_names, rejected)
    index = {name: i for i, name in enumerate(class_names)}
    assigned = _assign_splits(usable, val_fraction, seed)

    splits: dict[str, list[Sample]] = {split: [] for split in SPLITS}
    for candidate, split in assigned:
        splits[split].append(Sample(str(candidate.path), index[candidate.class_name]))
    if not splits["test"]:
        del splits["test"]
    inventory = Inventory(str(root_path), resolved_format, class_names, splits, rejected, files_in,
                          pixel_limit=pixel_limit)
    if inventory.files_used + len(rejected) != files_in:
        raise RuntimeError(f"inventory of {root_path}: {files_in} files in, but {inventory.files_used} used "
                           f"and {len(rejected)} rejected; an input file was lost (a bug: please report it)")
    split_of = {id(candidate): split for candidate, split in assigned}
    dropped = _dropped_classes(found, class_names) if classes is None else {}
    inventory.warnings = [*_folder_warnings(found, dropped), *_split_warnings(inventory),
                          *(describe_group(group, lambda c: split_of[id(c)], duplicates)
                            for group in resolution.warn_groups)]
    _log_warnings(inventory.warnings)
    _require_usable(inventory, required_splits, dropped, allow_key)
    return inventory


def detect_format(root: Path) -> str:
    """A .csv file is a manifest; a folder with train/ is an ImageFolder; any other folder is a class tree."""
    try:
        if root.is_file() and root.suffix.lower() == ".csv":
            return "manifest"
        if not root.is_dir():
            raise DataError(f"data root {root} does not exist (or is not a folder or a .csv manifest)")
        return "imagefolder" if (root / "train").is_dir() else "class_tree"
    except OSError as error:
        raise DataError(f"data root {root} cannot be read ({describe(error)}); check its permissions "
                        "(the folder needs read and execute rights)") from None


def _discover_imagefolder(root: Path, rejected: list[RejectedFile]) -> _Discovery:
    found = _discover_class_folders(root, True, rejected)
    if not (root / "val").is_dir():
        raise DataError(f"{root} has train/ but no val/ folder; add val/<class>/ images or use a class tree")
    return found


def _discover_class_folders(root: Path, with_splits: bool, rejected: list[RejectedFile]) -> _Discovery:
    """Every entry under ``[split/]<class>/...``; anything else is rejected with a reason.

    The walker's own reasons (unreadable folder, FIFO, broken symlink, ...) come first, then hidden files,
    files outside a split folder (ImageFolder) and files outside a class folder.
    """
    found = _Discovery()
    for entry in walk(root):
        parts = entry.path.relative_to(root).parts
        split = parts[0] if with_splits else None
        below_split = parts[1:] if with_splits else parts  # <class>/...
        if entry.is_dir:
            if len(below_split) == 1 and not is_hidden(parts) and (split in SPLITS or not with_splits):
                found.class_folders[(split, below_split[0])] = entry.path
            continue
        if below_split:
            found.entries[(split, below_split[0])] += 1
        reason = entry.problem or _placement_problem(parts, below_split, with_splits)
        if reason is not None:
            split_name = (split if split in SPLITS else "none") if with_splits else "unassigned"
            rejected.append(RejectedFile(str(entry.path), split_name, reason))
        else:
            found.candidates.append(_Candidate(entry.path, split, below_split[0]))
    return found


def _placement_problem(parts: tuple[str, ...], below_split: tuple[str, ...], with_splits: bool) -> str | None:
    if is_hidden(parts):
        return "hidden file"
    if with_splits and parts[0] not in SPLITS:
        return "not inside a split folder (train/val/test)" if len(parts) == 1 else \
            f"folder '{parts[0]}' is not train/val/test"
    if len(below_split) < 2:
        return "not inside a class folder"
    return None


def _discover_manifest(manifest: Path, rejected: list[RejectedFile], allow_outside_root: bool,
                       allow_key: str) -> list[_Candidate]:
    """The manifest's usable rows as candidates; every other row is rejected with its reason (core.manifest)."""
    candidates = []
    for row in read_manifest(manifest, allow_outside_root, allow_key=allow_key):
        if row.problem is None and row.path is not None:
            candidates.append(_Candidate(row.path, row.split, row.label))
        else:
            rejected.append(RejectedFile(row.source, row.split or "unassigned", row.problem or "unusable row"))
    return candidates


def _check_files(
    candidates: list[_Candidate], rejected: list[RejectedFile], workers: int, pixel_limit: PixelLimit,
    reduce_to: int | None
) -> list[_Candidate]:
    """Decode every file once (in threads: Pillow releases the GIL while decoding)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        reasons = list(pool.map(lambda c: why_unusable(c.path, reduce_to, pixel_limit), candidates))
    usable = []
    for candidate, reason in zip(candidates, reasons):
        if reason is None:
            usable.append(candidate)
        else:
            rejected.append(RejectedFile(str(candidate.path), candidate.split or "unassigned", reason))
    return usable


def _class_names(usable: list[_Candidate], data_format: str) -> list[str]:
    """Classes are defined by the training data (or by all data when the split is ours to make)."""
    if data_format == "imagefolder":
        return sorted({c.class_name for c in usable if c.split == "train"})
    pool = [c for c in usable if c.split in (None, "train")]
    return sorted({c.class_name for c in pool})


def _keep_known_classes(
    usable: list[_Candidate], classes: list[str], rejected: list[RejectedFile]
) -> list[_Candidate]:
    known = set(classes)
    kept = []
    for candidate in usable:
        if candidate.class_name in known:
            kept.append(candidate)
        else:
            reason = f"class '{candidate.class_name}' has no usable training images (known: {', '.join(classes)})"
            rejected.append(RejectedFile(str(candidate.path), candidate.split or "unassigned", reason))
    return kept


def _assign_splits(
    usable: Iterable[_Candidate], val_fraction: float, seed: int
) -> list[tuple[_Candidate, str]]:
    """Keep given splits; split the rest into train/val per class (stratified) with a seeded shuffle."""
    assigned, unassigned_by_class = [], {}
    for candidate in usable:
        if candidate.split is None:
            unassigned_by_class.setdefault(candidate.class_name, []).append(candidate)
        else:
            assigned.append((candidate, candidate.split))
    rng = random.Random(seed)
    for class_name in sorted(unassigned_by_class):
        members = sorted(unassigned_by_class[class_name], key=lambda c: str(c.path))
        rng.shuffle(members)
        n_val = round(len(members) * val_fraction)
        if val_fraction < 1.0:  # every class keeps at least one training image
            n_val = min(n_val, len(members) - 1)
        assigned += [(c, "val") for c in members[:n_val]] + [(c, "train") for c in members[n_val:]]
    return assigned


def _dropped_classes(found: _Discovery, classes: list[str]) -> dict[str, str]:
    """Classes the training data names (a folder, a manifest label) that ended up with no usable image."""
    in_pool = {name for (split, name) in found.class_folders if split in (None, "train")}
    in_pool |= {c.class_name for c in found.candidates if c.split in (None, "train")}
    dropped = {}
    for name in sorted(in_pool - set(classes)):
        folders = [key for key in found.class_folders if key[1] == name and key[0] in (None, "train")]
        empty = bool(folders) and not any(found.entries[key] for key in folders)
        dropped[name] = ("its training folder is empty" if empty
                         else "no usable training images (see rejects.csv)")
    return dropped


def _folder_warnings(found: _Discovery, dropped: dict[str, str]) -> list[str]:
    empty = [f"empty class folder: {folder}" for key, folder in found.class_folders.items()
             if not found.entries[key]]
    return empty + [f"class '{name}' dropped: {why}" for name, why in dropped.items()]


def _split_warnings(inventory: Inventory) -> list[str]:
    """A class missing from val (or test) is a score that silently says nothing about it."""
    return [f"class '{name}' has no {split} images: the {split} scores do not cover it"
            for split in ("val", "test") if inventory.splits.get(split)
            for name, count in inventory.class_counts(split).items() if count == 0]


MAX_LOGGED_WARNINGS = 20


def _log_warnings(warnings: list[str]) -> None:
    for warning in warnings[:MAX_LOGGED_WARNINGS]:
        log.warning("data: %s", warning)
    if len(warnings) > MAX_LOGGED_WARNINGS:
        log.warning("data: ... and %d more warnings (all in summary.json, data.warnings)",
                    len(warnings) - MAX_LOGGED_WARNINGS)


def _require_usable(inventory: Inventory, required_splits: tuple[str, ...], dropped: dict[str, str],
                    allow_key: str) -> None:
    if len(inventory.classes) < 2:
        why_dropped = "".join(f"; class '{name}' was dropped: {why}" for name, why in dropped.items())
        raise DataError(
            f"found {len(inventory.classes)} class(es) with usable training images under {inventory.root}"
            f"{why_dropped}; a classifier needs at least 2 class folders with usable images "
            f"(the rejected files and their reasons are in rejects.csv){_outside_hint(inventory, allow_key)}"
        )
    for split in required_splits:
        if not inventory.splits.get(split):
            raise DataError(f"no usable images in the {split} split under {inventory.root} (see rejects.csv)"
                            f"{_outside_hint(inventory, allow_key)}")


def _outside_hint(inventory: Inventory, allow_key: str) -> str:
    """Why a manifest (such as a run's split.csv) gave nothing, when its rows name files outside its folder."""
    outside = sum(item.reason == outside_folder(allow_key) for item in inventory.rejected)
    if not outside:
        return ""
    return (f"; {outside} manifest rows name files outside its folder: if you trust the file (a run's split.csv "
            f"names the training data, outside the run dir), add {allow_key}=true")
