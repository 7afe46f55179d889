"""Images in, the model's input tensor out: decoded and transformed exactly as training evaluated them.

Training decodes with PIL (:mod:`visiontrain.data.image_io`: JPEG draft at the resize size, EXIF
orientation, palette / alpha / 16-bit / grayscale to RGB) and resizes with albumentations, which calls
``cv2.resize``. Making the same calls here, with the size arithmetic albumentations uses, gives the same
pixels (max abs difference 0.0 on hymenoptera) without albumentations or torch. PIL's own resize
antialiases: it would differ by up to 2.3 (in normalised units) on the same photos.
"""

from __future__ import annotations

import io
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from visiontrain.data.image_io import to_rgb

INTERPOLATIONS = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC,
                  "area": cv2.INTER_AREA}  # the names training records, as albumentations maps them
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_ROTATED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


class ImageRejected(ValueError):
    """An input that cannot be used as an image; the message is the reason shown to the user."""


def normalisation_constants(mean: Sequence[float], std: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``offset = 255 mean`` and ``scale = 1 / (255 std)``: ``(x - offset) * scale`` normalises uint8.

    Training (on its device, in torch) and deployment (here, in numpy) both take their constants from this
    one function, so their model inputs are identical to the bit.
    """
    offset = np.asarray(mean, dtype=np.float32) * np.float32(255.0)
    scale = np.float32(1.0) / (np.asarray(std, dtype=np.float32) * np.float32(255.0))
    return offset.astype(np.float32), scale.astype(np.float32)


@dataclass(frozen=True)
class ImageSpec:
    """The eval transform recorded in the ONNX metadata: resize shorter side, centre crop, normalise."""

    height: int
    width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_to: int
    interpolation: str = "bilinear"

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> ImageSpec:
        _, height, width = (int(v) for v in metadata["input_size"])
        interpolation = str(metadata.get("interpolation", "bilinear"))
        return cls(height=height, width=width, mean=tuple(float(v) for v in metadata["mean"]),
                   std=tuple(float(v) for v in metadata["std"]),
                   resize_to=int(metadata.get("resize_to", max(height, width))),
                   interpolation=interpolation if interpolation in INTERPOLATIONS else "bilinear")

    def lookup_table(self) -> np.ndarray:
        """uint8 value -> normalised float per channel, [3, 256] (albumentations' Normalize is a LUT too)."""
        values = np.arange(256, dtype=np.float32)[None, :]
        offset, scale = normalisation_constants(self.mean, self.std)
        return ((values - offset[:, None]) * scale[:, None]).astype(np.float32)


@dataclass(frozen=True)
class DecodedImage:
    """RGB pixels (possibly decoded at reduced JPEG scale) and the size of the original, oriented image."""

    image: Image.Image
    width: int
    height: int


class ImageTooLarge(ImageRejected):
    """More decoded pixels than a limit allows: found from the header, before anything is decoded."""

    @classmethod
    def over(cls, width: int, height: int, limit: int, option: str) -> ImageTooLarge:
        return cls(f"{width}x{height} decodes to {width * height:,} pixels, more than {option} ({limit:,})")


# PIL refuses to open larger files (DecompressionBombError), whatever limit is configured here
PIL_PIXEL_CAP: int | None = 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else None


def decoded_size(source: str | Path | bytes, reduce_to: int | None = None) -> tuple[int, int]:
    """The (width, height) :func:`decode` will decode to, read from the header alone.

    Cheap whatever the file claims: a 11000x11000 PNG of a few kB costs nothing here, and 363 MB in
    :func:`decode`. JPEGs count at their reduced DCT decoding size, which is what they really cost.
    """
    with _opened(source) as image:
        _draft(image, reduce_to)
        return image.size


def decode(source: str | Path | bytes, reduce_to: int | None = None) -> DecodedImage:
    """Decode a file path or uploaded bytes like training does; raise ImageRejected with the reason."""
    with _opened(source) as image:
        width, height = image.size
        if image.getexif().get(0x0112) in _ROTATED:
            width, height = height, width
        _draft(image, reduce_to)
        image.load()
        oriented = ImageOps.exif_transpose(image)
        rgb = to_rgb(oriented if oriented is not None else image)
    if rgb.width == 0 or rgb.height == 0:
        raise ImageRejected("image has zero width or height")
    return DecodedImage(rgb, width, height)


def _draft(image: Image.Image, reduce_to: int | None) -> None:
    if reduce_to and image.format == "JPEG":
        image.draft("RGB", (reduce_to, reduce_to))  # DCT scaling, as training's open_rgb does


@contextmanager
def _opened(source: str | Path | bytes) -> Iterator[Image.Image]:
    """``Image.open`` (lazy: the header only) with every decoding failure turned into ImageRejected."""
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageRejected("empty file (0 bytes)")
        stream: Any = io.BytesIO(source)
    else:
        path = Path(source)
        try:
            if path.stat().st_size == 0:
                raise ImageRejected("empty file (0 bytes)")
        except OSError as error:
            raise ImageRejected(f"unreadable: {error.strerror or error}") from None
        stream = path
    try:
        with Image.open(stream) as image:
            yield image
    except ImageRejected:
        raise
    except UnidentifiedImageError:
        raise ImageRejected("not an image (format not recognised)") from None
    except Image.DecompressionBombError as error:
        raise ImageTooLarge(f"image too large to decode safely: {error}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        message = str(error) or type(error).__name__
        kind = "truncated image" if "truncated" in message.lower() else "corrupt or unreadable image"
        raise ImageRejected(f"{kind}: {message}") from None


def preprocess(image: Image.Image, spec: ImageSpec, table: np.ndarray | None = None) -> np.ndarray:
    """RGB image -> [3, H, W] float32: shorter side to ``resize_to``, centre crop, (x / 255 - mean) / std."""
    pixels = np.asarray(image, dtype=np.uint8)
    height, width = pixels.shape[:2]
    scale = spec.resize_to / min(height, width)
    size = max(1, round(height * scale)), max(1, round(width * scale))  # albumentations' SmallestMaxSize
    if size != (height, width):
        pixels = cv2.resize(pixels, (size[1], size[0]), interpolation=INTERPOLATIONS[spec.interpolation])
    top, left = max(0, (size[0] - spec.height) // 2), max(0, (size[1] - spec.width) // 2)
    crop = pixels[top:top + spec.height, left:left + spec.width]
    if crop.shape[:2] != (spec.height, spec.width):  # resize_to < input size: never from training
        crop = cv2.resize(crop, (spec.width, spec.height), interpolation=INTERPOLATIONS[spec.interpolation])
    table = spec.lookup_table() if table is None else table
    return np.stack([table[channel][crop[..., channel]] for channel in range(3)])


def statistics(decoded: DecodedImage) -> dict[str, float]:
    """Size, brightness and mean colour (0-1), named as the drift reference names them.

    The size is the original's; the colours come from the pixels as decoded (a JPEG at reduced DCT scale
    when it is much larger than the model input), within ~0.01 of the full-size means on hymenoptera.
    """
    pixels = np.asarray(decoded.image, dtype=np.float32) / 255.0
    return {"width": float(decoded.width), "height": float(decoded.height),
            "brightness": float(pixels.mean()), "mean_r": float(pixels[..., 0].mean()),
            "mean_g": float(pixels[..., 1].mean()), "mean_b": float(pixels[..., 2].mean())}


def list_images(folder: Path, suffixes: Sequence[str] | None = None) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Every regular file under ``folder`` to try, and every other entry with the reason it is not tried.

    The same walk as training (:func:`visiontrain.data.file_walk.walk`): unreadable folders, FIFOs, broken or
    looping symlinks and hidden files are listed, never skipped in silence; non-images are rejected later, when
    decoding, with their own reason. ``suffixes``: only files with these extensions are tried (others listed).
    """
    from visiontrain.data.file_walk import walk

    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for entry in walk(folder):
        if entry.is_dir and entry.problem is None:
            continue
        hidden = any(part.startswith(".") for part in entry.path.relative_to(folder).parts)
        if entry.problem:
            skipped.append((entry.path, entry.problem))
        elif hidden:
            skipped.append((entry.path, "hidden file"))
        elif suffixes is not None and entry.path.suffix.lower() not in suffixes:
            skipped.append((entry.path, f"not an image suffix ({', '.join(sorted(suffixes))})"))
        else:
            files.append(entry.path)
    return sorted(files), sorted(skipped)
