"""Each side of the comparison: its command line, the file it writes a row to per epoch, and how to read it.

Only the shared knobs are set (image size, batch size, epochs, loader workers; threads through the
environment); everything else is each trainer's own default, described in ``DEFAULTS`` for the report.
"""

from __future__ import annotations

import csv
import json
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
TIMM_MODEL = "tf_efficientnet_lite0"
# timm train.py's log line of a step: "Train: <epoch> [<step>/<steps> ...] Time: <s>, <rate>/s (<mean s>, <mean
# rate>/s)": the step's own seconds, then the running mean since the epoch began (on the last line: the epoch's).
TIMM_TRAIN_LINE = re.compile(r"Train: (\d+) \[\s*(\d+)/\d+.*?Time: ([\d.]+)s,\s*[\d.]+/s\s+"
                             r"\(\s*[\d.]+s,\s*([\d.]+)/s\)")

# What each side used by default, for the report (read from their code and configs, not tuned here).
DEFAULTS: dict[str, str] = {
    "visiontrain_hymenoptera": (
        "`experiment=hymenoptera`: freeze_then_finetune (2 epochs head only at lr 1e-3, then everything, backbone "
        "x0.1 with 1 warm-up epoch, cosine to 1%, BatchNorm statistics kept), AdamW wd 0.05, zero-initialised "
        "linear head, dropout 0.2, label smoothing 0.1, `augment=strong` (RandomResizedCrop 0.08-1, hflip, "
        "rotate +-15, colour jitter, blur, cut-outs)"),
    "visiontrain_image_folder": (
        "`data=image_folder`: the same schedule and optimizer, no dropout or label smoothing, `augment=light` "
        "(RandomResizedCrop 0.5-1, hflip)"),
    "fastai": (
        "`vision_learner(dls, 'tf_efficientnet_lite0', metrics=accuracy)` + `fine_tune(epochs - 1, "
        "freeze_epochs=1)`: 1 epoch head only (one cycle, lr 2e-3, pct_start 0.99), then everything (one cycle, "
        "slice(1e-5, 1e-3), div 5), Adam (wd 0.01, decoupled), BatchNorm trains in frozen layers; fastai's head "
        "(concat pool, BN, dropout 0.25/0.5, 512 units); item Resize(size x 460/224) + batch aug_transforms("
        "size, min_scale=0.75): flip, rotate +-10, zoom 1-1.1, warp 0.2, lighting 0.2; no vertical flip"),
    "timm": (
        "`train.py --initial-checkpoint`: every layer trains from the first step; SGD (Nesterov) momentum 0.9, "
        "lr 0.1 x batch/256 (linear scaling), wd 2e-5, cosine per epoch with 5 warm-up epochs from 1e-5, label "
        "smoothing 0.1, RandomResizedCrop 0.08-1 with random interpolation, hflip 0.5, colour jitter 0.4, no "
        "vertical flip, no AutoAugment, mixup or erasing; the head is timm's own N-class initialisation"),
}


@dataclass(frozen=True)
class Knobs:
    """The settings every side shares."""

    image_size: int
    batch_size: int
    epochs: int
    workers: int
    seed: int = 42


@dataclass(frozen=True)
class Inputs:
    """Where one set's data and weights are, for every side."""

    root: Path               # the set as visiontrain reads it (ImageFolder or class tree)
    image_folder: Path       # the same split as an ImageFolder of symlinks, for the peers
    num_classes: int
    imagenet: Path           # timm-named ImageNet weights (fastai)
    initial_checkpoint: Path  # ImageNet body + an N-class head (timm)
    peers_python: Path
    timm_train: Path


@dataclass(frozen=True)
class EpochRow:
    val_acc: float
    train_images_per_s: float | None
    all_layers: bool          # the whole network trained in this epoch (not a frozen backbone)
    step_median_s: float | None = None  # median time from one training batch to the next (the first left out)


@dataclass(frozen=True)
class Side:
    """How to run one side in ``run_dir`` and read back its epochs."""

    name: str
    command: Callable[[Knobs, Inputs, Path], list[str]]
    rows_file: Callable[[Path], Path]
    count_rows: Callable[[Path], int]
    read: Callable[[Path], list[EpochRow]]


def _csv_rows(path: Path) -> int:
    """Complete data rows of a CSV with a header (a row still being written is not counted)."""
    try:
        text = path.read_text()
    except OSError:
        return 0
    return max(0, text.count("\n") - 1)


def _jsonl_rows(path: Path) -> int:
    try:
        return path.read_text().count("\n")
    except OSError:
        return 0


def _visiontrain(group: list[str]) -> Callable[[Knobs, Inputs, Path], list[str]]:
    def command(knobs: Knobs, inputs: Inputs, run_dir: Path) -> list[str]:
        return [sys.executable, "-m", "visiontrain", "train", *group, f"data.root={inputs.root}",
                f"model.input.image_size={knobs.image_size}", f"data.batch_size={knobs.batch_size}",
                f"trainer.max_epochs={knobs.epochs}", f"data.num_workers={knobs.workers}", f"seed={knobs.seed}",
                "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}"]
    return command


def _read_visiontrain(run_dir: Path) -> list[EpochRow]:
    with (run_dir / "history.csv").open() as handle:
        return [EpochRow(float(r["val/acc"]), float(r["time/train_samples_per_second"]),
                         float(r["frozen_backbone"]) == 0.0, float(r["time/step_median_ms"]) / 1000)
                for r in csv.DictReader(handle)]


def _fastai_command(knobs: Knobs, inputs: Inputs, run_dir: Path) -> list[str]:
    return [str(inputs.peers_python), str(ROOT / "scripts" / "peerbench" / "fastai_run.py"),
            "--data", str(inputs.image_folder), "--weights", str(inputs.imagenet), "--size", str(knobs.image_size),
            "--bs", str(knobs.batch_size), "--epochs", str(knobs.epochs), "--workers", str(knobs.workers),
            "--seed", str(knobs.seed), "--out", str(run_dir / "epochs.jsonl")]


def _read_fastai(run_dir: Path) -> list[EpochRow]:
    rows = [json.loads(line) for line in (run_dir / "epochs.jsonl").read_text().splitlines()]
    return [EpochRow(r["val_acc"], r["train_images"] / r["train_s"] if r["train_s"] else None, r["all_layers"],
                     r.get("step_median_s")) for r in rows]


def _timm_command(knobs: Knobs, inputs: Inputs, run_dir: Path) -> list[str]:
    return [str(inputs.peers_python), str(inputs.timm_train), "--data-dir", str(inputs.image_folder),
            "--val-split", "val", "--model", TIMM_MODEL, "--num-classes", str(inputs.num_classes),
            "--initial-checkpoint", str(inputs.initial_checkpoint), "--img-size", str(knobs.image_size),
            "-b", str(knobs.batch_size), "--epochs", str(knobs.epochs), "-j", str(knobs.workers),
            "--seed", str(knobs.seed), "--device", "cpu", "--output", str(run_dir), "--experiment", "run",
            "--log-interval", "1"]  # a line per step (logging only), for the median step


def timm_steps(log: str) -> dict[int, tuple[float, bool, float | None]]:
    """Epoch -> (mean training images/s, every layer trains, median step seconds). The mean is the running mean
    on the epoch's last line (timm drops the last, incomplete batch: every step is a full batch); the median
    leaves out step 0, which waits for the loader workers."""
    lines: dict[int, list[tuple[int, float, float]]] = {}
    for epoch, step, seconds, rate in TIMM_TRAIN_LINE.findall(log):
        lines.setdefault(int(epoch), []).append((int(step), float(seconds), float(rate)))
    return {epoch: (rows[-1][2], True, statistics.median([s for step, s, _ in rows if step > 0])
                    if any(step > 0 for step, _, _ in rows) else None) for epoch, rows in lines.items()}


def _read_timm(run_dir: Path) -> list[EpochRow]:
    steps = timm_steps((run_dir / "side.log").read_text(errors="replace"))
    with (run_dir / "run" / "summary.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    return [EpochRow(float(r["eval_top1"]) / 100, *steps.get(int(r["epoch"]), (None, True, None)))
            for r in rows]


SIDES: dict[str, Side] = {side.name: side for side in (
    Side("visiontrain_hymenoptera", _visiontrain(["experiment=hymenoptera"]), lambda d: d / "history.csv",
         _csv_rows, _read_visiontrain),
    Side("visiontrain_image_folder", _visiontrain(["data=image_folder"]), lambda d: d / "history.csv",
         _csv_rows, _read_visiontrain),
    Side("fastai", _fastai_command, lambda d: d / "epochs.jsonl", _jsonl_rows, _read_fastai),
    Side("timm", _timm_command, lambda d: d / "run" / "summary.csv", _csv_rows, _read_timm),
)}
