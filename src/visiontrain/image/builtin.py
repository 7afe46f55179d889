"""Built-in datasets that ship with a dependency, materialised once as a real ImageFolder on disk.

The default job trains on scikit-learn's bundled handwritten digits (1,797 8x8 scans, 10 classes). They are
written as PNG files so that the default run exercises exactly the path a user's own folder takes.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from visiontrain.config.choices import BUILTIN_DATASETS
from visiontrain.errors import DataError


def materialise_builtin(name: str, root: str | os.PathLike, val_fraction: float = 0.2, seed: int = 0) -> Path:
    """Write the built-in dataset ``name`` to ``root`` (train/ and val/ class folders) unless already there."""
    if name != "digits":
        raise ValueError(f"unknown built-in dataset {name!r}; available: {', '.join(BUILTIN_DATASETS)}")
    root = Path(root).expanduser()
    if is_materialised(root):
        return root
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DataError(
            f"{root} already exists and is not the built-in {name!r} dataset; it is left untouched. To train on "
            f"that folder use data=image_folder data.root={root}; for the built-in data choose another data.root.")
    from sklearn.datasets import load_digits  # imported lazily: only the built-in data needs it

    digits = load_digits()
    images = np.clip(digits.images * (255.0 / 16.0), 0, 255).round().astype(np.uint8)
    rng = np.random.default_rng(seed)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=root.name + ".", dir=root.parent))
    for label in np.unique(digits.target):
        indices = np.flatnonzero(digits.target == label)
        rng.shuffle(indices)
        n_val = round(len(indices) * val_fraction)
        for position, index in enumerate(indices):
            split = "val" if position < n_val else "train"
            folder = staging / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[index], mode="L").save(folder / f"digit_{index:04d}.png")
    if root.exists():
        root.rmdir()  # empty (checked above): nothing of the user's is removed
    staging.rename(root)  # atomic on one filesystem: a half-written dataset is never used
    _marker(root).write_text(f"{len(digits.target)} images\n")
    return root


def _marker(root: Path) -> Path:
    return root.with_name(root.name + ".complete")


def is_materialised(root: Path) -> bool:
    """True when ``root`` holds a complete built-in dataset written by :func:`materialise_builtin`."""
    return _marker(root).exists() and root.is_dir()
