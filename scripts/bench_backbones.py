"""Backbones side by side: what each costs to train and to deploy, and how accurate it was, in one table.

For each timm backbone (random weights: no figure here depends on them), at its pretrained input size from
``timm.data.resolve_model_data_config`` or at ``--img-size``, with a ``--num-classes`` head (2: hymenoptera):

- parameters (millions) and GFLOPs at batch 1. GFLOPs = 2 x multiply-accumulates, as counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products; normalisation, activations
  and pooling are not counted), the convention Ultralytics and fvcore-style tables quote as FLOPs;
- ONNX file size (MiB) of the float32 file (the project's ``export_onnx``) and of its static int8 copy (the
  project's ``quantize_int8``), calibrated on a few real images: crops of scikit-learn's two sample photos,
  or the images under ``--images DIR``, through the deploy side's eval preprocessing;
- onnxruntime latency at batch 1 (median ms of ``--repeats`` calls) and throughput at batch 32 (images/s from
  the median of max(3, repeats / 10) calls), float32 and int8, on ``--threads`` threads, after a warm-up call;
- training images/s on CPU: forward, cross-entropy, backward and an AdamW step at batch ``--train-batch``,
  from the median of ``--train-steps`` steps after one warm-up step, on ``--threads`` torch threads;
- hymenoptera validation accuracy where known, from ``--accuracy FILE`` (JSON: backbone ->
  {"val_acc": ..., "weights": ..., "note": ...}); blank otherwise.

A backbone that fails (unknown name, export or quantisation error) becomes a row with its error and whatever
was measured before it. Every row records the timm, torch and onnxruntime versions, the CPU and the threads.

    .venv/bin/python scripts/bench_backbones.py --accuracy benchmarks/backbone_accuracy.json \
        --out benchmarks/backbones.json --markdown benchmarks/backbones.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from benchlib import machine, markdown_table, median, timed, write_results
from PIL import Image

from visiontrain.core.files import list_images
from visiontrain.core.image_decode import decode
from visiontrain.core.image_preprocess import INTERPOLATIONS, ImageSpec, preprocess, resize_to_for
from visiontrain.errors import ImageRejected

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BACKBONES = ("tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2", "resnet18",
                     "resnet50", "mobilenetv3_large_100", "convnext_nano")
FLOPS_CONVENTION = ("GFLOPs = 2 x multiply-accumulates (torch.utils.flop_counter.FlopCounterMode: "
                    "convolutions and matrix products), batch 1")
CALIBRATION_LIMIT = 16  # images taken from --images DIR; min-max calibration needs few, file sizes need none
MEASURES = ("params_m", "gflops", "onnx_float_mib", "onnx_int8_mib", "float_batch1_ms", "int8_batch1_ms",
            "float_batch32_images_per_s", "int8_batch32_images_per_s", "train_images_per_s")
COLUMNS = {  # JSON key -> Markdown header, in table order
    "backbone": "backbone", "image_size": "px", "params_m": "params (M)", "gflops": "GFLOPs",
    "onnx_float_mib": "ONNX MiB fp32", "onnx_int8_mib": "ONNX MiB int8", "float_batch1_ms": "fp32 ms (b1)",
    "int8_batch1_ms": "int8 ms (b1)", "float_batch32_images_per_s": "fp32 img/s (b32)",
    "int8_batch32_images_per_s": "int8 img/s (b32)", "train_images_per_s": "train img/s",
    "val_acc": "hymenoptera val acc", "notes": "notes"}


# ----- the model and its input ------------------------------------------------------------------------------
def create_model(name: str, num_classes: int) -> torch.nn.Module:
    """timm's model with random weights and a ``num_classes`` head; an unknown name says what timm knows."""
    import timm

    from visiontrain.image.backbone import check_backbone_name

    check_backbone_name(name)
    return timm.create_model(name, pretrained=False, num_classes=num_classes).eval()


def image_spec(model: torch.nn.Module, image_size: int | None) -> ImageSpec:
    """The deploy side's eval transform for ``model``: timm's data config, at ``image_size`` if given."""
    import timm

    config = timm.data.resolve_model_data_config(model)
    size = image_size or int(config["input_size"][-1])
    interpolation = config["interpolation"] if config["interpolation"] in INTERPOLATIONS else "bilinear"
    return ImageSpec(height=size, width=size, mean=tuple(config["mean"]), std=tuple(config["std"]),
                     resize_to=resize_to_for(size, config["crop_pct"]), interpolation=interpolation)


def calibration_pictures(folder: Path | None) -> list[Image.Image]:
    """Real photos for int8 calibration: up to 16 from ``folder``, else crops of scikit-learn's samples."""
    if folder is not None:
        pictures = []
        files, _ = list_images(folder)  # (files to try, entries skipped and why)
        for path in files:
            try:
                pictures.append(decode(path).image)
            except ImageRejected:
                continue
            if len(pictures) == CALIBRATION_LIMIT:
                break
        if not pictures:
            raise SystemExit(f"--images {folder}: no readable images there")
        return pictures
    from sklearn.datasets import load_sample_images

    pictures = []
    for pixels in load_sample_images().images:  # two 427 x 640 photos: whole, centre, four corners
        height, width = pixels.shape[:2]
        h, w = 2 * height // 3, 2 * width // 3
        windows = [(0, 0, height, width), (height // 4, width // 4, height // 2, width // 2),
                   (0, 0, h, w), (0, width - w, h, w), (height - h, 0, h, w), (height - h, width - w, h, w)]
        pictures += [Image.fromarray(pixels[top:top + hh, left:left + ww]) for top, left, hh, ww in windows]
    return pictures


def model_inputs(pictures: list[Image.Image], spec: ImageSpec) -> np.ndarray:
    """(N, 3, H, W) float32, exactly what deployment feeds the model."""
    table = spec.lookup_table()
    return np.stack([preprocess(picture, spec, table) for picture in pictures])


# ----- the measures ---------------------------------------------------------------------------------------
def parameters_millions(model: torch.nn.Module) -> float:
    return round(sum(p.numel() for p in model.parameters()) / 1e6, 3)


def gflops(model: torch.nn.Module, image_size: int) -> float:
    """FlopCounterMode's total (2 FLOPs per multiply-accumulate) for one image, in billions."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, image_size, image_size))
    return round(counter.get_total_flops() / 1e9, 3)


def export_both(model: torch.nn.Module, name: str, spec: ImageSpec, calibration: np.ndarray,
                folder: Path) -> tuple[Path, Path]:
    """``<name>.onnx`` (float32, the project's exporter) and ``<name>.int8.onnx`` (its quantiser)."""
    from visiontrain.core.model_metadata import ModelMetadata
    from visiontrain.export.onnx_export import export_onnx
    from visiontrain.export.quantize import quantize_int8

    metadata = ModelMetadata(task="image_classification", backbone=name, input_name="image",
                             input_size=[3, spec.height, spec.width], mean=list(spec.mean), std=list(spec.std),
                             resize_to=spec.resize_to, interpolation=spec.interpolation,
                             extra={"note": "random weights, written by scripts/bench_backbones.py for cost figures"})
    float_path = export_onnx(model, folder / f"{name}.onnx", spec.height, metadata)
    return float_path, quantize_int8(float_path, folder / f"{name}.int8.onnx", calibration)


def mebibytes(path: Path) -> float:
    return round(path.stat().st_size / 2**20, 2)


def median_seconds(function: Callable[[], Any], calls: int) -> float:
    """Median wall time of ``calls`` calls, after one warm-up call (allocations, kernel selection)."""
    function()
    return median([timed(function) for _ in range(calls)])


def onnxruntime_speed(path: Path, image_size: int, threads: int, repeats: int) -> dict[str, float]:
    """Batch-1 latency (median ms of ``repeats`` calls) and batch-32 throughput (images/s)."""
    from visiontrain.inference.onnx_model import OnnxModel

    session = OnnxModel(path, threads=threads).session
    generator = np.random.default_rng(0)
    one, many = (generator.standard_normal((b, 3, image_size, image_size), dtype=np.float32) for b in (1, 32))
    latency = median_seconds(lambda: session.run(["logits"], {"image": one}), repeats)
    batch = median_seconds(lambda: session.run(["logits"], {"image": many}), max(3, repeats // 10))
    return {"batch1_ms": round(1000 * latency, 3), "batch32_images_per_s": round(32 / batch, 1)}


def training_images_per_second(model: torch.nn.Module, image_size: int, num_classes: int, batch: int,
                               steps: int) -> float:
    """Forward, loss, backward and an AdamW step on CPU; batch / the median step after one warm-up step."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, image_size, image_size, generator=generator)
    labels = torch.randint(0, num_classes, (batch,), generator=generator)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    criterion = torch.nn.CrossEntropyLoss()
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        criterion(model(images), labels).backward()
        optimizer.step()

    seconds = median_seconds(step, steps)
    model.eval()
    return round(batch / seconds, 2)


def accuracy_columns(name: str, accuracy: dict[str, Any]) -> dict[str, Any]:
    """The backbone's entry of the ``--accuracy`` file, blank where it has none."""
    entry = accuracy.get(name) or {}
    return {"val_acc": entry.get("val_acc"), "accuracy_weights": entry.get("weights"),
            "accuracy_note": entry.get("note")}


def read_accuracy(path: Path | None) -> dict[str, Any]:
    """``--accuracy FILE``: a JSON object, backbone name -> {"val_acc", "weights", "note"}."""
    if path is None:
        return {}
    try:
        table = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise SystemExit(f"--accuracy {path}: cannot read it as JSON ({error})") from None
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise SystemExit(f'--accuracy {path}: expected {{"<backbone>": {{"val_acc": 0.93, "weights": "...", '
                         f'"note": "..."}}, ...}}')
    return table


# ----- one row per backbone -------------------------------------------------------------------------------
def bench_backbone(name: str, args: argparse.Namespace, pictures: list[Image.Image]) -> dict[str, Any]:
    """Every measure for one backbone; on failure the row keeps what was measured and says what broke."""
    row: dict[str, Any] = {"backbone": name, "image_size": args.img_size, **dict.fromkeys(MEASURES),
                           "train_batch": args.train_batch, "threads": args.threads, "error": None}
    try:
        model = create_model(name, args.num_classes)
        spec = image_spec(model, args.img_size)
        size = row["image_size"] = spec.height
        row.update(params_m=parameters_millions(model), gflops=gflops(model, size))
        with tempfile.TemporaryDirectory() as scratch:
            calibration = model_inputs(pictures, spec)
            float_path, int8_path = export_both(model, name, spec, calibration, Path(scratch))
            row.update(onnx_float_mib=mebibytes(float_path), onnx_int8_mib=mebibytes(int8_path))
            for kind, path in (("float", float_path), ("int8", int8_path)):
                speed = onnxruntime_speed(path, size, args.threads, args.repeats)
                row.update({f"{kind}_batch1_ms": speed["batch1_ms"],
                            f"{kind}_batch32_images_per_s": speed["batch32_images_per_s"]})
        row["train_images_per_s"] = training_images_per_second(model, size, args.num_classes,
                                                               args.train_batch, args.train_steps)
    except Exception as error:  # noqa: BLE001 - any failure is this backbone's row, not the end of the run
        row["error"] = " ".join(f"{type(error).__name__}: {error}".split())  # one line, for the table
    return row


def row_environment() -> dict[str, Any]:
    """The versions and machine each row carries, so rows from several runs can share one table."""
    info = machine()
    return {"timm": info.get("timm"), "torch": info.get("torch"), "onnxruntime": info.get("onnxruntime"),
            "machine": f"{info['cpu']}, {info['cores']} cores"}


def markdown(rows: list[dict[str, Any]]) -> str:
    def notes(row: dict[str, Any]) -> str:
        text = f"error: {row['error']}" if row["error"] else (row["accuracy_note"] or "")
        return " ".join(str(text).split())[:200].replace("|", "/")

    cells = [["" if row.get(key) is None else row[key] for key in COLUMNS if key != "notes"] + [notes(row)]
             for row in rows]
    return markdown_table(list(COLUMNS.values()), cells)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=list(DEFAULT_BACKBONES), metavar="NAME")
    parser.add_argument("--img-size", type=int, default=None, help="one input size for all (default: each "
                        "backbone's pretrained size)")
    parser.add_argument("--num-classes", type=int, default=2, help="classifier head size (2: hymenoptera)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="onnxruntime intra-op and torch threads (default: all cores)")
    parser.add_argument("--repeats", type=int, default=50, help="onnxruntime calls at batch 1")
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--train-steps", type=int, default=5, help="timed training steps, after one warm-up")
    parser.add_argument("--images", type=Path, default=None,
                        help="calibration images (default: crops of scikit-learn's sample images)")
    parser.add_argument("--accuracy", type=Path, default=None,
                        help="JSON: backbone -> {val_acc, weights, note}")
    parser.add_argument("--out", "--json", type=Path, default=REPO / "benchmarks" / "backbones.json")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    for flag in ("threads", "repeats", "train_batch", "train_steps", "num_classes"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    accuracy, environment = read_accuracy(args.accuracy), row_environment()
    pictures, rows = calibration_pictures(args.images), []
    for name in args.backbones:
        started = time.perf_counter()
        measured = bench_backbone(name, args, pictures)
        rows.append({**measured, **accuracy_columns(name, accuracy), **environment})
        status = f"error: {rows[-1]['error']}" if rows[-1]["error"] else "done"
        print(f"{name}: {status} ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    table = markdown(rows)
    print(f"\n{FLOPS_CONVENTION}; medians; {args.threads} threads; {environment['machine']}; timm "
          f"{environment['timm']}, torch {environment['torch']}, onnxruntime {environment['onnxruntime']}\n")
    print(table)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table + "\n")
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    write_results(args.out, " ".join(["python", *sys.argv]),
                  {"settings": settings, "flops_convention": FLOPS_CONVENTION,
                   "calibration_images": len(pictures), "rows": rows})


if __name__ == "__main__":
    main()
