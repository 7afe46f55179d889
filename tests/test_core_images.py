"""The torch-free image core: one decoder, one eval geometry, one resize formula, one lister, for both sides.

Training and deploy now call the same functions, so these tests pin the functions themselves to what they
replaced: albumentations' SmallestMaxSize + CenterCrop, timm's eval resize, and training's reject reasons.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import albumentations as A
import numpy as np
import pytest
from PIL import Image

from visiontrain.core.files import IMAGE_SUFFIXES, list_images
from visiontrain.core.image_decode import PixelLimit, decode
from visiontrain.core.image_preprocess import INTERPOLATIONS, resize_and_crop, resize_to_for
from visiontrain.core.image_statistics import image_statistics
from visiontrain.errors import ImageRejected
from visiontrain.image.image_io import read_rgb_array, why_unusable
from visiontrain.image.transforms import build_eval_transform, resolve_input_spec


def _photo(path: Path, size: tuple[int, int], **save) -> Path:
    """A real, smooth picture (a Mandelbrot set) of ``size``, saved in the format ``path`` names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.effect_mandelbrot(size, (-2.2, -1.4, 0.8, 1.4), 40).convert("RGB")
    noise = np.random.default_rng(zlib.crc32(path.name.encode())).integers(0, 40, (size[1], size[0], 3))
    Image.fromarray(np.clip(np.asarray(picture) + noise, 0, 255).astype(np.uint8)).save(path, **save)
    return path


@pytest.mark.parametrize("interpolation", sorted(INTERPOLATIONS))
@pytest.mark.parametrize("size,crop_pct", [(32, 0.875), (48, 0.95), (64, 1.0)])
def test_the_eval_geometry_is_albumentations_smallest_max_size_and_centre_crop_to_the_pixel(
        size, crop_pct, interpolation, tmp_path):
    resize_to = resize_to_for(size, crop_pct)
    reference = A.Compose([A.SmallestMaxSize(max_size=resize_to, interpolation=INTERPOLATIONS[interpolation]),
                           A.CenterCrop(height=size, width=size)])
    for shape in ((97, 131), (131, 97), (size, size), (40, 300), (resize_to, resize_to + 1)):
        pixels = read_rgb_array(_photo(tmp_path / f"{shape[0]}x{shape[1]}.jpg", (shape[1], shape[0])))
        ours = resize_and_crop(pixels, resize_to, size, size, interpolation)
        assert ours.dtype == np.uint8 and ours.shape == (size, size, 3)
        assert np.array_equal(ours, reference(image=pixels)["image"]), shape


def test_training_s_eval_transform_is_the_core_geometry(tmp_path):
    spec = resolve_input_spec("resnet18", image_size=40)
    pixels = read_rgb_array(_photo(tmp_path / "wide.png", (90, 55)))
    tensor = build_eval_transform(spec)(image=pixels)["image"]
    expected = resize_and_crop(pixels, spec.resize_to, 40, 40, spec.interpolation)
    assert np.array_equal(tensor.permute(1, 2, 0).numpy(), expected)


@pytest.mark.parametrize("size,crop_pct", [(224, 0.95), (224, 0.875), (224, 0.9), (240, 0.882), (32, 0.875),
                                           (260, 0.89), (384, 1.0)])
def test_the_resize_size_floors_like_timm_s_eval_transform(size, crop_pct):
    from timm.data import create_transform

    timm_resize = create_transform(size, is_training=False, crop_pct=crop_pct).transforms[0]
    assert resize_to_for(size, crop_pct) == timm_resize.size


def test_the_input_spec_is_timm_s_data_config_of_the_backbone():
    import timm
    from timm.data import resolve_data_config

    spec = resolve_input_spec("resnet18")
    config = resolve_data_config(pretrained_cfg=timm.get_pretrained_cfg("resnet18").to_dict())
    assert (spec.image_size, spec.mean, spec.std, spec.crop_pct, spec.interpolation) == \
        (config["input_size"][-1], config["mean"], config["std"], config["crop_pct"], config["interpolation"])
    assert spec.resize_to == 235  # floor(224 / 0.95); rounding gave 236
    assert resolve_input_spec("no_such_backbone").interpolation == "bilinear"  # timm knows nothing of it


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _bad_files(folder: Path) -> dict[str, bytes]:
    good = _photo(folder / "good.png", (32, 24)).read_bytes()
    crc = bytearray(good)
    crc[29] ^= 0xFF  # the IHDR chunk's CRC
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)  # 100000 x 100000 RGB in 60 bytes
    bomb = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 16)) + \
        _png_chunk(b"IEND", b"")
    return {"empty.jpg": b"", "notes.jpg": b"shopping list\n", "crc.png": bytes(crc), "half.png": good[:200],
            "bomb.png": bomb, "cut.jpg": _photo(folder / "cut.jpg", (64, 64)).read_bytes()[:300]}


def test_uploaded_bytes_and_files_on_disk_are_rejected_with_training_s_reasons(tmp_path):
    reasons = {}
    limit = PixelLimit(50_000_000, "data.max_image_pixels")  # training's default, as why_unusable uses it
    for name, data in _bad_files(tmp_path / "made").items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageRejected) as from_bytes:
            decode(data, limit=limit)
        with pytest.raises(ImageRejected) as from_path:
            decode(tmp_path / name, reduce_to=32, limit=limit)
        assert str(from_bytes.value) == str(from_path.value) == why_unusable(tmp_path / name), name
        reasons[name] = str(from_bytes.value)
    assert reasons["empty.jpg"] == "empty file (0 bytes)"
    assert reasons["notes.jpg"] == "not an image (format not recognised)"
    assert reasons["crc.png"] == "corrupt or unreadable image: starts like a PNG file but cannot be decoded"
    assert reasons["bomb.png"] == ("image too large: 10,000,000,000 pixels, over data.max_image_pixels=50,000,000 "
                                   f"(Pillow refuses more than {2 * Image.MAX_IMAGE_PIXELS:,}: a decompression bomb, "
                                   "or a scan too big to use)")
    assert reasons["cut.jpg"].startswith("truncated image: ")


def test_a_fifo_given_as_an_image_is_refused_without_opening_it(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe.jpg")  # opening it would block for ever
    with pytest.raises(ImageRejected, match="^not a regular file: fifo$"):
        decode(tmp_path / "pipe.jpg", limit=PixelLimit())


def test_a_reduced_jpeg_keeps_the_original_size_in_its_statistics(tmp_path):
    path = _photo(tmp_path / "large.jpg", (800, 600), quality=90)
    full, reduced = decode(path, limit=PixelLimit()), decode(path, reduce_to=150, limit=PixelLimit())
    assert full.image.size == (800, 600) and reduced.image.size == (200, 150)  # DCT scaling by 1/4
    full_stats, reduced_stats = image_statistics(full), image_statistics(reduced)
    assert (reduced_stats["width"], reduced_stats["height"]) == (full_stats["width"], full_stats["height"]) == \
        (800.0, 600.0)
    assert reduced_stats["brightness"] == pytest.approx(full_stats["brightness"], abs=0.01)
    pixels = np.asarray(full.image, dtype=np.float64) / 255
    assert full_stats["brightness"] == pytest.approx(pixels.mean()) and \
        full_stats["mean_g"] == pytest.approx(pixels[..., 1].mean())


def test_the_lister_tries_images_and_says_why_it_skips_everything_else(tmp_path):
    _photo(tmp_path / "a/one.jpg", (8, 8))
    _photo(tmp_path / "a/two.PNG", (8, 8))
    _photo(tmp_path / "a/.hidden.png", (8, 8))
    (tmp_path / "a/readme.txt").write_text("not an image\n")
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")

    files, skipped = list_images(tmp_path, IMAGE_SUFFIXES)

    assert files == [tmp_path / "a/one.jpg", tmp_path / "a/two.PNG"]
    assert dict(skipped) == {
        tmp_path / "a/.hidden.png": "hidden file",
        tmp_path / "a/readme.txt": f"not an image suffix ({', '.join(sorted(IMAGE_SUFFIXES))})",
        tmp_path / "gone.jpg": f"broken symlink: its target {tmp_path / 'deleted.jpg'} does not exist"}
    assert list_images(tmp_path)[0] == [tmp_path / "a/one.jpg", tmp_path / "a/readme.txt", tmp_path / "a/two.PNG"]

