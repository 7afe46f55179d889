"""Framework overhead: training samples per second through `visiontrain train` against a hand-written loop.

Both sides train the same timm model (resnet18 from scratch, every parameter training, the same dropout)
on the same data (visiontrain's own hymenoptera datamodule: same files, transform, batch size and workers),
with AdamW and cross-entropy, in a fresh process with torch's default threads. The hand-written loop is the
minimum: forward, loss, backward, step. visiontrain adds what a framework adds: Lightning's loop, the
schedule, metrics, logging, checkpointing, the learning-rate scheduler, validation (not timed).

Two measures, the same on both sides (visiontrain's own history.csv records both for every run):

- the typical step: the median time from one training batch's end to the next one's (loading, forward,
  backward, optimizer and framework all inside), as samples per second = batch size / median step. The median
  is robust to the stalls other tenants of a shared VM cause, which move epoch means by +-10% here;
- the epoch mean: training samples over the time from an epoch's start to its last step (validation excluded).

The first epoch (worker start, allocator warm-up) is left out; medians over the remaining epochs, then over
repeats; ratios are taken per repeat (the two sides run back to back) before their median.

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
            "model.weights=null", "schedule=full_finetune", "schedule.freeze_epochs=0",
            f"model.input.image_size={args.image_size}",
            f"data.batch_size={args.batch_size}", f"data.num_workers={args.workers}",
            f"trainer.max_epochs={args.epochs}"]


def visiontrain_run(data: Path, args: argparse.Namespace) -> dict[str, list[float]]:
    """Per epoch: mean samples per second and median step (ms), from the run's history.csv."""
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = Path(scratch) / "run"
        command = [sys.executable, "-m", "visiontrain", "train", *overrides(data, args), f"hydra.run.dir={run_dir}",
                   "export.onnx=false", "logger=none", "trainer.enable_progress_bar=false"]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"visiontrain train failed:\n{result.stderr[-3000:]}")
        with (run_dir / "history.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        return {"epoch_rate": [float(row["time/train_samples_per_second"]) for row in rows],
                "step_ms": [float(row["time/step_median_ms"]) for row in rows]}


def hand_loop(data: Path, args: argparse.Namespace) -> dict[str, list[float]]:
    """The minimal PyTorch loop over the same datamodule; runs in its own process (see main)."""
    import timm
    import torch

    from visiontrain.config.checks import check_train_config
    from visiontrain.image.decided import train_steps_for
    from visiontrain.image.task import datamodule_for, input_spec_from, scan
    from visiontrain.image.transforms import build_train_transform, normalise

    cfg = compose_train(*overrides(data, args), "paths.run_dir=/tmp/unused")
    settings = check_train_config(cfg)
    torch.manual_seed(settings.seed)
    spec = input_spec_from(cfg)
    datamodule = datamodule_for(scan(settings.data, settings.seed), spec, settings.data, settings.seed,
                                build_train_transform(spec, train_steps_for(cfg, spec)))
    loader = datamodule.train_dataloader()
    model = timm.create_model(args.backbone, num_classes=len(datamodule.inventory.classes), drop_rate=float(cfg.model.drop_rate))
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(cfg.optimizer.lr),
                                  weight_decay=float(cfg.optimizer.weight_decay))
    criterion = torch.nn.CrossEntropyLoss()
    result: dict[str, list[float]] = {"epoch_rate": [], "step_ms": []}
    model.train()
    for _ in range(args.epochs):
        started = last = time.perf_counter()
        samples, steps = 0, []
        for index, (images, labels) in enumerate(loader):
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(normalise(images, spec.mean, spec.std)), labels)  # uint8 batches, as ours
            loss.backward()
            optimizer.step()
            samples += len(labels)
            now = time.perf_counter()
            if index > 0:
                steps.append(now - last)
            last = now
        result["epoch_rate"].append(samples / (last - started))
        result["step_ms"].append(1000 * median(steps))
    return result


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
        run = {"visiontrain": ours, "hand_loop": hand}
        for side in ("visiontrain", "hand_loop"):  # epochs 2..N
            run[side]["step_rate"] = args.batch_size * 1000 / median(run[side]["step_ms"][1:])
            run[side]["mean_rate"] = median(run[side]["epoch_rate"][1:])
        run["step_ratio"] = ours["step_rate"] / hand["step_rate"]
        run["epoch_ratio"] = ours["mean_rate"] / hand["mean_rate"]
        runs.append(run)
        print(f"repeat {index + 1}/{args.repeats}: typical step {ours['step_rate']:.1f} vs {hand['step_rate']:.1f} "
              f"samples/s ({run['step_ratio']:.3f}); epoch mean {ours['mean_rate']:.1f} vs {hand['mean_rate']:.1f} "
              f"({run['epoch_ratio']:.3f})", flush=True)
    summary = {f"{side}_{measure}": median([r[side][measure] for r in runs])
               for side in ("visiontrain", "hand_loop") for measure in ("step_rate", "mean_rate")}
    ratios = {measure: median([r[measure] for r in runs]) for measure in ("step_ratio", "epoch_ratio")}
    print(f"\n{args.backbone} at {args.image_size} px, batch {args.batch_size}, {args.workers} workers, epochs 2-"
          f"{args.epochs} of each run, {args.repeats} repeats\n")
    print(markdown_table(["loop", "samples/s, typical step", "samples/s, epoch mean"],
                         [["visiontrain train", summary["visiontrain_step_rate"], summary["visiontrain_mean_rate"]],
                          ["hand-written", summary["hand_loop_step_rate"], summary["hand_loop_mean_rate"]]]))
    print(f"\nvisiontrain / hand-written: typical step {ratios['step_ratio']:.3f}, epoch mean "
          f"{ratios['epoch_ratio']:.3f} (goal >= 0.95)")
    write_results(args.json, " ".join(["python", *sys.argv]),
                  {"settings": vars(args) | {"data": str(args.data), "json": str(args.json)}, "runs": runs,
                   "median": summary, "ratios": ratios})


if __name__ == "__main__":
    main()
