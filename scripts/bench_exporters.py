"""torch's two ONNX exporters side by side: which one the project's exports should use (issue 29).

Every model is exported twice through the project's own functions (``export_onnx`` for a timm backbone,
``export_tabular_checkpoint`` for the tabular MLP), once with ``torchscript`` (the legacy exporter, deprecated
since torch 2.9) and once with ``dynamo`` (``torch.export``), each at its ``--*-opset``. For each file:

- export success (or the error), export seconds (one call, after a warm-up export of another model), the opset
  written and the file size;
- the batch axis: the graph's input batch dimension must be symbolic (a name, not a number);
- parity with PyTorch eager at batch 1 and at an odd batch (``--odd-batch``, 7) on real pictures (crops of
  scikit-learn's sample photos through the deploy side's preprocessing; table rows for the MLP): max |difference|
  of probabilities and of logits, top-1 agreement, and the project's parity gate (``check_parity``: top-1
  identical and logits within ``--atol``);
- onnxruntime latency at batch 1 (median ms of ``--repeats`` calls) and throughput at batch 32 (from the median
  of max(5, repeats / 4) calls), on ``--threads`` threads, the files of one model taking turns call by call;
- the int8 path: ``quantize_int8`` on that file (calibrated on the pictures), its size, its top-1 agreement with
  the float file on those pictures (``compare_outputs``) and its batch-1 latency.

Before the backbones, the suite's own model (test_resnet at 32 px) is exported with each exporter once cold (the
first export by that exporter in this process) and ``--suite-repeats`` times warm: what an exporter costs the
test suite per export. Random weights throughout, drawn as after training (``trained_like``: batch-norm
statistics measured on the pictures); no figure here depends on their values. On a machine shared with other
work, compare ratios measured in the same run.

    PYTHONPATH=src .venv/bin/python scripts/bench_exporters.py --json benchmarks/exporters.json \
        --markdown benchmarks/exporters.md
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
import torch
from bench_backbones import DEFAULT_BACKBONES, calibration_pictures, create_model, image_spec, mebibytes, model_inputs
from benchlib import machine, markdown_table, median, timed, write_results

from visiontrain.config.choices import EXPORTERS
from visiontrain.core.model_metadata import ModelMetadata

REPO = Path(__file__).resolve().parents[1]
SUITE_MODEL, SUITE_SIZE = "test_resnet", 32  # tests/conftest.py's TINY_BACKBONE, at the size the tests use
NOTE = "random weights, written by scripts/bench_exporters.py for cost figures"
COLUMNS = {  # JSON key -> Markdown header, in table order
    "model": "model", "exporter": "exporter", "size": "px", "export_s": "export s", "opset": "opset",
    "mib": "MiB", "batch_axis": "batch axis", "prob_diff_b1": "max Δp b1", "prob_diff_odd": "max Δp b7",
    "logit_diff_odd": "max Δlogit b7", "logit_max_odd": "max abs logit b7", "top1_agreement": "top-1 agree", "gate_passed": "gate",
    "batch1_ms": "ms b1", "batch32_per_s": "/s b32", "int8_mib": "int8 MiB", "int8_agreement": "int8 agree",
    "int8_batch1_ms": "int8 ms b1", "notes": "notes"}


# ----- what every file is checked for -------------------------------------------------------------------------
def written(path: Path) -> dict[str, Any]:
    """The opset written, the file size and the input's batch dimension: a name, "unnamed" (dynamic, as
    skl2onnx writes a table's columns) or a number (fixed: the file would refuse other batch sizes)."""
    proto = onnx.load(str(path))
    opset = next(entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx"))
    first = proto.graph.input[0].type.tensor_type.shape.dim[0]
    axis = first.dim_param or (first.dim_value if first.HasField("dim_value") else "unnamed")
    return {"opset": opset, "mib": mebibytes(path), "batch_axis": axis,
            "external_data": [p.name for p in path.parent.iterdir() if p.name.startswith(path.name + ".")]}


def probabilities(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def image_parity(path: Path, model: torch.nn.Module, inputs: np.ndarray, odd: int, atol: float) -> dict[str, Any]:
    """Eager against onnxruntime at batch 1 and ``odd``; the project's gate on the odd batch."""
    import onnxruntime as ort

    from visiontrain.export.parity import check_parity

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    found: dict[str, Any] = {}
    agree = []
    for batch, label in ((1, "b1"), (odd, "odd")):
        images = inputs[:batch]
        with torch.no_grad():
            eager = model(torch.from_numpy(images)).numpy()
        logits, probs = session.run(["logits", "probabilities"], {"image": images})
        found[f"prob_diff_{label}"] = float(np.abs(probs - probabilities(eager)).max())
        found[f"logit_diff_{label}"] = float(np.abs(logits - eager).max())
        found[f"logit_max_{label}"] = float(np.abs(eager).max())
        agree += list(logits.argmax(axis=1) == eager.argmax(axis=1))
    found["top1_agreement"] = float(np.mean(agree))
    found["gate_passed"] = check_parity(path, model, torch.from_numpy(inputs[:odd]), atol=atol)["passed"]
    return found


def int8_path_figures(float_path: Path, calibration: np.ndarray) -> dict[str, Any]:
    """The project's int8 path on ``float_path``: the file, its size and its top-1 agreement with the float file."""
    from visiontrain.export.quantize import compare_outputs, quantize_int8

    int8 = quantize_int8(float_path, float_path.with_suffix(".int8.onnx"), calibration)
    return {"int8_file": str(int8), "int8_mib": mebibytes(int8),
            "int8_agreement": compare_outputs(float_path, int8, calibration)["top1_agreement"]}


def interleaved_speed(files: dict[str, Path], feeds: dict[int, dict[str, np.ndarray]],
                      args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Batch-1 latency (median ms of ``--repeats`` calls) and batch-32 throughput (per second, from the median of
    max(5, repeats / 4) calls) of each file, the files taking turns call by call after a warm-up call each, so
    that whatever else the machine runs meanwhile slows them alike."""
    from visiontrain.inference.onnx_model import OnnxModel

    sessions = {key: OnnxModel(path, threads=args.threads).session for key, path in files.items()}
    found: dict[str, dict[str, float]] = {key: {} for key in files}
    for batch, calls in ((1, args.repeats), (32, max(5, args.repeats // 4))):
        runs = {key: (lambda s=session: s.run(None, feeds[batch])) for key, session in sessions.items()}
        for run in runs.values():
            run()
        seconds: dict[str, list[float]] = {key: [] for key in runs}
        for _ in range(calls):
            for key, run in runs.items():
                seconds[key].append(timed(run))
        for key, times in seconds.items():
            found[key]["batch1_ms" if batch == 1 else "batch32_per_s"] = \
                round(1000 * median(times), 3) if batch == 1 else round(32 / median(times), 1)
    return found


def failing_soft(row: dict[str, Any], step: str, work: Callable[[], dict[str, Any]]) -> bool:
    """Run one step into ``row``; a failure is the row's note (with the step), not the end of the run."""
    try:
        row.update(work())
        return True
    except Exception as error:  # noqa: BLE001 - any failure is this row's finding
        text = " ".join(f"{type(error).__name__}: {error}".split())
        row["errors"].append(f"{step}: {text[:300]}")
        return False


# ----- one row per (model, exporter) ---------------------------------------------------------------------------
def metadata(name: str, size: int) -> ModelMetadata:
    return ModelMetadata(task="image_classification", backbone=name, input_name="image",
                         input_size=[3, size, size], extra={"note": NOTE})


def trained_like(model: torch.nn.Module, inputs: np.ndarray) -> torch.nn.Module:
    """Random weights drawn as after training: a head with weights (timm may start it at zero: every logit 0),
    normalisation scales and shifts away from 1 and 0 (timm's zero-init of a block's last norm makes its folded
    convolution all zeros, which the torchscript exporter stores once: a file size no trained model has), and
    batch-norm statistics measured on ``inputs``, as training leaves them (drawn ones compound over 50 layers
    into logits of thousands, where no absolute tolerance means anything)."""
    generator = torch.Generator().manual_seed(1)
    norms = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm, torch.nn.GroupNorm)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, norms) and module.weight is not None:
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0.0, 0.1, generator=generator)
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
                module.momentum = None  # a cumulative average over the batches below
        model.get_classifier().weight.normal_(0.0, 0.5, generator=generator)
        model.train()(torch.from_numpy(inputs))
    return model.eval()


def bench_backbone(name: str, opsets: dict[str, int], args: argparse.Namespace, pictures: list,
                   folder: Path) -> list[dict[str, Any]]:
    """One row per exporter for backbone ``name``; the files are timed taking turns (``interleaved_speed``)."""
    from visiontrain.export.onnx_export import export_onnx

    model = create_model(name, args.num_classes)
    spec = image_spec(model, None)
    size = spec.height
    inputs = model_inputs(pictures, spec)
    model = trained_like(model, inputs)
    rows, files = [], {}
    for exporter in args.exporters:
        row: dict[str, Any] = {"model": name, "exporter": exporter, "size": size, "requested_opset": opsets[exporter],
                               "errors": []}
        rows.append(row)
        path = folder / f"{name}.{exporter}.onnx"
        started = time.perf_counter()
        if not failing_soft(row, "export", lambda: {"file": str(export_onnx(
                model, path, size, metadata(name, size), opset=opsets[exporter], exporter=exporter))}):
            continue
        row["export_s"] = round(time.perf_counter() - started, 2)
        row.update(written(path))
        files[exporter] = path
        failing_soft(row, "parity", lambda: image_parity(path, model, inputs, args.odd_batch, args.atol))
        if failing_soft(row, "int8", lambda: int8_path_figures(path, inputs)):
            files[f"{exporter} int8"] = Path(row.pop("int8_file"))
    generator = np.random.default_rng(0)
    feeds = {b: {"image": generator.standard_normal((b, 3, size, size), dtype=np.float32)} for b in (1, 32)}
    timings = interleaved_speed(files, feeds, args)
    for row in rows:
        row.update(timings.get(row["exporter"], {}))
        row["int8_batch1_ms"] = timings.get(f"{row['exporter']} int8", {}).get("batch1_ms")
    return rows


def churn_like_table(rows: int = 400) -> tuple[Any, Any]:
    """A clean table of three numbers and two categories with a yes/no target, and its declared schema."""
    import pandas as pd

    from visiontrain.config.table_schema import ColumnSpec, TableSchema

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"tenure": rng.integers(0, 72, rows).astype(float), "monthly": rng.uniform(20, 120, rows),
                          "tickets": rng.poisson(1.5, rows).astype(float),
                          "contract": rng.choice(["Month-to-month", "One year", "Two year"], rows),
                          "payment": rng.choice(["Electronic check", "Mailed check", "Card", "Bank"], rows),
                          "churned": rng.choice(["No", "Yes"], rows)})
    columns = {name: ColumnSpec(name, "numeric") for name in ("tenure", "monthly", "tickets")}
    columns.update({name: ColumnSpec(name, "category") for name in ("contract", "payment")})
    return frame, TableSchema(columns=columns, target="churned", task_type="classification",
                              positive_label="Yes", id_columns=())


def bench_tabular(opsets: dict[str, int], args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    """The tabular MLP (random weights) behind a fitted feature pipeline, through ``export_tabular_checkpoint``:
    one row per exporter, parity on held-out rows at batch 1 and the odd batch."""
    from visiontrain.config.tabular import Features
    from visiontrain.export.parity import check_table_parity
    from visiontrain.tabular.export import export_tabular_checkpoint
    from visiontrain.tabular.features import build_feature_pipeline, feature_names, model_inputs, transform
    from visiontrain.tabular.models import TabularMLP
    from visiontrain.tabular.onnx_graph import onnx_feeds

    frame, schema = churn_like_table()
    pipeline = build_feature_pipeline(schema, Features()).fit(model_inputs(frame, schema))
    torch.manual_seed(0)
    module = TabularMLP(len(feature_names(pipeline)), task_type="classification", class_names=["No", "Yes"],
                        feature_names=feature_names(pipeline), feature_pipeline=pipeline).eval()
    feeds = {b: onnx_feeds(model_inputs(frame.iloc[:b], schema), schema.numeric_features,
                           schema.categorical_features) for b in (1, 32)}
    with torch.no_grad():
        expected = module.scores(torch.as_tensor(transform(pipeline, frame.iloc[:1], schema))).double().numpy()
    rows, files = [], {}
    for exporter in args.exporters:
        row: dict[str, Any] = {"model": "tabular MLP (128, 64)", "exporter": exporter, "size": "",
                               "requested_opset": opsets[exporter], "errors": [],
                               "notes": "rows/s at b32; int8 is for image models"}
        rows.append(row)
        path = folder / f"tabular.{exporter}.onnx"
        started = time.perf_counter()
        if not failing_soft(row, "export", lambda: {"parity_odd": export_tabular_checkpoint(
                "bench-exporters-no-checkpoint", path, schema, frame.iloc[:args.odd_batch], args.atol,
                opsets[exporter], None, module=module, exporter=exporter).parity}):
            continue
        row["export_s"] = round(time.perf_counter() - started, 2)
        row.update(written(path))
        files[exporter] = path
        one = check_table_parity(path, feeds[1], expected, True, 0.5, args.atol)
        odd = row.pop("parity_odd")
        row.update(prob_diff_b1=one["max_abs_diff"], prob_diff_odd=odd.max_abs_diff,
                   top1_agreement=float(one["labels_identical"] and odd.labels_identical),
                   gate_passed=bool(one["passed"] and odd.passed))
    timings = interleaved_speed(files, feeds, args)
    for row in rows:
        row.update(timings.get(row["exporter"], {}))
    return rows


def suite_cost(exporter: str, opset: int, repeats: int, folder: Path) -> dict[str, Any]:
    """Seconds per export of the suite's tiny model: the first (cold) export and the median of ``repeats`` more."""
    from visiontrain.export.onnx_export import export_onnx

    inputs = np.random.default_rng(0).standard_normal((8, 3, SUITE_SIZE, SUITE_SIZE), dtype=np.float32)
    model = trained_like(create_model(SUITE_MODEL, 3), inputs)

    def export() -> None:
        export_onnx(model, folder / f"suite.{exporter}.onnx", SUITE_SIZE, metadata(SUITE_MODEL, SUITE_SIZE),
                    opset=opset, exporter=exporter)

    cold = timed(export)
    return {"exporter": exporter, "model": f"{SUITE_MODEL} at {SUITE_SIZE} px", "cold_s": round(cold, 2),
            "warm_s": round(median([timed(export) for _ in range(repeats)]), 2), "repeats": repeats}


# ----- the report --------------------------------------------------------------------------------------------
def markdown(rows: list[dict[str, Any]], suite: list[dict[str, Any]], args: argparse.Namespace) -> str:
    def notes(row: dict[str, Any]) -> str:
        text = "; ".join(row["errors"]) or row.get("notes", "")
        return " ".join(str(text).split())[:220].replace("|", "/")

    cells = [["" if row.get(key) is None else row[key] for key in COLUMNS if key != "notes"] + [notes(row)]
             for row in rows]
    table = markdown_table(list(COLUMNS.values()), cells)
    suite_table = markdown_table(["exporter", "model", "cold s (first export)", f"warm s (median of {args.suite_repeats})"],
                                 [[s["exporter"], s["model"], s["cold_s"], s["warm_s"]] for s in suite])
    ratio_rows = []
    by_key = {(row["model"], row["exporter"]): row for row in rows}
    for model in dict.fromkeys(row["model"] for row in rows):
        old, new = by_key.get((model, "torchscript"), {}), by_key.get((model, "dynamo"), {})
        ratio_rows.append([model] + [round(new[k] / old[k], 2) if new.get(k) and old.get(k) else "" for k in
                                     ("export_s", "mib", "batch1_ms", "batch32_per_s", "int8_batch1_ms")])
    ratios = markdown_table(["model", "export s", "MiB", "ms b1", "/s b32", "int8 ms b1"], ratio_rows)
    return (f"{table}\n\nDynamo / torchscript, same run (above 1: dynamo larger, slower to export or, for /s, "
            f"faster):\n\n{ratios}\n\nWhat one export costs the test suite:\n\n{suite_table}\n")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=list(DEFAULT_BACKBONES), metavar="NAME")
    parser.add_argument("--exporters", nargs="+", default=list(EXPORTERS), choices=EXPORTERS)
    parser.add_argument("--torchscript-opset", type=int, default=17, help="the project's default opset")
    parser.add_argument("--dynamo-opset", type=int, default=18, help="the lowest the dynamo exporter writes")
    parser.add_argument("--no-tabular", action="store_true", help="leave out the tabular MLP")
    parser.add_argument("--num-classes", type=int, default=2, help="classifier head size (2: hymenoptera)")
    parser.add_argument("--odd-batch", type=int, default=7, help="the batch that proves the batch axis dynamic")
    parser.add_argument("--atol", type=float, default=1e-3, help="the parity gate's logit tolerance (export.atol)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="onnxruntime intra-op and torch threads (default: all cores)")
    parser.add_argument("--repeats", type=int, default=20, help="onnxruntime calls at batch 1")
    parser.add_argument("--suite-repeats", type=int, default=3, help="warm exports of the suite's tiny model")
    parser.add_argument("--out", "--json", type=Path, default=REPO / "benchmarks" / "exporters.json")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the tables here")
    args = parser.parse_args()
    for flag in ("threads", "repeats", "suite_repeats", "num_classes"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    if args.odd_batch < 2:
        parser.error("--odd-batch must be at least 2 (batch 1 is measured anyway)")
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    opsets = {"torchscript": args.torchscript_opset, "dynamo": args.dynamo_opset}
    pictures, rows, suite = calibration_pictures(None), [], []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for exporter in args.exporters:
            suite.append(suite_cost(exporter, opsets[exporter], args.suite_repeats, folder))
            print(f"suite model, {exporter}: {suite[-1]}", file=sys.stderr, flush=True)
        for name in [*args.backbones, *([] if args.no_tabular else [None])]:
            started = time.perf_counter()
            measured = bench_tabular(opsets, args, folder) if name is None else \
                bench_backbone(name, opsets, args, pictures, folder)
            rows += measured
            for leftover in folder.iterdir():
                leftover.unlink()
            for row in measured:
                status = "; ".join(row["errors"]) or "done"
                print(f"{row['model']} / {row['exporter']}: {status}", file=sys.stderr, flush=True)
            print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    info, command = machine(), " ".join(["python", *sys.argv])
    context = (f"`{command}`, {time.strftime('%Y-%m-%d %H:%M')}; medians; {args.threads} threads; {info['cpu']}, "
               f"{info['cores']} cores; torch {info.get('torch')}, onnxruntime {info.get('onnxruntime')}, "
               f"onnxscript {__import__('onnxscript').__version__}, timm {info.get('timm')}")
    report = f"{context}\n\n{markdown(rows, suite, args)}"
    print(f"\n{report}")
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(report)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    write_results(args.out, command,
                  {"settings": settings, "onnxscript": __import__("onnxscript").__version__,
                   "calibration_images": len(pictures), "suite_cost": suite, "rows": rows})


if __name__ == "__main__":
    main()
