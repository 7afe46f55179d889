"""Read any image file as 8-bit RGB, the one form the models see.

Both the file checker and the training dataset go through :func:`open_rgb`, so a file that passes the
check is exactly a file that trains.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from visiontrain.data.file_walk import describe, path_problem

_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"),
               (b"GIF89a", "GIF"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"BM", "BMP"))


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert palette, grayscale, alpha, 16-bit and float images to 8-bit RGB.

    Transparent pixels are composited onto white (what a viewer shows), not onto black garbage.
    """
    if image.mode in _SIXTEEN_BIT_MODES:
        pixels = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(pixels / 257.0, 0, 255).round().astype(np.uint8), mode="L")
    elif image.mode == "F":
        pixels = np.asarray(image, dtype=np.float64)
        scale = 255.0 if pixels.max(initial=0.0) <= 1.0 else 1.0
        image = Image.fromarray(np.clip(pixels * scale, 0, 255).round().astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA") if "transparency" in image.info else image.convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB") if image.mode != "RGB" else image


def open_rgb(path: str | os.PathLike, reduce_to: int | None = None) -> Image.Image:
    """Decode ``path`` fully, apply its EXIF orientation and return RGB.

    ``reduce_to`` lets JPEG decode at a reduced scale (DCT scaling) when the target size is much smaller
    than the file, which is far cheaper than decoding at full size and resizing afterwards.
    """
    with Image.open(path) as image:
        if reduce_to and image.format == "JPEG":
            image.draft("RGB", (reduce_to, reduce_to))
        image.load()
        oriented = ImageOps.exif_transpose(image)
        return to_rgb(oriented if oriented is not None else image)


def read_rgb_array(path: str | os.PathLike, reduce_to: int | None = None) -> np.ndarray:
    """``open_rgb`` as an HxWx3 uint8 array, the input albumentations expects."""
    return np.asarray(open_rgb(path, reduce_to))


def why_unusable(path: Path) -> str | None:
    """Return the reason ``path`` cannot be trained on, or None when it decodes to a usable image.

    Anything but a regular file (a FIFO would block the open, a device never ends) is refused before opening.
    """
    problem = path_problem(path)
    if problem is not None:
        return problem
    try:
        size = path.stat().st_size
    except OSError as error:
        return f"unreadable: {describe(error)}"
    if size == 0:
        return "empty file (0 bytes)"
    try:
        image = open_rgb(path)
    except UnidentifiedImageError:
        claimed = _claimed_format(path)
        if claimed:  # e.g. a PNG whose header checksum is wrong: say it is damaged, not that it is no image
            return f"corrupt or unreadable image: starts like a {claimed} file but cannot be decoded"
        return "not an image (format not recognised)"
    except Image.DecompressionBombError:
        return (f"image too large to decode safely: more than {2 * Image.MAX_IMAGE_PIXELS} pixels "
                "(a decompression bomb, or a scan too big to train on)")
    except PermissionError as error:
        return f"unreadable: {describe(error)}"
    except (OSError, SyntaxError, ValueError) as error:
        message = str(error) or type(error).__name__
        if "truncated" in message.lower():
            return f"truncated image: {message}"
        return f"corrupt or unreadable image: {message}"
    width, height = image.size
    if width == 0 or height == 0:
        return "image has zero width or height"
    return None


def _claimed_format(path: Path) -> str | None:
    """The image format a file's first bytes announce (its magic number), whatever Pillow made of it."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((name for signature, name in _SIGNATURES if head.startswith(signature)), None)
