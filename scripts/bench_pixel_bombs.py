"""Pixel bombs in training's scan: peak memory and wall time of the inventory over real photos plus a few bombs.

The scan (``build_inventory``, what ``visiontrain train`` runs first) is timed in a fresh process per run, over
two folders: the real hymenoptera photos (``../shared/data/hymenoptera``, else the test fixtures), and the same
photos plus three 11000x11000 grayscale PNGs (118 KB each, 121 M pixels: 363 MB as RGB) and one 11000x11000
JPEG (1.4 MB). Three versions of the code:

- ``before``: the code of ``--before-src`` (e.g. a checkout of main before issue 25), which decoded every file in
  full to check it (a PNG's ``getexif()`` alone decodes every pixel);
- ``no limit``: this checkout with ``data.max_image_pixels`` at Pillow's own cap and no JPEG draft size: what
  the scan costs without the limit (it should match ``before``);
- ``after``: this checkout as training runs it: the default limit (50 M pixels, from the header) and JPEGs
  decoded at the draft size of the default model's resize size (256 px).

Peak memory is the child's ``ru_maxrss`` (imports included: ``rss_before_scan_mib`` is the resident memory
just before the scan); runs are interleaved (one of each case in turn) and the medians reported. The bombs
differ in size by a pixel, so that the duplicate check (sha256) does not reject them before they are decoded.

    .venv/bin/python scripts/bench_pixel_bombs.py --repeats 5 --before-src ../main/src \
        --json benchmarks/pixel_bombs.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

from benchlib import SHARED_DATA, markdown_table, median, write_results

REPO = Path(__file__).resolve().parents[1]
FIXTURE_PHOTOS = REPO / "tests" / "fixtures" / "hymenoptera"
BOMB_SIDE = 11000
RESIZE_TO = 256  # the default model's resize size (224 px input, crop_pct 0.875): what the scan drafts JPEGs to

_SCAN = """
import inspect, json, resource, sys, time
from visiontrain.image import inventory as module
root, version = sys.argv[1], sys.argv[2]
options = {}
if version != "before":
    from visiontrain.core.image_decode import PIL_PIXEL_CAP, PixelLimit
    options = ({"reduce_to": int(sys.argv[3])} if version == "after" else
               {"pixel_limit": PixelLimit(PIL_PIXEL_CAP, "data.max_image_pixels")})
def rss_mib():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024
before_scan = rss_mib()
started = time.perf_counter()
found = module.build_inventory(root, **options)
seconds = time.perf_counter() - started
counts = found.counts()
print(json.dumps({"seconds": seconds, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_before_scan_mib": before_scan, "files_in": counts["files_in"],
                  "files_used": counts["files_used"], "files_rejected": counts["files_rejected"],
                  "rejected_by_reason": counts["rejected_by_reason"], "code": module.__file__}))
"""


def png_bomb(width: int, height: int) -> bytes:
    """A real, valid, all-black 8-bit grayscale PNG, written row by row through zlib."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    packer = zlib.compressobj(9)
    row = bytes(width + 1)
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))


def jpeg_bomb(width: int, height: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (width, height), 128).save(buffer, "JPEG", quality=50)
    return buffer.getvalue()


def folders(base: Path) -> dict[str, Path]:
    """The real photos, and a copy of them with the bombs added to train/."""
    photos = SHARED_DATA / "hymenoptera" if (SHARED_DATA / "hymenoptera" / "train").is_dir() else FIXTURE_PHOTOS
    clean, bombed = base / "photos", base / "photos_and_bombs"
    shutil.copytree(photos, clean)
    shutil.copytree(photos, bombed)
    for index, class_name in enumerate(("ants", "bees", "ants")):  # 11000x11000, 11001x11000, 11002x11000
        png = png_bomb(BOMB_SIDE + index, BOMB_SIDE)
        (bombed / "train" / class_name / f"bomb{index}.png").write_bytes(png)
    jpeg = jpeg_bomb(BOMB_SIDE, BOMB_SIDE)
    (bombed / "train" / "bees" / "panorama.jpg").write_bytes(jpeg)
    print(f"photos from {photos}; each PNG bomb {len(png) / 1024:.0f} KB, the JPEG {len(jpeg) / 1024:.0f} KB",
          file=sys.stderr)
    return {"photos": clean, "photos + 3 PNG bombs + 1 JPEG bomb": bombed}


def scan_once(folder: Path, version: str, src: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src)}
    result = subprocess.run([sys.executable, "-c", _SCAN, str(folder), version, str(RESIZE_TO)], env=env,
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise SystemExit(f"the {version} scan of {folder} failed:\n{result.stderr[-3000:]}")
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    if not measured["code"].startswith(str(src.resolve())):
        raise SystemExit(f"the {version} scan imported {measured['code']}, not the code under {src}")
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per case; medians are reported")
    parser.add_argument("--before-src", type=Path, default=None,
                        help="the src/ folder of the code to compare with (e.g. ../main/src); left out: no 'before'")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    options = parser.parse_args()
    versions = {"no limit": REPO / "src", "after": REPO / "src"}
    if options.before_src is not None:
        versions = {"before": options.before_src.resolve(), **versions}
    runs: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        data = folders(Path(scratch))
        for repeat in range(options.repeats):
            for data_name, folder in data.items():
                for version, src in versions.items():
                    measured = scan_once(folder, version, src)
                    runs.setdefault(f"{data_name}: {version}", []).append(measured)
                    print(f"{repeat + 1}/{options.repeats} {data_name}: {version}: {measured['seconds']:.2f} s, "
                          f"peak {measured['peak_rss_mib']:.0f} MiB, rejected {measured['rejected_by_reason']}",
                          file=sys.stderr, flush=True)
    cases = {}
    for name, measured in runs.items():
        cases[name] = {"median_seconds": round(median([m["seconds"] for m in measured]), 3),
                       "median_peak_rss_mib": round(median([m["peak_rss_mib"] for m in measured]), 1),
                       "median_rss_before_scan_mib": round(median([m["rss_before_scan_mib"] for m in measured]), 1),
                       "files_in": measured[0]["files_in"], "files_used": measured[0]["files_used"],
                       "rejected_by_reason": measured[0]["rejected_by_reason"], "runs": measured}
    rows = [(name, c["median_seconds"], c["median_peak_rss_mib"], c["median_rss_before_scan_mib"], c["files_in"],
             c["files_used"], json.dumps(c["rejected_by_reason"])) for name, c in cases.items()]
    print(markdown_table(["folder / code", "scan s", "peak RSS MiB", "RSS before scan MiB", "in", "used",
                          "rejected"], rows))
    commits = {version: _commit(src) for version, src in versions.items()}
    write_results(options.json, " ".join(sys.argv), {"bomb_side": BOMB_SIDE, "resize_to": RESIZE_TO,
                                                     "repeats": options.repeats, "commits": commits, "cases": cases})


def _commit(src: Path) -> str:
    """The commit a version's code comes from (with ``+changes`` when its checkout has uncommitted ones)."""
    head = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--", "."], capture_output=True, text=True)
    return (head.stdout.strip() or "unknown") + ("+changes" if dirty.stdout.strip() else "")


if __name__ == "__main__":
    main()
