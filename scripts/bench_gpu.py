"""GPU training throughput: `visiontrain train trainer=gpu` against timm's own train.py, and GPU utilisation.

Needs a CUDA GPU and a checkout of timm's training script matching the installed timm (train.py is not in the
timm wheel): ``git clone --branch v$(python -c "import timm; print(timm.__version__)") \
https://github.com/huggingface/pytorch-image-models``. Both sides train resnet50 from scratch at 224 px with
bf16 autocast and channels_last (``--compile`` adds torch.compile to both), the same batch size and workers, on
the same ImageFolder: the hymenoptera photos replicated ``--replicate`` times (hard links) so an epoch is long
enough to reach a steady state. GPU utilisation is sampled with nvidia-smi every 200 ms while each side trains.

visiontrain's images/s are from its history.csv (training batches only); timm's from the running average it
prints on the last log line of each epoch (the epoch's mean rate). Both skip their first epoch; medians; ratio per
repeat, then the median. On the device machine, `scripts/device_check.sh` runs this with the copy of train.py and
the photos that `scripts/device/prepare.py` packed.

    .venv/bin/python scripts/bench_gpu.py --timm-train ../shared/peers/timm/train.py \
        --json benchmarks/gpu.json [--compile]

``--device cpu`` (with a tiny ``--model`` and ``--img-size``) rehearses the script on a machine without a GPU:
both trainers run and both logs are parsed, so the command lines and the log formats are tested; its figures mean
nothing.
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

# timm train.py, per log interval: "Train: <epoch> [ idx/updates (pct%)]  Loss: ...  Time: <last>s, <rate>/s
# (<mean>s, <mean rate>/s)  LR: ...": the parenthesised pair is the running mean since the epoch began.
_TIMM_LINE = re.compile(r"Train: (\d+) \[.*?Time: [\d.]+s,\s*[\d.]+/s\s+\(\s*[\d.]+s,\s*([\d.]+)/s\)")


# Every layer trains from the first step, as in timm's train.py. The experiment's own schedule values (5 frozen
# epochs, backbone LR x 0.1) outrank the `schedule=` group choice, so they are reset key by key.
DEFAULT_WORKERS = min(16, os.cpu_count() or 1)  # both trainers' loader workers, as timm's examples use

FULL_FINETUNE = ("schedule=full_finetune",)  # timm's train.py trains every layer at one rate from the first step


def timm_epoch_rates(log: str) -> dict[int, float]:
    """Epoch -> mean images/s over that epoch's training steps (the last log line of each epoch)."""
    return {int(epoch): float(rate) for epoch, rate in _TIMM_LINE.findall(log)}


def replicated_folder(source: Path, target: Path, copies: int) -> Path:
    """``source``'s photos, each ``copies`` times in train/ (once in val/), as hard links: no disk, no decode cost.

    Where ``target`` is on another filesystem than ``source`` (a temporary folder on tmpfs), each photo is copied
    once and the other copies link to that copy.
    """
    for split in ("train", "val"):
        for path in sorted((source / split).rglob("*")):
            if path.is_file() and path.suffix.lower() in (".jpg", ".jpeg", ".png"):
                folder = target / split / path.parent.name
                folder.mkdir(parents=True, exist_ok=True)
                first = folder / f"000_{path.name}"
                try:
                    os.link(path, first)
                except OSError:  # EXDEV: another filesystem
                    shutil.copy2(path, first)
                for copy in range(1, copies if split == "train" else 1):
                    os.link(first, folder / f"{copy:03d}_{path.name}")
    return target


class UtilisationSampler:
    """nvidia-smi's utilisation.gpu every 200 ms while a command runs."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> "UtilisationSampler":
        if shutil.which("nvidia-smi") is None:  # a rehearsal on a machine without a GPU: no samples, busy() is NaN
            return self
        self._process = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                          "-lms", "200"], stdout=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        for line in self._process.stdout:
            if line.strip().isdigit():
                self.samples.append(float(line))

    def __exit__(self, *exc) -> None:
        if self._process is not None:
            self._process.terminate()

    def busy(self) -> float:
        """Median utilisation over the middle 80% of the samples (start-up and shutdown left out)."""
        trimmed = self.samples[len(self.samples) // 10: max(1, len(self.samples) * 9 // 10)]
        return median(trimmed) if trimmed else float("nan")


def _run(name: str, command: list[str], args: argparse.Namespace) -> tuple[str, float]:
    """Run one trainer with the GPU sampled; its whole log is kept under --logs when given."""
    with UtilisationSampler() as sampler:
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            raise SystemExit(f"{name} ran past --timeout {args.timeout:.0f} s") from None
    log = result.stdout + result.stderr
    if args.logs is not None:
        args.logs.mkdir(parents=True, exist_ok=True)
        with (args.logs / f"{name}.log").open("a") as handle:
            handle.write(f"$ {' '.join(command)}\n{log}\n")
    if result.returncode != 0:
        raise SystemExit(f"{name} failed (exit {result.returncode}):\n{log[-3000:]}")
    return log, sampler.busy()


def visiontrain_overrides(data: Path, args: argparse.Namespace, run_dir: Path) -> list[str]:
    """visiontrain's side of the comparison, as `visiontrain train` overrides (the device check validates them)."""
    trainer = "trainer=gpu" if args.device == "cuda" else "trainer=cpu"
    return ["experiment=hymenoptera", f"data.root={data}", f"model.backbone={args.model}", "model.weights=null",
            *FULL_FINETUNE, trainer, "trainer.precision=bf16-mixed", "trainer.channels_last=true",
            f"model.input.image_size={args.img_size}", f"trainer.compile={str(args.compile).lower()}",
            f"data.batch_size={args.batch_size}", f"data.num_workers={args.workers}",
            f"trainer.max_epochs={args.epochs}", "export.onnx=false", "logger=none",
            "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}"]


def run_visiontrain(data: Path, args: argparse.Namespace, scratch: Path) -> tuple[float, float]:
    run_dir = scratch / "visiontrain"
    command = [sys.executable, "-m", "visiontrain", "train", *visiontrain_overrides(data, args, run_dir)]
    _, busy = _run("visiontrain", command, args)
    with (run_dir / "history.csv").open() as handle:
        rates = [float(row["time/train_samples_per_second"]) for row in csv.DictReader(handle)]
    shutil.rmtree(run_dir)
    if len(rates) < 2:
        raise SystemExit(f"visiontrain's history.csv holds {len(rates)} epochs; --epochs must be at least 2")
    return median(rates[1:]), busy


def run_timm(data: Path, args: argparse.Namespace, scratch: Path) -> tuple[float, float]:
    command = [sys.executable, str(args.timm_train), str(data), "--model", args.model, "--num-classes", "2",
               "--img-size", str(args.img_size), "-b", str(args.batch_size), "--amp", "--amp-dtype", "bfloat16",
               "--channels-last", "--epochs", str(args.epochs), "--workers", str(args.workers), "--log-interval",
               "5", "--val-split", "val", "--device", args.device, "--output", str(scratch / "timm")]
    if args.device == "cuda":
        command.append("--pin-mem")
    if args.compile:
        command += ["--torchcompile", "inductor"]
    log, busy = _run("timm", command, args)
    rates = [rate for epoch, rate in timm_epoch_rates(log).items() if epoch > 0]
    if not rates:
        raise SystemExit(f"no throughput lines for epochs after the first in timm's output; its log ends:\n"
                         f"{log[-2000:]}")
    return median(rates), busy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timm-train", type=Path, required=True, help="pytorch-image-models/train.py")
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "hymenoptera")
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: a rehearsal, no figures")
    parser.add_argument("--replicate", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--timeout", type=float, default=None, help="seconds for each trainer's run")
    parser.add_argument("--logs", type=Path, default=None, help="keep both trainers' logs in this folder")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_gpu.py needs a CUDA GPU; none is visible here (--device cpu rehearses it)")
    runs: list[dict[str, float]] = []

    def save(complete: bool) -> None:
        write_results(args.json, " ".join(["python", *sys.argv]), {
            "settings": {k: str(v) for k, v in vars(args).items()}, "runs": runs,
            "ratio": median([r["ratio"] for r in runs]), "complete": complete})

    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        data = replicated_folder(args.data, scratch / "data", args.replicate)
        for index in range(args.repeats):
            ours, ours_busy = run_visiontrain(data, args, scratch)
            theirs, theirs_busy = run_timm(data, args, scratch)
            runs.append({"visiontrain": ours, "timm": theirs, "ratio": ours / theirs,
                         "visiontrain_gpu_busy": ours_busy, "timm_gpu_busy": theirs_busy})
            print(f"repeat {index + 1}: {runs[-1]}", flush=True)
            if index + 1 < args.repeats:  # a run cut short still leaves the repeats it finished
                save(complete=False)
    table = [[name, median([r[name] for r in runs]), median([r[f"{name}_gpu_busy"] for r in runs])]
             for name in ("visiontrain", "timm")]
    print(markdown_table(["trainer", "images/s", "GPU busy %"], table))
    ratio = median([r["ratio"] for r in runs])
    where = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU (a rehearsal: these figures mean nothing)"
    print(f"\nvisiontrain / timm train.py = {ratio:.3f} (goal >= 1.0); on {where}")
    save(complete=True)


if __name__ == "__main__":
    main()
