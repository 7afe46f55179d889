"""Photo sets unlike hymenoptera, derived from its photos by a seeded, deterministic recipe (for bench_peers.py).

- ``lowres``: every photo (train and val pooled) as ``<class>/<split>_<name>.jpg``, a class tree that visiontrain
  splits itself: the short side drawn from 32-64 px, a light Gaussian blur, JPEG quality 30-60. Small, blurry,
  compressed photos: what a phone thumbnail or a security camera gives.
- ``rotated``: four classes, {ants, bees} x {upright, upside_down}, an ImageFolder with hymenoptera's own
  train/val split (a photo and its 180-degree rotation on the same side). Both orientations are re-encoded the
  same way (JPEG quality 90) so that no file-level trace tells them apart. A horizontal flip keeps every label
  true; a vertical flip would turn ``upright`` into ``upside_down``.

Each photo's draws come from ``random.Random("<seed>:<relative path>")``: the same folder, seed and Pillow give
the same bytes, whatever order the files are visited in.

    .venv/bin/python scripts/make_photo_sets.py --out /work/photo_sets     # both sets, from ../shared/data
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from PIL import Image, ImageFilter, ImageOps

SETS = ("lowres", "rotated")
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}
LOWRES_SHORT_SIDE = (32, 64)
LOWRES_BLUR_RADIUS = (0.3, 1.0)
LOWRES_QUALITY = (30, 60)
ROTATED_QUALITY = 90


def photos(source: Path) -> list[Path]:
    """Every photo of an ImageFolder (``split/class/file``), in a stable order."""
    return sorted(p for p in source.glob("*/*/*") if p.suffix.lower() in PHOTO_SUFFIXES)


def upright_rgb(path: Path) -> Image.Image:
    """The photo as shown (EXIF orientation applied), in RGB."""
    with Image.open(path) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


def degrade(image: Image.Image, rng: random.Random) -> tuple[Image.Image, int]:
    """A small, blurred copy and the JPEG quality to save it at."""
    short = rng.randint(*LOWRES_SHORT_SIDE)
    scale = short / min(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    small = image.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
    return small.filter(ImageFilter.GaussianBlur(rng.uniform(*LOWRES_BLUR_RADIUS))), rng.randint(*LOWRES_QUALITY)


def write_lowres(source: Path, target: Path, seed: int) -> int:
    """The ``lowres`` class tree under ``target``; returns the number of photos written."""
    written = 0
    for path in photos(source):
        split, label = path.parts[-3], path.parts[-2]
        rng = random.Random(f"{seed}:{path.relative_to(source).as_posix()}")
        small, quality = degrade(upright_rgb(path), rng)
        out = target / label / f"{split}_{path.stem}.jpg"
        out.parent.mkdir(parents=True, exist_ok=True)
        small.save(out, "JPEG", quality=quality)
        written += 1
    return written


def write_rotated(source: Path, target: Path) -> int:
    """The four-class ``rotated`` ImageFolder under ``target``; returns the number of photos written."""
    written = 0
    for path in photos(source):
        split, label = path.parts[-3], path.parts[-2]
        image = upright_rgb(path)
        for orientation, pixels in (("upright", image), ("upside_down", image.transpose(Image.Transpose.ROTATE_180))):
            out = target / split / f"{label}_{orientation}" / f"{path.stem}.jpg"
            out.parent.mkdir(parents=True, exist_ok=True)
            pixels.save(out, "JPEG", quality=ROTATED_QUALITY)
            written += 1
    return written


def make_set(name: str, source: Path, out: Path, seed: int) -> Path:
    """Write set ``name`` into ``out/name`` (replacing nothing that is already there) and return its folder."""
    target = out / name
    if target.exists() and any(target.iterdir()):
        return target
    if name == "lowres":
        write_lowres(source, target, seed)
    elif name == "rotated":
        write_rotated(source, target)
    else:
        raise SystemExit(f"unknown photo set {name!r}; choose from {', '.join(SETS)}")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data"
                        / "hymenoptera", help="an ImageFolder (train/val/<class>/*)")
    parser.add_argument("--out", type=Path, required=True, help="a folder outside the repository")
    parser.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name in args.sets:
        folder = make_set(name, args.source, args.out, args.seed)
        print(f"{name}: {sum(1 for _ in folder.rglob('*.jpg'))} photos in {folder}")


if __name__ == "__main__":
    main()
