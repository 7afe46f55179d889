"""CPU training and inference knobs, measured: NHWC, torch.compile (inductor), torch and onnxruntime threads.

Three parts, each its own table, every figure a median measured in this run:

- ``steps``: training images/s of one step (forward, cross-entropy, backward, AdamW) per backbone at its size,
  for NCHW and NHWC memory layouts, eager and ``torch.compile``d, on ``--threads`` torch threads (and on 1, for
  the first backbone). Compile time (the first compiled step less an eager step) is reported separately: a
  short run pays it once per process.
- ``jobs``: the default job (``visiontrain train``, each run a fresh process with fresh caches, as
  ``bench_default_job.py`` runs it) as it ships and with one knob changed: ``trainer.compile=true``, one torch
  thread (``OMP_NUM_THREADS=1``), loader workers 0 and 2 (``auto`` is 1 on 2 cores), NCHW.
- ``onnx``: onnxruntime batch-1 latency and batch-32 throughput per intra-op thread count (0 is onnxruntime's
  default: one per core) for the default job's model size and EfficientNet-Lite0 at 224 px.

    .venv/bin/python scripts/bench_cpu_knobs.py --json benchmarks/cpu_knobs.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from bench_backbones import create_model, median_seconds, onnxruntime_speed
from bench_default_job import run_once
from benchlib import markdown_table, median, timed, write_results

STEP_BACKBONES = (("tf_efficientnet_lite0", 64), ("tf_efficientnet_lite0", 224), ("resnet18", 224),
                  ("mobilenetv3_large_100", 224))
JOB_VARIANTS: dict[str, tuple[list[str], dict[str, str]]] = {  # name -> (overrides, environment)
    "as shipped (NHWC, 2 threads, 1 worker)": ([], {}),
    "trainer.compile=true": (["trainer.compile=true"], {}),
    "OMP_NUM_THREADS=1": ([], {"OMP_NUM_THREADS": "1"}),
    "data.num_workers=0": (["data.num_workers=0"], {}),
    "data.num_workers=2": (["data.num_workers=2"], {}),
    "trainer.channels_last=false": (["trainer.channels_last=false"], {}),
}


def backbone_at_size(text: str) -> tuple[str, int]:
    name, _, size = text.partition("@")
    return name, int(size or 224)


def training_step_speed(name: str, image_size: int, channels_last: bool, compiled: bool, batch: int,
                        steps: int) -> dict[str, float]:
    """Images/s of the median training step, and the seconds the first (compiling) step took beyond it."""
    model = create_model(name, num_classes=10).train()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    forward = torch.compile(model) if compiled else model
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, image_size, image_size, generator=generator).to(memory_format=memory_format)
    labels = torch.randint(0, 10, (batch,), generator=generator)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    criterion = torch.nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        criterion(forward(images), labels).backward()
        optimizer.step()

    first = timed(step)  # the first call: compilation, allocations
    seconds = median_seconds(step, steps)
    return {"images_per_s": round(batch / seconds, 2), "first_step_extra_s": round(first - seconds, 2)}


def bench_steps(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for index, (name, size) in enumerate(args.backbones):
        thread_counts = (args.threads, 1) if index == 0 and args.threads != 1 else (args.threads,)
        for threads in thread_counts:
            torch.set_num_threads(threads)
            for channels_last in (False, True):
                for compiled in (False, True):
                    row = {"backbone": name, "image_size": size, "threads": threads,
                           "layout": "NHWC" if channels_last else "NCHW", "compiled": compiled}
                    try:
                        row.update(training_step_speed(name, size, channels_last, compiled, args.batch, args.steps))
                    except Exception as error:  # a backbone inductor cannot compile is a row, not a crash
                        row["error"] = f"{type(error).__name__}: {str(error)[:200]}"
                    print(row, flush=True)
                    rows.append(row)
    torch.set_num_threads(args.threads)
    return rows


def bench_jobs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each variant ``--job-repeats`` times, interleaved (variant A, B, ..., A, B, ...) so drift hits all alike."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in JOB_VARIANTS}
    for _ in range(args.job_repeats):
        for name, (overrides, environment) in JOB_VARIANTS.items():
            previous = {key: os.environ.get(key) for key in environment}
            os.environ.update(environment)
            try:
                runs[name].append(run_once(overrides))
            finally:
                for key, value in previous.items():
                    os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
            print(name, {k: runs[name][-1][k] for k in ("fit_seconds", "wall_seconds", "val_acc")}, flush=True)
    baseline = list(JOB_VARIANTS)[0]
    rows = []
    for name, variant_runs in runs.items():
        ratios = [run["fit_seconds"] / base["fit_seconds"] for run, base in zip(variant_runs, runs[baseline])]
        rows.append({"variant": name, "fit_seconds": median([r["fit_seconds"] for r in variant_runs]),
                     "wall_seconds": median([r["wall_seconds"] for r in variant_runs]),
                     "val_acc": median([r["val_acc"] for r in variant_runs]),
                     "fit_ratio_to_shipped": round(median(ratios), 3), "runs": variant_runs})
    return rows


def bench_onnx(args: argparse.Namespace) -> list[dict[str, Any]]:
    from bench_backbones import calibration_pictures, export_both, image_spec, model_inputs

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, size in (("tf_efficientnet_lite0", 64), ("tf_efficientnet_lite0", 224)):
            model = create_model(name, num_classes=10)
            spec = image_spec(model, size)
            calibration = model_inputs(calibration_pictures(None), spec)
            float_path, _ = export_both(model, f"{name}_{size}", spec, calibration, Path(folder))
            for threads in (0, 1, 2):
                row = {"backbone": name, "image_size": size, "intra_op_threads": threads,
                       **onnxruntime_speed(float_path, size, threads, args.onnx_repeats)}
                print(row, flush=True)
                rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["steps", "jobs", "onnx"], choices=["steps", "jobs", "onnx"])
    parser.add_argument("--backbones", nargs="+", type=backbone_at_size, default=list(STEP_BACKBONES),
                        metavar="NAME@PX", help="the steps part's backbones, e.g. tf_efficientnet_lite0@64")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per configuration")
    parser.add_argument("--job-repeats", type=int, default=2)
    parser.add_argument("--onnx-repeats", type=int, default=50)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    if "steps" in args.parts:
        results["steps"] = bench_steps(args)
        print(markdown_table(["backbone", "px", "threads", "layout", "compiled", "img/s", "compile s"],
                             [[r["backbone"], r["image_size"], r["threads"], r["layout"], r["compiled"],
                               r.get("images_per_s", r.get("error")), r.get("first_step_extra_s", "")]
                              for r in results["steps"]]))
    if "onnx" in args.parts:
        results["onnx"] = bench_onnx(args)
        print(markdown_table(["backbone", "px", "intra-op threads", "ms (b1)", "img/s (b32)"],
                             [[r["backbone"], r["image_size"], r["intra_op_threads"], r["batch1_ms"],
                               r["batch32_images_per_s"]] for r in results["onnx"]]))
    if "jobs" in args.parts:
        results["jobs"] = bench_jobs(args)
        print(markdown_table(["variant", "fit s", "wall s", "val acc", "fit / shipped"],
                             [[r["variant"], r["fit_seconds"], r["wall_seconds"], r["val_acc"],
                               r["fit_ratio_to_shipped"]] for r in results["jobs"]]))
    write_results(args.json, " ".join([Path(sys.executable).name, *sys.argv]), results)


if __name__ == "__main__":
    main()
