"""One split for every side: visiontrain's own inventory, given to the peers as an ImageFolder of symlinks.

A class tree is split by visiontrain (``data.val_fraction``, ``seed``); the peers read ImageFolders. The split is
the project's own function (:func:`visiontrain.image.task.scan`, what ``visiontrain train`` calls) on the
config the visiontrain rows compose, and a visiontrain run's ``split.csv`` is checked against it afterwards.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from benchlib import compose_train


@dataclass(frozen=True)
class Split:
    """The images of each split and their class names, as visiontrain reads them."""

    classes: list[str]
    files: dict[str, list[tuple[str, str]]]  # split -> (absolute path, class name), in visiontrain's order

    def counts(self) -> dict[str, int]:
        return {split: len(rows) for split, rows in self.files.items()}


def overrides_for(root: Path, image_size: int, scratch: Path) -> list[str]:
    """The config visiontrain's rows split with: ``data=image_folder`` (the experiment changes no split key)."""
    return ["data=image_folder", f"data.root={root}", f"model.input.image_size={image_size}",
            "data.num_workers=0", f"paths.run_dir={scratch}"]


def visiontrain_split(root: Path, image_size: int, scratch: Path):
    """(Split, the composed config, the inventory): ``visiontrain train``'s own scan of ``root``."""
    from visiontrain.config.checks import check_train_config
    from visiontrain.image.task import scan

    cfg = compose_train(*overrides_for(root, image_size, scratch))
    settings = check_train_config(cfg)
    inventory = scan(settings.data, settings.seed)
    files = {split: [(str(Path(s.path).resolve()), inventory.classes[s.label]) for s in samples]
             for split, samples in inventory.splits.items()}
    return Split(list(inventory.classes), files), cfg, inventory


def image_folder(split: Split, target: Path) -> Path:
    """``target/<split>/<class>/<n>_<name>`` symlinks to the split's files (the index keeps names unique)."""
    for name, rows in split.files.items():
        for index, (path, label) in enumerate(rows):
            link = target / name / label / f"{index:05d}_{Path(path).name}"
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                os.symlink(path, link)
    return target


def same_as_run(split: Split, split_csv: Path) -> bool:
    """Did a visiontrain run (its ``split.csv``) use exactly these files, labels and splits?"""
    with split_csv.open() as handle:
        used = {(str((split_csv.parent / row["path"]).resolve()), row["label"], row["split"])
                for row in csv.DictReader(handle)}
    return used == {(path, label, name) for name, rows in split.files.items() for path, label in rows}
