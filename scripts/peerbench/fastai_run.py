"""The fastai side of bench_peers.py; runs in the peers' venv (scripts/peers_venv.sh), never in the project's.

What a fastai user writes to fine-tune a timm model on an ImageFolder, with fastai's defaults: the book's
presizing (``item_tfms=Resize(size * 460 / 224)``, ``batch_tfms=aug_transforms(size=size, min_scale=0.75)``),
``vision_learner`` with a timm architecture name (fastai's head: concat pooling, BatchNorm, dropout, 512 units)
and ``Learner.fine_tune`` (freeze, one cycle on the head, unfreeze, one cycle with discriminative rates; Adam).
The ImageNet weights are timm's pretrained path with a local file (``pretrained_cfg_overlay``) instead of the
hub. After each epoch one JSON line goes to ``--out``: validation accuracy, the training phase's images and
seconds, the median time from one training batch to the next, and whether every layer trained.

    .venv-peers/bin/python scripts/peerbench/fastai_run.py --data <ImageFolder> --weights imagenet.pth \
        --size 160 --bs 16 --epochs 6 --freeze-epochs 1 --workers 2 --out epochs.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from fastai.vision.all import (
    Callback,
    ImageDataLoaders,
    Recorder,
    Resize,
    accuracy,
    aug_transforms,
    find_bs,
    set_seed,
    vision_learner,
)

ARCH = "tf_efficientnet_lite0"
PRESIZE = 460 / 224  # fastai's book: item transforms at 460 px, batch crops at 224 px


class EpochLog(Callback):
    """One JSON line per epoch, after the Recorder has the epoch's validation metrics."""

    order = Recorder.order + 1

    def __init__(self, path: Path) -> None:
        self.path, self.count = path, 0
        self.started, self.images, self.train_s = 0.0, 0, 0.0
        self.batch_ends: list[float] = []

    def before_train(self) -> None:
        self.started, self.images, self.batch_ends = time.perf_counter(), 0, []

    def after_batch(self) -> None:
        if self.training:
            self.images += find_bs(self.yb)
            self.batch_ends.append(time.perf_counter())

    def after_train(self) -> None:
        self.train_s = time.perf_counter() - self.started

    def after_epoch(self) -> None:
        train_loss, valid_loss, val_acc = (float(v) for v in self.recorder.values[-1][:3])
        steps = [b - a for a, b in zip(self.batch_ends, self.batch_ends[1:])]  # the first waits for the workers
        row = {"epoch": self.count, "val_acc": val_acc, "valid_loss": valid_loss, "train_loss": train_loss,
               "train_images": self.images, "train_s": self.train_s,
               "step_median_s": statistics.median(steps) if steps else None,
               "all_layers": all(p.requires_grad for p in self.model.parameters())}
        with self.path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        self.count += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="an ImageFolder: train/<class>/*, val/<class>/*")
    parser.add_argument("--weights", type=Path, required=True, help="timm-named ImageNet state dict")
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--bs", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=6, help="all passes, the frozen ones included")
    parser.add_argument("--freeze-epochs", type=int, default=1, help="fine_tune's own default")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    set_seed(args.seed)
    dls = ImageDataLoaders.from_folder(
        args.data, train="train", valid="val", bs=args.bs, num_workers=args.workers,
        item_tfms=Resize(round(args.size * PRESIZE)), batch_tfms=aug_transforms(size=args.size, min_scale=0.75))
    learn = vision_learner(dls, ARCH, metrics=accuracy, pretrained=True,
                           pretrained_cfg_overlay={"file": str(args.weights)}, cbs=EpochLog(args.out))
    with learn.no_bar():
        learn.fine_tune(args.epochs - args.freeze_epochs, freeze_epochs=args.freeze_epochs)


if __name__ == "__main__":
    main()
