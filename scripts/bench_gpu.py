"""GPU training throughput: `visiontrain train trainer=gpu` against timm's own train.py, and GPU utilisation.

Needs a CUDA GPU and a checkout of timm's training script matching the installed timm (train.py is not in the
timm wheel): ``git clone --branch v$(python -c "import timm; print(timm.__version__)") \
https://github.com/huggingface/pytorch-image-models``. Both sides train resnet50 from scratch at 224 px with
bf16 autocast and channels_last (``--compile`` adds torch.compile to both), the same batch size and workers, on
the same ImageFolder: the hymenoptera photos replicated ``--replicate`` times (hard links) so an epoch is long
enough to reach a steady state. GPU utilisation is sampled with nvidia-smi every 200 ms while each side trains.

visiontrain's images/s are from its history.csv (training batches only); timm's from the rate it prints per log
interval. Both skip their first epoch; medians; ratio per repeat, then the median.

    .venv/bin/python scripts/bench_gpu.py --timm-train /path/to/pytorch-image-models/train.py \
        --json benchmarks/gpu.json [--compile]
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from benchlib import SHARED_DATA, markdown_table, median, write_results

_TIMM_RATE = re.compile(r"Train: (\d+) .*?\(\s*[\d.]+s,\s*([\d.]+)/s\)")


def replicated_folder(source: Path, target: Path, copies: int) -> Path:
    for split in ("train", "val"):
        for path in sorted((source / split).rglob("*")):
            if path.is_file() and path.suffix.lower() in (".jpg", ".jpeg", ".png"):
                folder = target / split / path.parent.name
                folder.mkdir(parents=True, exist_ok=True)
                for copy in range(copies if split == "train" else 1):
                    os.link(path, folder / f"{copy:03d}_{path.name}")
    return target


class UtilisationSampler:
    """nvidia-smi's utilisation.gpu every 200 ms while a command runs."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> "UtilisationSampler":
        self._process = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                          "-lms", "200"], stdout=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        for line in self._process.stdout:
            if line.strip().isdigit():
                self.samples.append(float(line))

    def __exit__(self, *exc) -> None:
        self._process.terminate()

    def busy(self) -> float:
        """Median utilisation over the middle 80% of the samples (start-up and shutdown left out)."""
        trimmed = self.samples[len(self.samples) // 10: max(1, len(self.samples) * 9 // 10)]
        return median(trimmed) if trimmed else float("nan")


def run_visiontrain(data: Path, args: argparse.Namespace, scratch: Path) -> tuple[float, float]:
    run_dir = scratch / "visiontrain"
    command = [sys.executable, "-m", "visiontrain", "train", "experiment=hymenoptera", f"data.root={data}",
               "model.backbone=resnet50", "model.pretrained=false", "schedule=full_finetune", "trainer=gpu",
               f"trainer.compile={str(args.compile).lower()}", f"data.batch_size={args.batch_size}",
               f"data.num_workers={args.workers}", f"trainer.max_epochs={args.epochs}", "export.onnx=false",
               "logger=none", "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}"]
    with UtilisationSampler() as sampler:
        result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"visiontrain failed:\n{result.stderr[-3000:]}")
    with (run_dir / "history.csv").open() as handle:
        rates = [float(row["time/train_samples_per_second"]) for row in csv.DictReader(handle)]
    shutil.rmtree(run_dir)
    return median(rates[1:]), sampler.busy()


def run_timm(data: Path, args: argparse.Namespace, scratch: Path) -> tuple[float, float]:
    command = [sys.executable, str(args.timm_train), str(data), "--model", "resnet50", "--num-classes", "2",
               "--img-size", "224", "-b", str(args.batch_size), "--amp", "--amp-dtype", "bfloat16", "--channels-last",
               "--epochs", str(args.epochs), "--workers", str(args.workers), "--pin-mem", "--log-interval", "5",
               "--val-split", "val", "--output", str(scratch / "timm")]
    if args.compile:
        command += ["--torchcompile", "inductor"]
    with UtilisationSampler() as sampler:
        result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"timm train.py failed:\n{result.stderr[-3000:]}")
    rates = [float(rate) for epoch, rate in _TIMM_RATE.findall(result.stdout + result.stderr) if int(epoch) > 0]
    if not rates:
        raise SystemExit("no throughput lines found in timm's output; check --log-interval and its log format")
    return median(rates), sampler.busy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timm-train", type=Path, required=True, help="pytorch-image-models/train.py")
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "hymenoptera")
    parser.add_argument("--replicate", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu.py needs a CUDA GPU; none is visible here")
    runs = []
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        data = replicated_folder(args.data, scratch / "data", args.replicate)
        for index in range(args.repeats):
            ours, ours_busy = run_visiontrain(data, args, scratch)
            theirs, theirs_busy = run_timm(data, args, scratch)
            runs.append({"visiontrain": ours, "timm": theirs, "ratio": ours / theirs,
                         "visiontrain_gpu_busy": ours_busy, "timm_gpu_busy": theirs_busy})
            print(f"repeat {index + 1}: {runs[-1]}", flush=True)
    table = [[name, median([r[name] for r in runs]), median([r[f"{name}_gpu_busy"] for r in runs])]
             for name in ("visiontrain", "timm")]
    print(markdown_table(["trainer", "images/s", "GPU busy %"], table))
    ratio = median([r["ratio"] for r in runs])
    print(f"\nvisiontrain / timm train.py = {ratio:.3f} (goal >= 1.0); on {torch.cuda.get_device_name(0)}")
    write_results(args.json, " ".join(["python", *sys.argv]),
                  {"settings": {k: str(v) for k, v in vars(args).items()}, "runs": runs, "ratio": ratio})


if __name__ == "__main__":
    main()
