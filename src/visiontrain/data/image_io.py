"""Training's reads of image files, all through :func:`visiontrain.core.image_decode.decode`.

The file checker (:func:`why_unusable`) and the dataset (:func:`read_rgb_array`) decode the same way, and the
same way as the deploy side, so a file that passes the check is exactly a file that trains and serves.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from visiontrain.core.image_decode import ImageRejected, decode


def open_rgb(path: str | os.PathLike, reduce_to: int | None = None) -> Image.Image:
    """``path`` decoded to RGB, EXIF orientation applied; a JPEG at reduced DCT scale when ``reduce_to``."""
    return decode(Path(path), reduce_to).image


def read_rgb_array(path: str | os.PathLike, reduce_to: int | None = None) -> np.ndarray:
    """``open_rgb`` as an HxWx3 uint8 array, the input albumentations expects."""
    return np.asarray(open_rgb(path, reduce_to))


def why_unusable(path: Path) -> str | None:
    """The reason ``path`` cannot be trained on (as rejects.csv says it), or None when it decodes."""
    try:
        decode(path)
    except ImageRejected as error:
        return str(error)
    return None
