"""The catalogue of what real image folders hold, one test per case.

Each case writes a real file (or folder, link, FIFO, manifest row) beside a small, clean ImageFolder and
checks the exact outcome: used, rejected with its reason, or warned about by name. In every case each path
is counted once: files in = used + rejected, and the paths used and rejected are exactly the paths on disk.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import os
import shutil
import socket
import stat
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from PIL import Image

from conftest import compose_train, run_cli, tiny_overrides
from visiontrain.commands.validation import validate_train_config
from visiontrain.core.image_decode import PixelLimit
from visiontrain.errors import ConfigError, DataError
from visiontrain.image.duplicates import DuplicatePolicy
from visiontrain.image.image_io import read_rgb_array
from visiontrain.image.inventory import build_inventory


def _modes_are_enforced() -> bool:
    """False for root (or a process with CAP_DAC_OVERRIDE): it reads a chmod 000 file anyway."""
    if os.geteuid() != 0:
        return True
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        probe = Path(folder) / "probe"
        probe.write_text("x")
        probe.chmod(0o000)
        try:
            probe.read_text()
        except PermissionError:
            return True
        return False


needs_permissions = pytest.mark.skipif(not _modes_are_enforced(),
                                       reason="running as root, which reads every file whatever its mode")
OUTSIDE = "outside the manifest folder (set data.allow_outside_root=true to allow)"
NOT_AN_IMAGE = "not an image (format not recognised)"
IN_CLOSED_FOLDER = "unreadable: permission denied (a folder on its path cannot be entered)"
SPLIT_FILES = {"train": 3, "val": 2}  # per class: a clean ImageFolder of 10 distinct photos


def photo(path: Path, size: tuple[int, int] = (12, 10), mode: str = "RGB", seed: int | None = None,
          **save: Any) -> Path:
    """A small image of noise: distinct for every path (the seed comes from it) unless ``seed`` is given."""
    rng = np.random.default_rng(zlib.crc32(str(path).encode()) if seed is None else seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path, **save)
    return path


def clean_imagefolder(root: Path) -> Path:
    for split, count in SPLIT_FILES.items():
        for class_name in ("ants", "bees"):
            for index in range(count):
                photo(root / split / class_name / f"{index}.png")
    return root


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@dataclass
class Expected:
    """What one case must produce. Paths are relative to the data folder (or the manifest's folder)."""

    rejected: dict[str, str] = field(default_factory=dict)  # path -> the exact reason
    used: tuple[str, ...] = ()  # paths the case added that must be used
    removed: tuple[str, ...] = ()  # paths of the clean folder the case took away
    warnings: tuple[str, ...] = ()  # exact, in order
    options: dict[str, Any] = field(default_factory=dict)  # build_inventory keyword arguments


def assert_every_path_accounted_for(inventory, base: Path, before: set[str], expected: Expected) -> None:
    rejected = {os.path.relpath(r.path, base): r.reason for r in inventory.rejected}
    used = {os.path.relpath(s.path, base) for samples in inventory.splits.values() for s in samples}
    assert rejected == expected.rejected
    assert used == (before | set(expected.used)) - set(expected.rejected) - set(expected.removed)
    assert inventory.warnings == list(expected.warnings)
    counts = inventory.counts()
    assert counts["files_in"] == counts["files_used"] + counts["files_rejected"] == len(used | set(rejected))
    assert counts["warnings"] == list(expected.warnings)


@contextlib.contextmanager
def restored_permissions(top: Path):
    """Give back rights a case took away (chmod 000), so that pytest can delete its tmp folder."""
    try:
        yield
    finally:
        for folder, folders, files in os.walk(top):  # top down: each folder is opened before it is entered
            for name in folders + files:
                path = os.path.join(folder, name)
                if not os.path.islink(path):
                    os.chmod(path, 0o755 if name in folders else 0o644)


def catalogue(cases: list) -> Callable:
    """``@case(*marks)``: registers the function below in ``cases``, as a test of its own named after it."""
    def case(*marks: Any) -> Callable:
        def register(build: Callable[..., Expected]) -> Callable[..., Expected]:
            cases.append(pytest.param(build, id=build.__name__, marks=marks))
            return build
        return register
    return case


FOLDER_CASES: list = []  # each changes a clean ImageFolder: root/train|val/ants|bees/*.png
MANIFEST_CASES: list = []  # each adds rows (and files) to a clean manifest: folder/labels.csv naming images/*
folder_case, manifest_case = catalogue(FOLDER_CASES), catalogue(MANIFEST_CASES)


# --- files that are not (usable) images --------------------------------------------------------------------

@folder_case()
def zero_byte_file(root):
    (root / "train/ants/empty.jpg").write_bytes(b"")
    return Expected({"train/ants/empty.jpg": "empty file (0 bytes)"})


@folder_case()
def truncated_jpeg(root):
    data = photo(root / "train/ants/cut.jpg", size=(32, 32), seed=0).read_bytes()
    (root / "train/ants/cut.jpg").write_bytes(data[: len(data) // 2])
    return Expected({"train/ants/cut.jpg": "truncated image: Truncated File Read"})


@folder_case()
def text_file_named_jpg(root):
    (root / "train/ants/notes.jpg").write_text("shopping list, not a photo\n")
    return Expected({"train/ants/notes.jpg": NOT_AN_IMAGE})


@folder_case()
def html_error_page_saved_as_png(root):
    (root / "train/ants/download.png").write_text("<!DOCTYPE html><html><body>403 Forbidden</body></html>\n")
    return Expected({"train/ants/download.png": NOT_AN_IMAGE})


@folder_case()
def png_with_a_bad_header_checksum(root):
    data = bytearray(photo(root / "train/ants/crc.png").read_bytes())
    data[29] ^= 0xFF  # the IHDR chunk's CRC
    (root / "train/ants/crc.png").write_bytes(bytes(data))
    return Expected({"train/ants/crc.png":
                     "corrupt or unreadable image: starts like a PNG file but cannot be decoded"})


@folder_case()
def png_with_garbled_pixel_data(root):
    data = bytearray(photo(root / "train/ants/garbled.png", size=(32, 32), seed=0).read_bytes())
    start = data.index(b"IDAT") + 4
    data[start + 20:start + 40] = bytes(b ^ 0x55 for b in data[start + 20:start + 40])
    (root / "train/ants/garbled.png").write_bytes(bytes(data))
    return Expected({"train/ants/garbled.png":
                     "corrupt or unreadable image: broken data stream when reading image file"})


@folder_case()
def png_declaring_ten_billion_pixels(root):
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)  # 100000 x 100000 RGB in a 60-byte file
    pixels = png_chunk(b"IDAT", zlib.compress(b"\0" * 16))
    (root / "train/ants/bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + pixels
                                               + png_chunk(b"IEND", b""))
    cap = 2 * Image.MAX_IMAGE_PIXELS  # Pillow refuses above twice its warning size
    return Expected({"train/ants/bomb.png": "image too large: 10,000,000,000 pixels, over data.max_image_pixels="
                     f"50,000,000 (Pillow refuses more than {cap:,}: a decompression bomb, or a scan too big to use)"})


# --- pixel bombs: refused from the header (data.max_image_pixels), never decoded --------------------------

@functools.lru_cache(maxsize=None)
def png_bomb_bytes(width: int, height: int) -> bytes:
    """A real, valid, all-black grayscale PNG: 11000x11000 is a 118 KB file that decodes to 121 M pixels (363 MB
    as RGB). Written row by row through zlib, so making it costs no more memory than the file."""
    packer = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then the pixels
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", pixels)
            + png_chunk(b"IEND", b""))


@functools.lru_cache(maxsize=None)
def jpeg_bomb_bytes(width: int, height: int) -> bytes:
    """A real grayscale JPEG: 11000x11000 is 1.4 MB, 121 M pixels at full size, 1375x1375 at 1/8 DCT scale."""
    buffer = io.BytesIO()
    Image.new("L", (width, height), 128).save(buffer, "JPEG", quality=50)
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


DEFAULT_LIMIT = "data.max_image_pixels=50,000,000"
BOMB_REASON = f"image too large: 11000x11000 = 121,000,000 pixels, over {DEFAULT_LIMIT}"


@folder_case()
def png_bomb_of_11000_by_11000_pixels(root):
    write(root / "train/ants/bomb.png", png_bomb_bytes(11000, 11000))
    return Expected({"train/ants/bomb.png": BOMB_REASON})


@folder_case()
def png_bomb_whose_pixel_data_is_garbage(root):
    """Refused as too large, not as corrupt: the header is all that was read."""
    data = bytearray(png_bomb_bytes(11000, 11000))
    start = data.index(b"IDAT") + 4
    data[start:start + 64] = bytes(range(64))
    write(root / "train/ants/bomb.png", bytes(data))
    return Expected({"train/ants/bomb.png": BOMB_REASON})


@folder_case()
def png_just_over_the_limit(root):
    write(root / "val/bees/scan.png", png_bomb_bytes(7100, 7100))
    return Expected({"val/bees/scan.png": f"image too large: 7100x7100 = 50,410,000 pixels, over {DEFAULT_LIMIT}"})


@folder_case()
def png_bomb_under_a_lowered_limit_names_the_limit(root):
    write(root / "train/ants/wide.png", png_bomb_bytes(2000, 600))
    return Expected({"train/ants/wide.png": "image too large: 2000x600 = 1,200,000 pixels, over "
                     "data.max_image_pixels=1,000,000"},
                    options={"pixel_limit": PixelLimit(1_000_000, "data.max_image_pixels")})


@folder_case()
def jpeg_of_11000_by_11000_pixels_is_decoded_at_an_eighth(root):
    """121 M pixels at full size, 1.9 M at the draft size training decodes it at (shorter side >= 36 px)."""
    write(root / "train/bees/panorama.jpg", jpeg_bomb_bytes(11000, 11000))
    return Expected(used=("train/bees/panorama.jpg",), options={"reduce_to": 36})


@folder_case()
def jpeg_bomb_over_a_lowered_limit_at_its_draft_size(root):
    write(root / "train/bees/panorama.jpg", jpeg_bomb_bytes(11000, 11000))
    return Expected({"train/bees/panorama.jpg": "image too large: 11000x11000 (decoded at 1375x1375) = 1,890,625 "
                     "pixels, over data.max_image_pixels=1,000,000"},
                    options={"reduce_to": 36, "pixel_limit": PixelLimit(1_000_000, "data.max_image_pixels")})


@folder_case()
def windows_thumbs_db(root):
    (root / "train/ants/Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504))  # OLE
    return Expected({"train/ants/Thumbs.db": NOT_AN_IMAGE})


# --- hidden files ------------------------------------------------------------------------------------------

@folder_case()
def macos_ds_store(root):
    (root / "train/ants/.DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(32))
    return Expected({"train/ants/.DS_Store": "hidden file"})


@folder_case()
def hidden_image(root):
    photo(root / "train/ants/._0.png")  # what macOS leaves on a USB stick, even when it decodes
    return Expected({"train/ants/._0.png": "hidden file"})


@folder_case()
def image_in_a_hidden_folder(root):
    photo(root / "train/ants/.ipynb_checkpoints/0-checkpoint.png")
    return Expected({"train/ants/.ipynb_checkpoints/0-checkpoint.png": "hidden file"})


# --- permissions -------------------------------------------------------------------------------------------

@folder_case(needs_permissions)
def unreadable_file(root):
    os.chmod(photo(root / "train/ants/locked.png"), 0o000)
    return Expected({"train/ants/locked.png": "unreadable: permission denied"})


@folder_case(needs_permissions)
def unreadable_folder(root):
    photo(root / "train/ants/batch2/0.png")
    os.chmod(root / "train/ants/batch2", 0o000)
    return Expected({"train/ants/batch2": "unreadable folder: permission denied"})


@folder_case(needs_permissions)
def folder_listable_but_not_enterable(root):
    photo(root / "train/ants/batch3/0.png")
    photo(root / "train/ants/batch3/1.png")
    os.chmod(root / "train/ants/batch3", 0o444)  # names can be read; the files behind them cannot
    return Expected({"train/ants/batch3/0.png": IN_CLOSED_FOLDER,
                     "train/ants/batch3/1.png": IN_CLOSED_FOLDER})


@folder_case(needs_permissions)
def unreadable_class_folder(root):
    photo(root / "train/wasps/0.png")
    os.chmod(root / "train/wasps", 0o000)
    return Expected({"train/wasps": "unreadable folder: permission denied"},
                    warnings=("class 'wasps' dropped: no usable training images (see rejects.csv)",))


# --- links and special files -------------------------------------------------------------------------------

@folder_case()
def symlink_to_itself(root):
    os.symlink("me.png", root / "train/ants/me.png")
    return Expected({"train/ants/me.png": "symlink loop: the link never reaches a file"})


@folder_case()
def two_symlinks_pointing_at_each_other(root):
    os.symlink("b.png", root / "train/ants/a.png")
    os.symlink("a.png", root / "train/ants/b.png")
    loop = "symlink loop: the link never reaches a file"
    return Expected({"train/ants/a.png": loop, "train/ants/b.png": loop})


@folder_case()
def dangling_symlink(root):
    target = root.parent / "deleted.png"
    os.symlink(target, root / "train/ants/gone.png")
    return Expected({"train/ants/gone.png": f"broken symlink: its target {target} does not exist"})


@folder_case()
def symlink_to_a_folder_that_contains_it(root):
    os.symlink("..", root / "train/ants/up")  # -> train/: walking it would never end
    return Expected({"train/ants/up": "symlink loop: points to a folder that contains it"})


@folder_case(pytest.mark.timeout(30))
def fifo(root):
    os.mkfifo(root / "train/ants/pipe.png")  # opening it would block the scan for ever
    return Expected({"train/ants/pipe.png": "not a regular file: fifo"})


@folder_case(pytest.mark.timeout(30))
def symlink_to_a_fifo(root):
    os.mkfifo(root.parent / "pipe")
    os.symlink(root.parent / "pipe", root / "train/ants/pipe.png")
    return Expected({"train/ants/pipe.png": "not a regular file: fifo"})


@folder_case()
def unix_socket(root):
    with contextlib.chdir(root / "train/ants"):  # a socket path must be short: bind it by its relative name
        server = socket.socket(socket.AF_UNIX)
        server.bind("agent.sock")
    server.close()
    return Expected({"train/ants/agent.sock": "not a regular file: socket"})


@folder_case()
def character_device(root):
    try:
        os.mknod(root / "train/ants/null.png", 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # like /dev/null
    except PermissionError:
        pytest.skip("creating a device file needs CAP_MKNOD")
    return Expected({"train/ants/null.png": "not a regular file: character device"})


@folder_case(pytest.mark.timeout(30))
def fifo_at_the_top_of_the_data_folder(root):
    os.mkfifo(root / "incoming")
    return Expected({"incoming": "not a regular file: fifo"})


# --- quirks that are usable images -------------------------------------------------------------------------

@folder_case()
def cmyk_jpeg(root):
    photo(root / "train/ants/print.jpg", mode="CMYK")
    assert read_rgb_array(root / "train/ants/print.jpg").shape == (10, 12, 3)
    return Expected(used=("train/ants/print.jpg",))


@folder_case()
def sixteen_bit_grayscale_png(root):
    pixels = np.arange(120, dtype=np.uint16).reshape(10, 12) * 500
    Image.fromarray(pixels).save(root / "train/ants/scan16.png")
    corner = read_rgb_array(root / "train/ants/scan16.png")[-1, -1, 0]
    assert corner == round(119 * 500 / 257)  # scaled to 8 bits, not clipped
    return Expected(used=("train/ants/scan16.png",))


@folder_case()
def palette_png_with_transparency(root):
    image = Image.new("P", (12, 10), 0)
    image.putpalette([200, 10, 10] + [0, 0, 0] * 255)
    image.putpixel((0, 0), 1)
    image.save(root / "train/ants/sticker.png", transparency=1)
    pixels = read_rgb_array(root / "train/ants/sticker.png")
    assert tuple(pixels[0, 0]) == (255, 255, 255) and tuple(pixels[5, 5]) == (200, 10, 10)  # on white
    return Expected(used=("train/ants/sticker.png",))


@folder_case()
def animated_gif(root):
    frames = [Image.new("RGB", (12, 10), (80 * i, 0, 0)) for i in range(3)]
    frames[0].save(root / "train/ants/wave.gif", save_all=True, append_images=frames[1:])
    assert Image.open(root / "train/ants/wave.gif").n_frames == 3
    return Expected(used=("train/ants/wave.gif",))


@folder_case()
def exif_rotated_jpeg(root):
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated by 90 degrees
    photo(root / "train/ants/phone.jpg", size=(30, 20), exif=exif)
    assert read_rgb_array(root / "train/ants/phone.jpg").shape == (30, 20, 3)
    return Expected(used=("train/ants/phone.jpg",))


@folder_case()
def one_pixel_image(root):
    photo(root / "train/ants/dot.png", size=(1, 1))
    return Expected(used=("train/ants/dot.png",))


@folder_case()
def png_with_a_jpg_extension(root):
    photo(root / "train/ants/renamed.jpg", format="PNG")
    return Expected(used=("train/ants/renamed.jpg",))


@folder_case()
def symlink_to_an_image(root):
    os.symlink(photo(root.parent / "elsewhere/ant.png"), root / "train/ants/linked.png")
    return Expected(used=("train/ants/linked.png",))


@folder_case()
def symlinked_folder_of_images(root):
    photo(root.parent / "more_ants/a.png")
    photo(root.parent / "more_ants/b.png")
    os.symlink(root.parent / "more_ants", root / "train/ants/more")
    return Expected(used=("train/ants/more/a.png", "train/ants/more/b.png"))


# --- classes -----------------------------------------------------------------------------------------------

@folder_case()
def empty_class_folder(root):
    (root / "train/wasps").mkdir()
    return Expected(warnings=(f"empty class folder: {root / 'train/wasps'}",
                              "class 'wasps' dropped: its training folder is empty"))


@folder_case()
def empty_val_folder_of_a_class(root):
    for path in (root / "val/bees").iterdir():
        path.unlink()
    return Expected(removed=("val/bees/0.png", "val/bees/1.png"),
                    warnings=(f"empty class folder: {root / 'val/bees'}",
                              "class 'bees' has no val images: the val scores do not cover it"))


@folder_case()
def class_without_val_images(root):
    photo(root / "train/wasps/0.png")
    photo(root / "train/wasps/1.png")
    return Expected(used=("train/wasps/0.png", "train/wasps/1.png"),
                    warnings=("class 'wasps' has no val images: the val scores do not cover it",))


@folder_case()
def class_without_test_images(root):
    photo(root / "test/ants/0.png")
    return Expected(used=("test/ants/0.png",),
                    warnings=("class 'bees' has no test images: the test scores do not cover it",))


@folder_case()
def class_whose_files_are_all_rejected(root):
    (root / "train/wasps").mkdir()
    (root / "train/wasps/a.jpg").write_text("not a photo\n")
    (root / "train/wasps/b.jpg").write_bytes(b"")
    return Expected({"train/wasps/a.jpg": NOT_AN_IMAGE, "train/wasps/b.jpg": "empty file (0 bytes)"},
                    warnings=("class 'wasps' dropped: no usable training images (see rejects.csv)",))


# --- duplicates --------------------------------------------------------------------------------------------

@folder_case()
def duplicate_within_a_class(root):
    shutil.copy(root / "train/ants/0.png", root / "train/ants/copy.png")
    return Expected(used=("train/ants/copy.png",), warnings=(
        "duplicate within class 'ants' (kept: data.duplicates.within_class=warn): "
        f"{root / 'train/ants/0.png'} [train], {root / 'train/ants/copy.png'} [train]",))


@folder_case()
def duplicate_in_train_and_val_of_a_class(root):
    shutil.copy(root / "train/ants/0.png", root / "val/ants/copy.png")
    return Expected(used=("val/ants/copy.png",), warnings=(
        "duplicate within class 'ants' (kept: data.duplicates.within_class=warn): "
        f"{root / 'train/ants/0.png'} [train], {root / 'val/ants/copy.png'} [val]; it is in train and val: "
        "leakage that inflates the evaluation score (data.duplicates.within_class=reject keeps one copy)",))


@folder_case()
def duplicate_within_a_class_rejected_by_policy(root):
    shutil.copy(root / "train/ants/0.png", root / "val/ants/copy.png")
    first = root / "train/ants/0.png"
    return Expected({"val/ants/copy.png": f"duplicate: same content as {first} (class 'ants')"},
                    options={"duplicates": DuplicatePolicy(within_class="reject")})


@folder_case()
def duplicate_across_classes(root):
    ant, bee = root / "train/ants/0.png", root / "train/bees/looks_like_a_bee.png"
    shutil.copy(ant, bee)
    reason = "duplicate across classes: same content as {} (class '{}')"
    return Expected({"train/ants/0.png": reason.format(bee, "bees"),
                     "train/bees/looks_like_a_bee.png": reason.format(ant, "ants")})


@folder_case()
def duplicate_across_classes_warned_by_policy(root):
    shutil.copy(root / "val/ants/0.png", root / "val/bees/copy.png")
    return Expected(used=("val/bees/copy.png",),
                    options={"duplicates": DuplicatePolicy(across_classes="warn")},
                    warnings=("duplicate across classes: the same image is labelled 'ants', 'bees' (kept: "
                              f"data.duplicates.across_classes=warn): {root / 'val/ants/0.png'} [val], "
                              f"{root / 'val/bees/copy.png'} [val]",))


@folder_case()
def duplicates_allowed_by_policy(root):
    shutil.copy(root / "train/ants/0.png", root / "train/bees/copy.png")
    shutil.copy(root / "train/ants/1.png", root / "train/ants/copy.png")
    return Expected(used=("train/bees/copy.png", "train/ants/copy.png"),
                    options={"duplicates": DuplicatePolicy(across_classes="allow", within_class="allow")})


@pytest.mark.parametrize("build", FOLDER_CASES)
def test_folder_case(build, tmp_path):
    root = clean_imagefolder(tmp_path / "data")
    before = {os.path.relpath(p, root) for p in root.rglob("*.png")}
    with restored_permissions(tmp_path):
        expected = build(root)
        inventory = build_inventory(root, **expected.options)
        assert_every_path_accounted_for(inventory, root, before, expected)


# --- CSV manifests -----------------------------------------------------------------------------------------

@manifest_case()
def parent_traversal_to_etc_passwd(folder, rows):
    traversal = "../" * (len(folder.parts) - 1) + "etc/passwd"  # climbs from the folder to the real /etc/passwd
    rows.append([traversal, "ants", "train"])
    return Expected({os.path.relpath("/etc/passwd", folder): OUTSIDE})


@manifest_case()
def absolute_path_outside_the_folder(folder, rows):
    secret = photo(folder.parent / "private/holiday.png")
    rows.append([str(secret), "ants", "train"])
    return Expected({os.path.relpath(secret, folder): OUTSIDE})


@manifest_case()
def symlink_inside_the_folder_that_leads_outside(folder, rows):
    os.symlink(photo(folder.parent / "private/holiday.png"), folder / "images/innocent.png")
    rows.append(["images/innocent.png", "ants", "train"])
    return Expected({"images/innocent.png": OUTSIDE})


@manifest_case()
def outside_path_allowed_by_option(folder, rows):
    shared = photo(folder.parent / "shared/ant.png")
    rows.append([str(shared), "ants", "train"])
    return Expected(used=(os.path.relpath(shared, folder),), options={"allow_outside_root": True})


@manifest_case()
def absolute_path_inside_the_folder(folder, rows):
    rows.append([str(photo(folder / "images/abs.png")), "bees", "train"])
    return Expected(used=("images/abs.png",))


@manifest_case()
def missing_file(folder, rows):
    rows.append(["images/never_copied.png", "ants", "train"])
    return Expected({"images/never_copied.png": "unreadable: file not found"})


@manifest_case()
def label_without_training_images(folder, rows):
    rows.append([str(photo(folder / "images/wasp.png")), "wasps", "val"])
    return Expected({"images/wasp.png": "class 'wasps' has no usable training images (known: ants, bees)"})


@manifest_case(pytest.mark.timeout(30))
def fifo_named_in_the_manifest(folder, rows):
    os.mkfifo(folder / "images/stream.png")
    rows.append(["images/stream.png", "ants", "train"])
    return Expected({"images/stream.png": "not a regular file: fifo"})


@manifest_case()
def nul_byte_in_a_path(folder, rows):
    rows.append(["images/ants_0.png\0.exe", "ants", "train"])
    return Expected({"labels.csv:8": "manifest path contains a NUL byte"})  # the header, 6 clean rows, this one


@manifest_case()
def folder_named_in_the_manifest(folder, rows):
    (folder / "images/batch").mkdir()
    rows.append(["images/batch", "ants", "train"])
    return Expected({"images/batch": "not a regular file: folder"})


@manifest_case()
def same_photo_under_another_label(folder, rows):
    shutil.copy(folder / "images/ants_0.png", folder / "images/bee_or_ant.png")
    rows.append(["images/bee_or_ant.png", "bees", "train"])
    return Expected({
        "images/ants_0.png": f"duplicate across classes: same content as {folder / 'images/bee_or_ant.png'} "
                             "(class 'bees')",
        "images/bee_or_ant.png": f"duplicate across classes: same content as {folder / 'images/ants_0.png'} "
                                 "(class 'ants')"})


@pytest.mark.parametrize("build", MANIFEST_CASES)
def test_manifest_case(build, tmp_path):
    folder = tmp_path / "labelled"
    rows = []
    for class_name in ("ants", "bees"):
        for index, split in enumerate(("train", "train", "val")):
            rows.append([f"images/{class_name}_{index}.png", class_name, split])
            photo(folder / rows[-1][0])
    before = {row[0] for row in rows}
    expected = build(folder, rows)
    with (folder / "labels.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["path", "label", "split"], *rows])

    inventory = build_inventory(folder / "labels.csv", **expected.options)

    assert inventory.files_in == len(rows)  # one entry per row
    assert_every_path_accounted_for(inventory, folder, before, expected)


# --- the errors and options around the cases ---------------------------------------------------------------

def test_a_folder_left_with_one_class_names_the_class_that_was_dropped(tmp_path):
    root = tmp_path / "tree"
    photo(root / "ants/0.png")
    photo(root / "ants/1.png")
    (root / "bees").mkdir()
    with pytest.raises(DataError) as raised:
        build_inventory(root)
    assert str(raised.value) == (
        f"found 1 class(es) with usable training images under {root}; class 'bees' was dropped: its "
        "training folder is empty; a classifier needs at least 2 class folders with usable images (the "
        "rejected files and their reasons are in rejects.csv)")


def test_a_manifest_saved_as_latin1_is_a_data_error_naming_it(tmp_path):
    (tmp_path / "labels.csv").write_bytes(b"path,label\nimages/caf\xe9.png,ants\n")  # a spreadsheet's export
    with pytest.raises(DataError) as raised:
        build_inventory(tmp_path / "labels.csv")
    assert str(raised.value) == (
        f"manifest {tmp_path / 'labels.csv'}, line 1: cannot be read as a UTF-8 CSV ('utf-8' codec can't decode "
        "byte 0xe9 in position 21: invalid continuation byte); save it as UTF-8 CSV with columns path,label[,split]")


@needs_permissions
def test_a_data_folder_that_cannot_be_entered_is_a_data_error(tmp_path):
    root = clean_imagefolder(tmp_path / "data")
    with restored_permissions(tmp_path):
        os.chmod(root, 0o444)
        with pytest.raises(DataError, match="cannot be read \\(permission denied\\)"):
            build_inventory(root)


@pytest.mark.parametrize(("override", "key"), [
    ("data.duplicates.across_classes=drop", "data.duplicates.across_classes"),
    ("data.duplicates.within_class=sometimes", "data.duplicates.within_class"),
    ("data.allow_outside_root=maybe", "data.allow_outside_root"),
])
def test_a_bad_duplicates_or_confinement_option_names_its_key(override, key, tmp_path):
    root = clean_imagefolder(tmp_path / "data")
    cfg = compose_train("data=image_folder", f"data.root={root}", override, f"paths.run_dir={tmp_path}")
    with pytest.raises(ConfigError) as raised:
        validate_train_config(cfg)
    assert raised.value.key == key and raised.value.fix.startswith(f"{key}=")


def test_a_file_replaced_by_a_pixel_bomb_after_the_scan_stops_the_run_naming_it(tmp_path):
    """The dataset decodes with the scan's limit: a file swapped for a bomb mid-run is refused from its header."""
    import albumentations as A

    from visiontrain.image.datamodule import ImageDataset

    root = clean_imagefolder(tmp_path / "data")
    inventory = build_inventory(root, pixel_limit=PixelLimit(2_000_000, "data.max_image_pixels"))
    dataset = ImageDataset(inventory.splits["train"], A.Compose([]), None, inventory.pixel_limit)
    swapped = write(Path(dataset.samples[0].path), png_bomb_bytes(11000, 11000))
    with pytest.raises(DataError) as raised:
        dataset[0]
    assert str(raised.value) == (
        f"{swapped} changed after the scan at the start of the run and can no longer be used (image too large: "
        "11000x11000 = 121,000,000 pixels, over data.max_image_pixels=2,000,000): restore it, or remove it and "
        "start the run again")
    assert dataset[1][0].shape == (10, 12, 3)  # the others still decode


def test_a_bomb_swapped_in_mid_run_ends_in_one_line_from_a_loader_worker_process(tmp_path):
    """The same swap in a real run whose images are decoded by a DataLoader worker process: torch wraps the
    worker's error in its traceback, and the user still reads one line, ours, and no traceback."""
    from conftest import copy_hymenoptera, start_paused_run

    data, run_dir, pause = copy_hymenoptera(tmp_path / "images", per_class=4), tmp_path / "run", tmp_path / "pause"
    args = [o for o in tiny_overrides(data, run_dir, "schedule.freeze_epochs=0", "trainer.max_epochs=2")
            if o != "data.num_workers=0" and not o.startswith("paths.run_dir=")]
    process = start_paused_run([*args, "data.num_workers=1", f"hydra.run.dir={run_dir}"], pause, cwd=tmp_path)
    try:
        swapped = write(sorted((data / "train" / "ants").iterdir())[0], png_bomb_bytes(11000, 11000))
        (pause / "go").touch()
        _, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 2, stderr[-3000:]
    assert stderr.strip().splitlines() == [
        f"visiontrain: data error: {swapped} changed after the scan at the start of the run and can no longer be "
        "used (image too large: 11000x11000 = 121,000,000 pixels, over data.max_image_pixels=50,000,000): "
        "restore it, or remove it and start the run again"]


CAP = 2 * Image.MAX_IMAGE_PIXELS  # Pillow refuses larger images whatever the limit says


@pytest.mark.parametrize(("value", "problem"), [
    ("0", "must be a whole number of pixels above 0, got 0"),
    ("-1", "must be a whole number of pixels above 0, got -1"),
    ("abc", "must be a whole number of pixels above 0, got 'abc'"),
    ("0.5", "must be a whole number of pixels above 0, got 0.5"),
    ("true", "must be a whole number of pixels above 0, got True"),
    (str(CAP + 1), f"is {CAP + 1:,}, above the {CAP:,} pixels Pillow opens at all"),
])
def test_a_bad_max_image_pixels_names_its_key(value, problem, tmp_path):
    root = clean_imagefolder(tmp_path / "data")
    cfg = compose_train("data=image_folder", f"data.root={root}", f"data.max_image_pixels={value}",
                        f"paths.run_dir={tmp_path}")
    with pytest.raises(ConfigError) as raised:
        validate_train_config(cfg)
    assert (raised.value.key, raised.value.problem) == ("data.max_image_pixels", problem)
    assert raised.value.fix == "data.max_image_pixels=50000000 (decoded pixels per image)"


def test_the_largest_limit_pillow_opens_and_a_whole_float_are_accepted(tmp_path):
    root = clean_imagefolder(tmp_path / "data")
    for value in (str(CAP), "1e8"):
        validate_train_config(compose_train("data=image_folder", f"data.root={root}",
                                            f"data.max_image_pixels={value}", f"paths.run_dir={tmp_path}"))


@pytest.mark.parametrize(("command", "override", "problem"), [
    ("train", "data.max_image_pixels=abc", "must be a whole number of pixels above 0, got 'abc'"),
    ("predict", "max_image_pixels=0", "must be a whole number of pixels above 0, got 0"),
    ("drift", "max_image_pixels=-1", "must be a whole number of pixels above 0, got -1"),
    ("predict", f"max_image_pixels={CAP + 1}", f"is {CAP + 1:,}, above the {CAP:,} pixels Pillow opens at all"),
])
def test_a_bad_pixel_limit_is_a_config_error_before_anything_runs(command, override, problem, tmp_path):
    root = clean_imagefolder(tmp_path / "data")
    run_dir = tmp_path / "run"
    arguments = {"train": [o for o in tiny_overrides(root, run_dir) if not o.startswith("paths.")],
                 "predict": [f"model={tmp_path / 'model.onnx'}", f"input={root}"],  # neither is opened
                 "drift": [f"reference={tmp_path / 'model.onnx'}", f"current={root}"]}[command]
    result = run_cli(command, *arguments, override, f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=120)
    key = override.split("=")[0]
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-2:] == [f"visiontrain: config error: config key `{key}`: {problem}",
                                                       f"  fix: {key}=50000000 (decoded pixels per image)"]
    assert not (run_dir / "rejects.csv").exists() and not (run_dir / "predictions.csv").exists()


# --- the whole story, once, through the command ------------------------------------------------------------

@pytest.mark.slow  # a real `visiontrain train` process: about 30 s on two busy cores
@pytest.mark.timeout(300)
def test_training_on_a_messy_folder_lists_every_bad_path_in_rejects_csv(tmp_path):
    root = clean_imagefolder(tmp_path / "data")
    bad = {"train/ants/empty.jpg": zero_byte_file(root), "train/ants/me.png": symlink_to_itself(root),
           "train/ants/pipe.png": fifo(root), "train/ants/.DS_Store": macos_ds_store(root),
           "train/ants/0.png": duplicate_across_classes(root)}
    expected = {path: reason for case in bad.values() for path, reason in case.rejected.items()}
    (root / "train/wasps").mkdir()
    run_dir = tmp_path / "run"
    overrides = [o for o in tiny_overrides(root, run_dir) if not o.startswith(("paths.", "data.batch_size"))]

    result = run_cli("train", *overrides, "data.batch_size=5", "schedule=full_finetune",  # 5 training images
                     "trainer.max_epochs=1", "export.onnx=false", f"hydra.run.dir={run_dir}", cwd=tmp_path,
                     timeout=280)

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    with (run_dir / "rejects.csv").open() as handle:
        rejects = {os.path.relpath(row["path"], root): row["reason"] for row in csv.DictReader(handle)}
    assert rejects == expected
    data = json.loads((run_dir / "summary.json").read_text())["data"]
    assert data["files_in"] == data["files_used"] + data["files_rejected"] == 10 + 5  # the clean 10, 5 added
    assert data["files_used"] == 9 and data["files_rejected"] == 6
    assert f"empty class folder: {root / 'train/wasps'}" in data["warnings"]
    assert "data: class 'wasps' dropped: its training folder is empty" in result.stderr + result.stdout


@pytest.mark.skipif(_modes_are_enforced() or shutil.which("setpriv") is None,
                    reason="the permission cases already ran in this process")
def test_permission_cases_also_run_for_root_without_its_override_rights():
    """As root (CI, containers) the chmod cases above skip; run them again with root's read-override dropped."""
    command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all",
               sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider", "-rs",
               "-k", "unreadable or listable or cannot_be_entered"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parent)
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout and "running as root" not in result.stdout, result.stdout[-3000:]


@pytest.mark.slow  # a real `visiontrain train` (with its ONNX export), predict and drift: about a minute
@pytest.mark.timeout(400)
def test_pixel_bombs_are_listed_by_train_predict_and_drift_and_a_raised_limit_lets_a_big_scan_in(tmp_path):
    """The 143 KB bomb of issue 25: training runs and lists it, as do predict and drift, each naming its key.

    ``data.max_image_pixels=60000000`` lets a 7100x7100 scan (50.4 M pixels, over the default) train; an
    11000x11000 JPEG trains too, decoded at 1/8 DCT scale.
    """
    root = clean_imagefolder(tmp_path / "data")
    bomb = write(root / "train/ants/bomb.png", png_bomb_bytes(11000, 11000))
    scan = write(root / "train/bees/scan.png", png_bomb_bytes(7100, 7100))
    write(root / "train/bees/panorama.jpg", jpeg_bomb_bytes(11000, 11000))
    run_dir = tmp_path / "run"
    overrides = [o for o in tiny_overrides(root, run_dir) if not o.startswith(("paths.", "data.batch_size"))]

    result = run_cli("train", *overrides, "data.batch_size=4", "schedule=full_finetune", "trainer.max_epochs=1",
                     "data.max_image_pixels=60000000", f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=300)

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "DecompressionBomb" not in result.stderr + result.stdout
    with (run_dir / "rejects.csv").open() as handle:
        assert [(row["path"], row["split"], row["reason"]) for row in csv.DictReader(handle)] == [
            (str(bomb), "train", "image too large: 11000x11000 = 121,000,000 pixels, over "
                                 "data.max_image_pixels=60,000,000")]
    with (run_dir / "split.csv").open() as handle:
        used = {os.path.relpath(run_dir / row["path"], root) for row in csv.DictReader(handle)}  # relative paths
    assert {"train/bees/scan.png", "train/bees/panorama.jpg"} <= used and "train/ants/bomb.png" not in used
    data = json.loads((run_dir / "summary.json").read_text())["data"]
    assert data["files_in"] == data["files_used"] + data["files_rejected"] == 10 + 3
    assert (data["files_used"], data["rejected_by_reason"]) == (12, {"image too large": 1})

    predictions = tmp_path / "predicted.csv"
    predicted = run_cli("predict", f"model={run_dir / 'model.onnx'}", f"input={root / 'train'}",
                        f"output={predictions}", "progress=false", cwd=tmp_path, timeout=120)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    with (tmp_path / "predicted_rejects.csv").open() as handle:
        assert {row["path"]: row["reason"] for row in csv.DictReader(handle)} == {
            str(bomb): "image too large: 11000x11000 = 121,000,000 pixels, over max_image_pixels=50,000,000",
            str(scan): "image too large: 7100x7100 = 50,410,000 pixels, over max_image_pixels=50,000,000"}
    with predictions.open() as handle:
        assert len(list(csv.DictReader(handle))) == 6 + 3 - 2  # in = predicted + rejected
    assert "9 files in = 7 predicted + 2 rejected" in predicted.stdout

    drifted = run_cli("drift", f"reference={run_dir}", f"current={root / 'train'}", f"output={tmp_path / 'drift'}",
                      cwd=tmp_path, timeout=120)
    assert drifted.returncode in (0, 1), drifted.stderr[-3000:]
    report = json.loads((tmp_path / "drift" / "drift.json").read_text())
    assert sorted(map(tuple, report["unreadable"])) == [
        (str(bomb), "image too large: 11000x11000 = 121,000,000 pixels, over max_image_pixels=50,000,000"),
        (str(scan), "image too large: 7100x7100 = 50,410,000 pixels, over max_image_pixels=50,000,000")]
    assert "7 images in" in report["current"]
