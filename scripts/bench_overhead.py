"""Framework overhead: training samples per second through `visiontrain train` against a hand-written loop.

Both sides train the same timm model (resnet18 from scratch, every parameter training, the same dropout)
on the same data (visiontrain's own hymenoptera datamodule: same files, transform, batch size and workers),
with AdamW and cross-entropy, in a fresh process with torch's default threads. The hand-written loop is the
minimum: forward, loss, backward, step. visiontrain adds what a framework adds: Lightning's loop, the
schedule, metrics, logging, checkpointing, the learning-rate scheduler, validation (not timed).

Throughput is training samples over the time from an epoch's start to its last training step, validation
excluded, on both sides (visiontrain's own history.csv records it for every run). The first epoch (worker
start, allocator warm-up) is left out; median over the remaining epochs, then over repeats, and the ratio is
taken per repeat (the two sides run back to back) before its median.

    .venv/bin/python scripts/bench_overhead.py --repeats 3 --epochs 4 --json benchmarks/overhead.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import SHARED_DATA, compose_train, markdown_table, median, write_results


def overrides(data: Path, args: argparse.Namespace) -> list[str]:
    return ["experiment=hymenoptera", f"data.root={data}", f"model.backbone={args.backbone}",
            "model.pretrained=false", "schedule=full_finetune", f"augment.image_size={args.image_size}",
            f"data.batch_size={args.batch_size}", f"data.num_workers={args.workers}",
            f"trainer.max_epochs={args.epochs}"]


def visiontrain_run(data: Path, args: argparse.Namespace) -> list[float]:
    """Samples per second of each epoch, from the run's history.csv."""
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = Path(scratch) / "run"
        command = [sys.executable, "-m", "visiontrain", "train", *overrides(data, args), f"hydra.run.dir={run_dir}",
                   "export.onnx=false", "logger=none", "trainer.enable_progress_bar=false"]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"visiontrain train failed:\n{result.stderr[-3000:]}")
        with (run_dir / "history.csv").open() as handle:
            return [float(row["time/train_samples_per_second"]) for row in csv.DictReader(handle)]


def hand_loop(data: Path, args: argparse.Namespace) -> list[float]:
    """The minimal PyTorch loop over the same datamodule; runs in its own process (see main)."""
    import timm
    import torch

    from visiontrain.tasks.image import datamodule_for, input_spec_from, scan, train_steps_for

    cfg = compose_train(*overrides(data, args), "paths.run_dir=/tmp/unused")
    torch.manual_seed(int(cfg.seed))
    spec = input_spec_from(cfg)
    datamodule = datamodule_for(scan(cfg.data, int(cfg.seed)), spec, cfg.data, int(cfg.seed),
                                train_steps_for(cfg, spec))
    loader = datamodule.train_dataloader()
    model = timm.create_model(args.backbone, num_classes=len(datamodule.classes), drop_rate=float(cfg.model.drop_rate))
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(cfg.optimizer.lr),
                                  weight_decay=float(cfg.optimizer.weight_decay))
    criterion = torch.nn.CrossEntropyLoss()
    rates = []
    model.train()
    for _ in range(args.epochs):
        started, samples = time.perf_counter(), 0
        for images, labels in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(images), labels)
            loss.backward()
            optimizer.step()
            samples += len(labels)
        rates.append(samples / (time.perf_counter() - started))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "hymenoptera")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--hand-loop-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hand_loop_only:
        print(json.dumps(hand_loop(args.data, args)))
        return
    runs = []
    for index in range(args.repeats):
        ours = visiontrain_run(args.data, args)
        child = subprocess.run([sys.executable, __file__, "--hand-loop-only", *sys.argv[1:]], capture_output=True,
                               text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if child.returncode != 0:
            raise SystemExit(f"hand loop failed:\n{child.stderr[-3000:]}")
        hand = json.loads(child.stdout.strip().splitlines()[-1])
        runs.append({"visiontrain": ours, "hand_loop": hand,
                     "ratio": median(ours[1:]) / median(hand[1:])})
        print(f"repeat {index + 1}/{args.repeats}: visiontrain {median(ours[1:]):.1f} samples/s, hand loop "
              f"{median(hand[1:]):.1f}, ratio {runs[-1]['ratio']:.3f}", flush=True)
    ours = median([median(r["visiontrain"][1:]) for r in runs])
    hand = median([median(r["hand_loop"][1:]) for r in runs])
    ratio = median([r["ratio"] for r in runs])
    print(f"\n{args.backbone} at {args.image_size} px, batch {args.batch_size}, {args.workers} workers, epochs 2-"
          f"{args.epochs} of each run, {args.repeats} repeats\n")
    print(markdown_table(["loop", "train samples/s (median)"], [["visiontrain train", ours], ["hand-written", hand]]))
    print(f"\nvisiontrain / hand-written = {ratio:.3f} (goal >= 0.95)")
    write_results(args.json, " ".join(["python", *sys.argv]),
                  {"settings": vars(args) | {"data": str(args.data), "json": str(args.json)}, "runs": runs,
                   "median": {"visiontrain": ours, "hand_loop": hand}, "ratio": ratio})


if __name__ == "__main__":
    main()
