"""Find every input file, check it, and decide which split and class it belongs to.

The result is an :class:`Inventory`: usable samples per split plus a list of rejected files with reasons.
Its invariant is the project's promise: every file found is either used or listed as rejected.
"""

from __future__ import annotations

import csv
import os
import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from visiontrain.data.image_io import why_unusable
from visiontrain.errors import DataError

SPLITS = ("train", "val", "test")
FORMATS = ("auto", "imagefolder", "class_tree", "manifest")


@dataclass(frozen=True)
class Sample:
    """One usable image and its class index."""

    path: str
    label: int


@dataclass(frozen=True)
class Rejected:
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
    rejected: list[Rejected] = field(default_factory=list)
    files_in: int = 0

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
        }

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


def build_inventory(
    root: str | os.PathLike,
    data_format: str = "auto",
    val_fraction: float = 0.2,
    seed: int = 0,
    classes: list[str] | None = None,
    check_workers: int | None = None,
    required_splits: tuple[str, ...] = ("train", "val"),
) -> Inventory:
    """Discover, check and split the images under ``root``.

    ``classes`` fixes the class list (e.g. when evaluating a trained model on new data); files of other
    classes are then rejected rather than silently relabelled.
    """
    root_path = Path(root).expanduser()
    resolved_format = detect_format(root_path) if data_format == "auto" else data_format
    rejected: list[Rejected] = []
    if resolved_format == "imagefolder":
        candidates = _discover_imagefolder(root_path, rejected)
    elif resolved_format == "class_tree":
        candidates = _discover_class_tree(root_path, rejected)
    elif resolved_format == "manifest":
        candidates = _discover_manifest(root_path, rejected)
    else:
        raise DataError(f"unknown data format {data_format!r}; use one of {', '.join(FORMATS)}")
    files_in = len(candidates) + len(rejected)

    usable = _check_files(candidates, rejected, check_workers)
    class_names = list(classes) if classes is not None else _class_names(usable, resolved_format)
    usable = _keep_known_classes(usable, class_names, rejected)
    index = {name: i for i, name in enumerate(class_names)}
    assigned = _assign_splits(usable, val_fraction, seed)

    splits: dict[str, list[Sample]] = {split: [] for split in SPLITS}
    for candidate, split in assigned:
        splits[split].append(Sample(str(candidate.path), index[candidate.class_name]))
    if not splits["test"]:
        del splits["test"]
    inventory = Inventory(str(root_path), resolved_format, class_names, splits, rejected, files_in)
    assert inventory.files_used + len(rejected) == files_in, "an input file was lost"
    _require_usable(inventory, required_splits)
    return inventory


def detect_format(root: Path) -> str:
    """A .csv file is a manifest; a folder with train/ is an ImageFolder; any other folder is a class tree."""
    if root.is_file() and root.suffix.lower() == ".csv":
        return "manifest"
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist (or is not a folder or a .csv manifest)")
    return "imagefolder" if (root / "train").is_dir() else "class_tree"


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _is_hidden(path: Path, base: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(base).parts)


def _discover_class_folders(
    base: Path, split: str | None, rejected: list[Rejected]
) -> list[_Candidate]:
    """Files in ``base/<class>/...``; loose files and hidden files are rejected with a reason."""
    candidates = []
    split_name = split or "unassigned"
    for path in _files_under(base):
        relative = path.relative_to(base)
        if _is_hidden(path, base):
            rejected.append(Rejected(str(path), split_name, "hidden file"))
        elif len(relative.parts) < 2:
            rejected.append(Rejected(str(path), split_name, "not inside a class folder"))
        else:
            candidates.append(_Candidate(path, split, relative.parts[0]))
    return candidates


def _discover_imagefolder(root: Path, rejected: list[Rejected]) -> list[_Candidate]:
    candidates = []
    for path in sorted(root.iterdir()):
        if path.is_dir() and path.name in SPLITS:
            candidates += _discover_class_folders(path, path.name, rejected)
        elif path.is_dir():
            for stray in _files_under(path):
                rejected.append(Rejected(str(stray), "none", f"folder '{path.name}' is not train/val/test"))
        elif path.is_file():
            rejected.append(Rejected(str(path), "none", "not inside a split folder (train/val/test)"))
    if not (root / "val").is_dir():
        raise DataError(f"{root} has train/ but no val/ folder; add val/<class>/ images or use a class tree")
    return candidates


def _discover_class_tree(root: Path, rejected: list[Rejected]) -> list[_Candidate]:
    return _discover_class_folders(root, None, rejected)


def _discover_manifest(manifest: Path, rejected: list[Rejected]) -> list[_Candidate]:
    """A CSV with columns ``path,label`` and optional ``split``; paths are relative to the CSV's folder."""
    base = manifest.parent
    with manifest.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = {name.strip().lower() for name in reader.fieldnames or []}
        if not {"path", "label"} <= columns:
            raise DataError(f"manifest {manifest} needs columns 'path,label' (optional 'split'); found {sorted(columns)}")
        candidates = []
        for line_number, row in enumerate(reader, start=2):
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
            where = f"{manifest}:{line_number}"
            split = row.get("split") or None
            if not row["path"]:
                rejected.append(Rejected(where, split or "unassigned", "manifest row has no path"))
            elif not row["label"]:
                rejected.append(Rejected(str(base / row["path"]), split or "unassigned", "manifest row has no label"))
            elif split is not None and split not in SPLITS:
                rejected.append(Rejected(str(base / row["path"]), split, f"unknown split {split!r} (use train/val/test)"))
            else:
                candidates.append(_Candidate(base / row["path"], split, row["label"]))
    return candidates


def _check_files(
    candidates: list[_Candidate], rejected: list[Rejected], workers: int | None
) -> list[_Candidate]:
    """Decode every file once (in threads: Pillow releases the GIL while decoding)."""
    workers = workers or min(8, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        reasons = list(pool.map(lambda c: why_unusable(c.path), candidates))
    usable = []
    for candidate, reason in zip(candidates, reasons):
        if reason is None:
            usable.append(candidate)
        else:
            rejected.append(Rejected(str(candidate.path), candidate.split or "unassigned", reason))
    return usable


def _class_names(usable: list[_Candidate], data_format: str) -> list[str]:
    """Classes are defined by the training data (or by all data when the split is ours to make)."""
    if data_format == "imagefolder":
        return sorted({c.class_name for c in usable if c.split == "train"})
    pool = [c for c in usable if c.split in (None, "train")]
    return sorted({c.class_name for c in pool})


def _keep_known_classes(
    usable: list[_Candidate], classes: list[str], rejected: list[Rejected]
) -> list[_Candidate]:
    known = set(classes)
    kept = []
    for candidate in usable:
        if candidate.class_name in known:
            kept.append(candidate)
        else:
            reason = f"class '{candidate.class_name}' has no usable training images (known: {', '.join(classes)})"
            rejected.append(Rejected(str(candidate.path), candidate.split or "unassigned", reason))
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


def _require_usable(inventory: Inventory, required_splits: tuple[str, ...]) -> None:
    if len(inventory.classes) < 2:
        raise DataError(
            f"found {len(inventory.classes)} class(es) with usable training images under {inventory.root}; "
            "a classifier needs at least 2 class folders (see rejects.csv for files that were skipped)"
        )
    for split in required_splits:
        if not inventory.splits.get(split):
            raise DataError(f"no usable images in the {split} split under {inventory.root} (see rejects.csv)")
