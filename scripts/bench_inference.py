"""Inference: onnxruntime (float and int8) against PyTorch eager on the same trained model, batch 1 and 32.

For each checkpoint the script runs the real `visiontrain export ckpt=... quantize=int8` (float ONNX, parity
check, int8 file calibrated on training images and scored on the validation images), then times, on the
same random-normal input and with each engine's default threads (all cores):

- PyTorch eager: the checkpoint's model in eval mode under ``torch.inference_mode``;
- onnxruntime float32 and int8: ``visiontrain.inference.onnx_model.OnnxModel``, what `predict` and `serve` use.

Latency at batch 1 (median of ``--calls`` calls) and throughput at batch 32; engines interleaved per repeat,
after warm-up. Ratios per repeat, then their median.

    .venv/bin/python scripts/bench_inference.py --ckpt <run>/checkpoints/best.ckpt [--ckpt ...] \
        --json benchmarks/inference.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from benchlib import markdown_table, median, write_results


def export_with_int8(ckpt: Path, out_dir: Path) -> dict:
    command = [sys.executable, "-m", "visiontrain", "export", f"ckpt={ckpt}", "quantize=int8",
               f"output={out_dir / 'model.onnx'}", f"hydra.run.dir={out_dir}"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"export failed:\n{result.stderr[-3000:]}")
    return json.loads((out_dir / "export.json").read_text())


def per_call_ms(function, inputs, calls: int) -> float:
    function(inputs)  # warm-up: allocations, kernel selection
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        function(inputs)
        times.append((time.perf_counter() - started) * 1000)
    return median(times)


def bench_checkpoint(ckpt: Path, repeats: int, calls: int) -> dict:
    from visiontrain.image.classifier import load_classifier
    from visiontrain.inference.onnx_model import OnnxModel

    with tempfile.TemporaryDirectory() as scratch:
        exported = export_with_int8(ckpt, Path(scratch))
        module = load_classifier(ckpt).eval()
        size = int(module.hparams.input_spec["image_size"])
        model = module.model

        def eager(batch: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return model(torch.from_numpy(batch)).numpy()

        engines = {"pytorch eager": eager}
        for name, path in (("onnxruntime float32", exported["onnx"]), ("onnxruntime int8", exported["int8"]["onnx"])):
            session = OnnxModel(path).session
            input_name = session.get_inputs()[0].name
            engines[name] = lambda batch, s=session, n=input_name: s.run(["logits"], {n: batch})[0]
        generator = np.random.default_rng(0)
        batches = {b: generator.standard_normal((b, 3, size, size), dtype=np.float32) for b in (1, 32)}
        runs = []
        for _ in range(repeats):
            run = {}
            for name, function in engines.items():
                latency = per_call_ms(function, batches[1], calls)
                batch_ms = per_call_ms(function, batches[32], max(3, calls // 10))
                run[name] = {"batch1_ms": latency, "batch32_images_per_s": 32000 / batch_ms}
            runs.append(run)
    summary = {name: {key: median([r[name][key] for r in runs]) for key in ("batch1_ms", "batch32_images_per_s")}
               for name in engines}
    ratios = {name: {"batch1_speedup": median([r["pytorch eager"]["batch1_ms"] / r[name]["batch1_ms"] for r in runs]),
                     "batch32_speedup": median([r[name]["batch32_images_per_s"] / r["pytorch eager"]
                                                ["batch32_images_per_s"] for r in runs])}
              for name in engines}
    return {"checkpoint": str(ckpt), "backbone": module.hparams.backbone, "image_size": size, "runs": runs,
            "median": summary, "speedup_vs_eager": ratios,
            "int8": {k: v for k, v in exported["int8"].items() if k != "onnx"},
            "parity": exported["parity"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, action="append", required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = [bench_checkpoint(ckpt, args.repeats, args.calls) for ckpt in args.ckpt]
    rows = []
    for r in results:
        for name, values in r["median"].items():
            speed = r["speedup_vs_eager"][name]
            rows.append([f"{r['backbone']} {r['image_size']} px", name, values["batch1_ms"], speed["batch1_speedup"],
                         values["batch32_images_per_s"], speed["batch32_speedup"]])
    print(markdown_table(["model", "engine", "batch 1 ms", "x eager", "batch 32 img/s", "x eager"], rows))
    for r in results:
        q = r["int8"]
        print(f"\n{r['backbone']} {r['image_size']} px int8: {q['int8_mib']} MiB vs {q['float_mib']} MiB, top-1 "
              f"agreement {q['top1_agreement']:.2%} on {q['images']} validation images, accuracy "
              f"{q['float_accuracy']:.4f} -> {q['int8_accuracy']:.4f} ({q['accuracy_change']:+.4f})")
    write_results(args.json, " ".join(["python", *sys.argv]), {"results": results})


if __name__ == "__main__":
    main()
