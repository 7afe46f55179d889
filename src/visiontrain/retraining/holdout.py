"""Hold out part of the fresh data before anything learns from it.

Tables are split into ``train.csv`` (what the challenger trains on) and ``holdout.csv`` (what both models are
scored on), image folders of class subfolders into two manifests of the same names (``path,label``, the format
``data.root=<manifest.csv>`` and ``visiontrain predict`` read: :mod:`visiontrain.core.manifest`). The draw is
stratified by the target (classification) and seeded: the same data and seed give the same files. Rows without a
label stay in both draws' strata (the empty one): training rejects them as it always does, scoring leaves them out.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visiontrain.core.files import list_images
from visiontrain.core.manifest import SPLITS, write_manifest
from visiontrain.deploy.table_input import is_table_file, read_table
from visiontrain.errors import ConfigError
from visiontrain.retraining.labels import Target

TRAIN_FILE, HOLDOUT_FILE = "train.csv", "holdout.csv"
TABLE, IMAGES = "table", "images"


@dataclass(frozen=True)
class HeldOut:
    """The fresh data split in two: where each part was written and how many rows (images) each holds."""

    kind: str  # table | images
    source: Path
    train_file: Path
    holdout_file: Path
    fresh_rows: int  # rows of the table, or labelled images of the folder
    train_rows: int  # in train_file (after train_fraction)
    holdout_rows: int
    left_out_rows: int  # of the training part, by train_fraction
    holdout_fraction: float
    train_fraction: float
    seed: int
    stratified_by: str | None  # the target column ("label" for images); None: a plain random draw
    unlabelled: int = 0  # images outside a class folder: in neither part

    def as_dict(self) -> dict[str, object]:
        return {name: str(value) if isinstance(value, Path) else value for name, value in self.__dict__.items()}


def stratified_pick(strata: Sequence[Hashable] | None, count: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted positions of ``fraction`` of the ``count`` rows, the same share of every stratum (rounded half up),
    drawn with ``seed``; ``strata`` None: of all rows at once."""
    rng = np.random.default_rng(seed)
    if strata is None:
        groups = {"": np.arange(count)}
    else:
        keys = np.array(["" if key is None else str(key) for key in strata], dtype=object)
        groups = {key: np.flatnonzero(keys == key) for key in sorted(set(keys))}
    picked = [rng.permutation(members)[:int(np.floor(fraction * len(members) + 0.5))]
              for members in groups.values()]
    return np.sort(np.concatenate(picked)) if picked else np.arange(0)


def _parts(strata: Sequence[Hashable] | None, count: int, holdout_fraction: float, train_fraction: float,
           seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Positions held out, positions trained on, and how many of the training part train_fraction left out."""
    held = stratified_pick(strata, count, holdout_fraction, seed)
    rest = np.setdiff1d(np.arange(count), held)
    if train_fraction >= 1:
        return held, rest, 0
    rest_strata = None if strata is None else [strata[i] for i in rest]
    kept = rest[stratified_pick(rest_strata, len(rest), train_fraction, seed + 1)]
    return held, kept, len(rest) - len(kept)


def split_table(source: Path, target: Target, holdout_fraction: float, train_fraction: float, seed: int,
                out_dir: Path) -> HeldOut:
    """``source`` (a table with the target column) as ``train.csv`` and ``holdout.csv`` in ``out_dir``."""
    if source.is_dir() or not is_table_file(source):
        raise ConfigError("data", f"{source} is not a table file, and the champion is a table model",
                          "data=<a .csv, .parquet, .json or .jsonl table of fresh rows with their outcomes>")
    frame = read_table(source)  # as predict reads it: CSV as text, column names stripped
    if target.name not in frame.columns:
        raise ConfigError("data", f"{source.name} has no column {target.name!r}, the outcome the champion predicts: "
                          "retraining learns from it and scores both models against it",
                          f"data=<a table of fresh rows with their outcomes in a {target.name!r} column>")
    values = frame[target.name].tolist()
    strata = None if target.is_regression else target.labels(values)
    held, kept, left_out = _parts(strata, len(frame), holdout_fraction, train_fraction, seed)
    if strata is not None:
        _check_every_class_held_out([strata[i] for i in held], target.classes, len(held), holdout_fraction)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_file, holdout_file = out_dir / TRAIN_FILE, out_dir / HOLDOUT_FILE
    frame.iloc[kept].to_csv(train_file, index=False)
    frame.iloc[held].to_csv(holdout_file, index=False)
    return HeldOut(TABLE, source, train_file, holdout_file, len(frame), len(kept), len(held), left_out,
                   holdout_fraction, train_fraction, seed, None if strata is None else target.name)


def split_images(source: Path, classes: Sequence[str], holdout_fraction: float, train_fraction: float, seed: int,
                 out_dir: Path) -> HeldOut:
    """An image folder (``<class>/*``, or ``train|val|test/<class>/*``) as two manifests in ``out_dir``."""
    if not source.is_dir():
        raise ConfigError("data", f"{source} is not a folder, and the champion is an image classifier",
                          "data=<a folder of class subfolders: <folder>/<class>/*.jpg>")
    files, _ = list_images(source)  # what is no image file is for neither part (training lists it as rejected)
    labelled, unlabelled = [], 0
    for path in files:
        parts = path.relative_to(source).parts
        if len(parts) >= 3 and parts[0] in SPLITS:  # an ImageFolder's split folders: the class is below
            labelled.append((path, parts[1]))
        elif len(parts) >= 2:
            labelled.append((path, parts[0]))
        else:
            unlabelled += 1
    found = sorted({label for _, label in labelled})
    if len(found) < 2:
        raise ConfigError("data", f"{source} holds {len(labelled)} images in {len(found)} class folder(s): a "
                          "challenger needs images of at least two classes, each in its own subfolder",
                          "data=<a folder of class subfolders: <folder>/<class>/*.jpg>")
    strata = [label for _, label in labelled]
    held, kept, left_out = _parts(strata, len(labelled), holdout_fraction, train_fraction, seed)
    _check_every_class_held_out([strata[i] for i in held], [c for c in classes if c in found], len(held),
                                holdout_fraction)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_file, holdout_file = out_dir / TRAIN_FILE, out_dir / HOLDOUT_FILE
    write_manifest(train_file, ((str(labelled[i][0]), labelled[i][1], "") for i in kept))
    write_manifest(holdout_file, ((str(labelled[i][0]), labelled[i][1], "") for i in held))
    return HeldOut(IMAGES, source, train_file, holdout_file, len(labelled), len(kept), len(held), left_out,
                   holdout_fraction, train_fraction, seed, "label", unlabelled)


def _check_every_class_held_out(held_labels: list[str | None], classes: Sequence[str], rows: int,
                                fraction: float) -> None:
    """Every class the models predict must be among the held-out rows, or their scores compare nothing."""
    present = set(held_labels)
    missing = [name for name in classes if name not in present]
    if missing:
        raise ConfigError("holdout_fraction", f"holds out {rows} rows ({fraction:g} of the fresh data) with no row "
                          f"of class {', '.join(map(repr, missing))}: the two models cannot be compared on it",
                          f"holdout_fraction={min(0.5, fraction * 2):g}, or fresh data with more rows of "
                          f"{missing[0]!r}")
