"""Read an image file (or uploaded bytes) as 8-bit RGB, the one form the models see, or say why it cannot be.

Training (the inventory's file check and the dataset), ``visiontrain predict``, ``serve``, ``stream`` and
``drift`` all decode through :func:`decode`: the :class:`PixelLimit` checked from the header, JPEG draft at the
resize size, EXIF orientation, palette / alpha / 16-bit / float / grayscale to RGB. A file that passes the
training check is exactly a file that trains, and the deployed model sees the pixels training saw. Every failure
is an :class:`ImageRejected` whose message is the reason shown to the user (rejects.csv, a 4xx response, the
drift report).
"""

from __future__ import annotations

import io
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from visiontrain.core.files import describe, path_problem
from visiontrain.errors import ImageRejected, ImageTooLarge

# PIL refuses to open larger files (DecompressionBombError), whatever limit is configured elsewhere
PIL_PIXEL_CAP: int | None = 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else None
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000  # 150 MB as RGB: far above any photo a classifier needs, far below a bomb
TOO_LARGE = "image too large"  # the reason's category (the part before ':' in rejects.csv and summary.json)
_PIL_SIZE = re.compile(r"\((\d+) pixels\)")  # "Image size (N pixels) exceeds limit of ..."
# Pillow warns on opening anything over half its cap, before our limit is checked: the limit decides (and names
# its key), so the warning would only be noise on stderr for a file that is refused, or allowed on purpose
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
_ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")
_ROTATED = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"),
               (b"GIF89a", "GIF"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"BM", "BMP"))

Source = str | Path | bytes


@dataclass(frozen=True)
class PixelLimit:
    """The most pixels one image may decode to, and the config key that sets it (named in every refusal).

    One limit for every reader, so a decompression bomb (an 11000x11000 PNG of 143 KB decodes to 363 MB of RGB)
    costs a header read wherever it arrives: training's scan and dataset (``data.max_image_pixels``), predict,
    serve, stream and drift (``max_image_pixels``). JPEGs count at their reduced (draft) decoding size.
    """

    pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    key: str = "max_image_pixels"

    def check(self, decoded: tuple[int, int], original: tuple[int, int] | None = None) -> None:
        """Raise :class:`ImageTooLarge` when ``decoded`` (width, height) is over the limit."""
        width, height = decoded
        if width * height <= self.pixels:
            return
        size = f"{width}x{height}"
        if original is not None and tuple(original) != (width, height):
            size = f"{original[0]}x{original[1]} (decoded at {size})"
        raise ImageTooLarge(f"{TOO_LARGE}: {size} = {width * height:,} pixels, over {self.key}={self.pixels:,}")

    def refused_by_pillow(self, error: Exception) -> ImageTooLarge:
        """Pillow's own refusal (past :data:`PIL_PIXEL_CAP`, which no limit may exceed) in this limit's words."""
        found = _PIL_SIZE.search(str(error))
        pixels = f"{int(found.group(1)):,} pixels" if found else f"more than {PIL_PIXEL_CAP:,} pixels"
        return ImageTooLarge(f"{TOO_LARGE}: {pixels}, over {self.key}={self.pixels:,} (Pillow refuses more than "
                             f"{PIL_PIXEL_CAP:,}: a decompression bomb, or a scan too big to use)")


def pixel_limit_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a pixel limit (for the caller's ConfigError, which names the key), or None.

    Above :data:`PIL_PIXEL_CAP` would promise images Pillow refuses to open anyway.
    """
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole or value <= 0:
        return f"must be a whole number of pixels above 0, got {value!r}"
    if PIL_PIXEL_CAP and value > PIL_PIXEL_CAP:
        return f"is {int(value):,}, above the {PIL_PIXEL_CAP:,} pixels Pillow opens at all"
    return None


@dataclass(frozen=True)
class DecodedImage:
    """RGB pixels (possibly decoded at reduced JPEG scale) and the size of the original, oriented image."""

    image: Image.Image
    width: int
    height: int


def decode(source: Source, reduce_to: int | None = None, *, limit: PixelLimit) -> DecodedImage:
    """Decode a file path or uploaded bytes fully, apply the EXIF orientation and convert to RGB.

    ``reduce_to`` lets a JPEG decode at a reduced DCT scale (never below ``reduce_to`` on its shorter side) when
    the target size is much smaller than the file: far cheaper than decoding at full size and resizing after.
    ``limit`` is checked from the header first: a file over it costs a header read, not its pixels.
    Raises :class:`ImageRejected` with the reason when ``source`` is not a usable image.
    """
    with _opened(source, limit) as image:
        width, height = image.size
        _draft(image, reduce_to)
        limit.check(image.size, (width, height))
        if image.getexif().get(0x0112) in _ROTATED:  # after the check: a PNG's getexif() decodes every pixel
            width, height = height, width
        image.load()
        oriented = ImageOps.exif_transpose(image)
        rgb = to_rgb(oriented if oriented is not None else image)
    if rgb.width == 0 or rgb.height == 0:
        raise ImageRejected("image has zero width or height")
    return DecodedImage(rgb, width, height)


def decoded_size(source: Source, reduce_to: int | None = None, *, limit: PixelLimit) -> tuple[int, int]:
    """The (width, height) :func:`decode` will decode to, read from the header alone, checked against ``limit``.

    Cheap whatever the file claims: a 11000x11000 PNG of a few kB costs nothing here, and 363 MB in
    :func:`decode`. JPEGs count at their reduced DCT decoding size, which is what they really cost.
    """
    with _opened(source, limit) as image:
        original = image.size
        _draft(image, reduce_to)
        limit.check(image.size, original)
        return image.size


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
    if image.mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB") if image.mode != "RGB" else image


def _draft(image: Image.Image, reduce_to: int | None) -> None:
    if reduce_to and image.format == "JPEG":
        image.draft("RGB", (reduce_to, reduce_to))  # DCT scaling: 1/2, 1/4, 1/8 while both sides stay above


@contextmanager
def _opened(source: Source, limit: PixelLimit) -> Iterator[Image.Image]:
    """``Image.open`` (lazy: the header only) with every failure, in the ``with`` body too, an ImageRejected.

    A path that is not a regular file (a FIFO would block the open, a device never ends) is refused unopened.
    """
    if isinstance(source, (bytes, bytearray)):
        stream: Any = io.BytesIO(source)
        size = len(source)
    else:
        stream = Path(source)
        problem = path_problem(stream)
        if problem is not None:
            raise ImageRejected(problem)
        try:
            size = stream.stat().st_size
        except OSError as error:
            raise ImageRejected(f"unreadable: {describe(error)}") from None
    if size == 0:
        raise ImageRejected("empty file (0 bytes)")
    try:
        with Image.open(stream) as image:
            yield image
    except ImageRejected:
        raise
    except UnidentifiedImageError:
        claimed = _claimed_format(source)
        if claimed:  # e.g. a PNG whose header checksum is wrong: say it is damaged, not that it is no image
            raise ImageRejected(f"corrupt or unreadable image: starts like a {claimed} file but cannot be "
                                "decoded") from None
        raise ImageRejected("not an image (format not recognised)") from None
    except Image.DecompressionBombError as error:
        raise limit.refused_by_pillow(error) from None
    except PermissionError as error:
        raise ImageRejected(f"unreadable: {describe(error)}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        message = str(error) or type(error).__name__
        kind = "truncated image" if "truncated" in message.lower() else "corrupt or unreadable image"
        raise ImageRejected(f"{kind}: {message}") from None


def _claimed_format(source: Source) -> str | None:
    """The image format a file's first bytes announce (its magic number), whatever Pillow made of it."""
    if isinstance(source, (bytes, bytearray)):
        head = bytes(source[:12])
    else:
        try:
            with open(source, "rb") as handle:
                head = handle.read(12)
        except OSError:
            return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((name for signature, name in _SIGNATURES if head.startswith(signature)), None)
