"""Training's reads of image files, all through :func:`visiontrain.core.image_decode.decode`.

The file checker (:func:`why_unusable`) and the dataset (:func:`read_rgb_array`) decode the same way (the same
pixel limit, the same JPEG draft size), and the same way as the deploy side, so a file that passes the check is
exactly a file that trains and serves.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from visiontrain.core.image_decode import DEFAULT_MAX_IMAGE_PIXELS, DecodedImage, PixelLimit, decode
from visiontrain.errors import DataError, ImageRejected

TRAINING_LIMIT = PixelLimit(DEFAULT_MAX_IMAGE_PIXELS, "data.max_image_pixels")  # conf/data/*.yaml's default


def read_rgb_array(path: str | os.PathLike, reduce_to: int | None = None, limit: PixelLimit = TRAINING_LIMIT
                   ) -> np.ndarray:
    """A file the scan accepted, as the HxWx3 uint8 array albumentations expects (see :func:`decode_scanned`)."""
    return np.asarray(decode_scanned(path, reduce_to, limit).image)


def why_unusable(path: Path, reduce_to: int | None = None, limit: PixelLimit = TRAINING_LIMIT) -> str | None:
    """The reason ``path`` cannot be trained on (as rejects.csv says it), or None when it decodes.

    Decoded as the dataset will decode it (``reduce_to``: the model's resize size, for JPEG draft); an image
    over ``limit`` is refused from its header, never decoded.
    """
    try:
        decode(path, reduce_to, limit=limit)
    except ImageRejected as error:
        return str(error)
    return None


def decode_scanned(path: str | os.PathLike, reduce_to: int | None, limit: PixelLimit) -> DecodedImage:
    """A file the scan accepted, decoded again (by the dataset, the reference statistics) with the scan's limit.

    It decoded at the start of the run; if it no longer does (replaced by a decompression bomb, truncated,
    deleted), the run stops with a DataError naming it rather than a traceback from deep in a loader.
    """
    try:
        return decode(Path(path), reduce_to, limit=limit)
    except ImageRejected as error:
        raise DataError(f"{path} changed after the scan at the start of the run and can no longer be used "
                        f"({error}): restore it, or remove it and start the run again") from None
