"""``visiontrain predict model=<file.onnx> input=<image | folder | manifest | table>``: ONNX predictions.

The machinery (inputs, decoding, batches, the output files) is :mod:`visiontrain.deploy.predict`; this is the
command: its typed options in, the counts and file paths out. onnxruntime only, never torch.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from visiontrain.config.commands import PredictOptions
from visiontrain.deploy.predict import (
    decode_threads,
    image_inputs,
    is_manifest,
    predict_images,
    predict_table,
    write_records,
)
from visiontrain.errors import ConfigError
from visiontrain.inference.onnx_model import IMAGE, open_model


def predict(options: PredictOptions, run_dir: Path) -> dict[str, Any]:
    """Predict on ``options.input`` and write predictions and rejects (``in = predicted + rejected``); returns the
    counts and file paths. ``run_dir``: where the output goes when ``output`` is unset."""
    started = time.perf_counter()
    limit = options.pixel_limit
    model = open_model(options.model, threads=options.threads, providers=options.providers)
    print(model.providers_line, flush=True)
    source = Path(options.input).expanduser()
    if not source.exists():  # the CLI's check skips a URL: nothing here reads one
        raise ConfigError("input", f"{source} does not exist",
                          "input=<an image, image folder, image manifest or table file>")
    output = Path(options.output).expanduser() if options.output else run_dir / "predictions.csv"
    if options.split is not None and (model.kind != IMAGE or not is_manifest(source)):
        raise ConfigError("split", f"chooses rows of an image manifest (a .csv of path,label,split); "
                          f"{source.name} is not one", "split=null")
    if model.kind == IMAGE:
        inputs, skipped = image_inputs(source, model, options.split, options.allow_outside_root)
        predictions, rejects = predict_images(model, inputs, skipped, options.batch_size, options.top_k,
                                              options.progress, decode_threads(options.decode_threads), limit)
    else:
        predictions, rejects = predict_table(model, source, options.batch_size, options.id_columns,
                                             options.progress)
    rejects_path = output.with_name(f"{output.stem}_rejects{output.suffix}")
    key = "path" if model.kind == IMAGE else "row"  # the columns an empty file still gets
    write_records(output, predictions, fields=[key])
    write_records(rejects_path, rejects, fields=list(rejects[0]) if rejects else [key, "reason"])
    summary = {"in": len(predictions) + len(rejects), "predicted": len(predictions), "rejected": len(rejects),
               "output": str(output), "rejects": str(rejects_path),
               "model_version": f"sha256:{model.version}", "seconds": round(time.perf_counter() - started, 3)}
    unit = "files" if model.kind == IMAGE else "rows"
    print(f"visiontrain predict: {summary['in']} {unit} in = {summary['predicted']} predicted + "
          f"{summary['rejected']} rejected in {summary['seconds']:.1f} s\n"
          f"  predictions  {output}\n  rejects      {rejects_path}", flush=True)
    return summary
