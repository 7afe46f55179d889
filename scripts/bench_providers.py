"""onnxruntime's execution providers on one exported image model: the GPU (CUDA, TensorRT) against the CPU.

For the float file and, where given, its int8 copy (`export.quantize=int8`: static QDQ), on each provider asked
for: batch 1 and batch 32 of random-normal images at the model's input size, the median (p50) latency of a call
and the images per second at that latency. The input comes from host memory on every call, as in `serve`.

Providers are chosen and checked as `predict`, `serve` and `stream` choose them (visiontrain.core.providers):
``cuda`` is [CUDA, CPU], ``tensorrt`` [TensorRT, CUDA, CPU]. Not timed, but recorded as unsupported with the
reason: a provider this onnxruntime build lacks (the CPU wheel has no GPU provider), one its session could not
start (no GPU; missing CUDA, cuDNN or TensorRT libraries), and one that leaves the model's convolutions and
matrix products to the CPU (an int8 file's kernels the provider does not have). Which provider ran each node
comes from onnxruntime's profile of the warm-up call.

    python scripts/bench_providers.py --model <run>/model.onnx --int8 <run>/model.int8.onnx \\
        --providers cpu,cuda,tensorrt --json providers.json

torch-free: onnxruntime and numpy, as the serving image has them. The GPU check runs it (scripts/device/check.py,
step onnx_providers) on the default image model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from visiontrain.core.providers import CPU, check_session, choose_providers
from visiontrain.errors import ConfigError

BATCHES = (1, 32)
CHOICES = ("cpu", "cuda", "tensorrt")
# the kernels that are an image model's time (Conv, QLinearConv, ConvInteger, FusedConv, MatMul, Gemm, ...): left
# to the CPU under a GPU provider, the figure would be the CPU's
COMPUTE_OPS = ("Conv", "MatMul", "Gemm")


def is_compute(op: str) -> bool:
    return any(name in op for name in COMPUTE_OPS)


def gpu_libraries() -> str | None:
    """onnxruntime-gpu finds pip-installed CUDA and cuDNN (nvidia-* wheels, as torch brings) only once preloaded;
    returns what went wrong, if anything (the session then says whether it could start the GPU)."""
    preload = getattr(ort, "preload_dlls", None)  # onnxruntime-gpu >= 1.21
    if preload is None or "CUDAExecutionProvider" not in ort.get_available_providers():
        return None
    try:
        preload()
    except Exception as error:  # a library it could not load is reported; the session decides
        return f"{type(error).__name__}: {error}"
    return None


def node_placement(profile: Path) -> list[tuple[str, str]]:
    """(op type, provider) of every node onnxruntime's profile timed."""
    events = json.loads(profile.read_text())
    return [(event["args"]["op_name"], event["args"]["provider"]) for event in events
            if event.get("cat") == "Node" and "provider" in event.get("args", {})
            and event.get("name", "").endswith("_kernel_time")]


def open_session(path: Path, choice: str, scratch: Path) -> tuple[ort.InferenceSession | None, str | None]:
    """A session on ``providers=<choice>``, profiling on (for the warm-up call); or None and why not."""
    try:
        providers = choose_providers(choice)
    except ConfigError as error:
        return None, error.problem
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.enable_profiling = True
    options.profile_file_prefix = str(scratch / f"{path.stem}-{choice}")
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
        check_session(session, choice)
    except ConfigError as error:
        return None, error.problem
    except Exception as error:  # onnxruntime raises its own types for a provider that fails
        return None, f"the session could not start: {_shorten(str(error))}"
    return session, None


def _shorten(message: str, keep: int = 360) -> str:
    """onnxruntime's first error line, its middle (a C++ source location and signature) cut when long."""
    line = message.strip().splitlines()[0] if message.strip() else "no message"
    return line if len(line) <= keep else f"{line[:keep // 3]} ... {line[-2 * keep // 3:]}"


def gpu_runs_the_compute(placement: list[tuple[str, str]], choice: str) -> str | None:
    """None when the GPU providers ran every convolution and matrix product; else why the figure is the CPU's."""
    if choice == "cpu":
        return None
    on_cpu = Counter(op for op, provider in placement if provider == CPU and is_compute(op))
    if not on_cpu:
        return None
    total = sum(1 for op, _ in placement if is_compute(op))
    ops = ", ".join(f"{op} x{count}" for op, count in on_cpu.most_common())
    return (f"{sum(on_cpu.values())} of the {total} convolution and matrix nodes ran on the CPU under "
            f"providers={choice} ({ops}): the provider has no kernel for them in this file")


def time_calls(session: ort.InferenceSession, feed: dict[str, np.ndarray], calls: int,
               deadline: float) -> tuple[float, int]:
    """p50 milliseconds of ``calls`` calls (fewer once past ``deadline``, at least three), after one warm-up."""
    session.run(None, feed)  # this shape's first call: allocations, kernel and algorithm choice, TensorRT's engine
    times: list[float] = []
    while len(times) < calls and (len(times) < 3 or time.monotonic() < deadline):
        started = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), len(times)


def measure(path: Path, precision: str, choice: str, calls: int, deadline: float, scratch: Path) -> dict[str, Any]:
    cell: dict[str, Any] = {"providers": choice, "model": precision, "file": str(path)}
    if time.monotonic() > deadline:
        return {**cell, "status": "not measured", "reason": "the time budget ran out before this one"}
    session, problem = open_session(path, choice, scratch)
    if session is None:
        return {**cell, "status": "unsupported", "reason": problem}
    image = session.get_inputs()[0]
    size = list(image.shape[1:])
    if not all(isinstance(dim, int) for dim in size):
        raise SystemExit(f"{path}: the input {image.name} has no fixed size ({image.shape})")
    generator = np.random.default_rng(0)
    feeds = {batch: {image.name: generator.standard_normal((batch, *size), dtype=np.float32)} for batch in BATCHES}
    session.run(None, feeds[BATCHES[0]])
    placement = node_placement(Path(session.end_profiling()))  # the warm-up call's; profiling stops here
    cell.update(used=list(session.get_providers()), nodes=dict(Counter(p for _, p in placement)))
    problem = gpu_runs_the_compute(placement, choice)
    if problem:
        return {**cell, "status": "unsupported", "reason": problem}
    batches = {}
    for batch, feed in feeds.items():
        p50, done = time_calls(session, feed, calls if batch == 1 else max(5, calls // 5), deadline)
        batches[str(batch)] = {"p50_ms": float(f"{p50:.4g}"), "images_per_s": round(batch * 1000 / p50, 1),
                               "calls": done}
    return {**cell, "status": "measured", "batches": batches}


def speedups(cells: list[dict[str, Any]]) -> None:
    """Each measured cell's images/s against the CPU's, same file and batch (in place: ``x_cpu``)."""
    cpu = {c["model"]: c for c in cells if c["providers"] == "cpu" and c["status"] == "measured"}
    for cell in cells:
        base = cpu.get(cell["model"])
        if cell["status"] == "measured" and base is not None:
            for batch, figures in cell["batches"].items():
                figures["x_cpu"] = round(figures["images_per_s"] / base["batches"][batch]["images_per_s"], 2)


def markdown(cells: list[dict[str, Any]]) -> list[str]:
    lines = ["| providers | model | batch 1 p50 ms | batch 1 img/s | batch 32 p50 ms | batch 32 img/s | x CPU (32) |",
             "|---|---|---|---|---|---|---|"]
    for cell in cells:
        if cell["status"] != "measured":
            lines.append(f"| {cell['providers']} | {cell['model']} | {cell['status']}: {cell['reason']} | | | | |")
            continue
        one, many = cell["batches"]["1"], cell["batches"]["32"]
        lines.append(f"| {cell['providers']} | {cell['model']} | {one['p50_ms']:.2f} | {one['images_per_s']:,.0f} | "
                     f"{many['p50_ms']:.2f} | {many['images_per_s']:,.0f} | {many.get('x_cpu', '-')} |")
    return lines


def run(model: Path, int8: Path | None, choices: list[str], calls: int, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    preload_problem = gpu_libraries()
    files = {"float": model, **({"int8": int8} if int8 else {})}
    with tempfile.TemporaryDirectory(prefix="bench-providers-") as scratch:
        cells = [measure(path, precision, choice, calls, deadline, Path(scratch))
                 for choice in choices for precision, path in files.items()]
    speedups(cells)
    return {"onnxruntime": ort.__version__, "available_providers": ort.get_available_providers(),
            "gpu_library_preload": preload_problem or "ok", "batches": list(BATCHES), "results": cells,
            "markdown": markdown(cells)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="the float model.onnx")
    parser.add_argument("--int8", type=Path, default=None, help="its int8 copy (model.int8.onnx)")
    parser.add_argument("--providers", default=",".join(CHOICES), help="a comma-separated subset of cpu,cuda,tensorrt")
    parser.add_argument("--calls", type=int, default=50, help="timed calls at batch 1 (a fifth of it at batch 32)")
    parser.add_argument("--seconds", type=float, default=300, help="stop starting new measurements after this")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    choices = args.providers.split(",")
    unknown = sorted(set(choices) - set(CHOICES))
    if unknown:
        parser.error(f"--providers: unknown {', '.join(unknown)} (one of {', '.join(CHOICES)})")
    results = run(args.model, args.int8, choices, args.calls, args.seconds)
    print("\n".join(results["markdown"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": " ".join(["python", *sys.argv]), **results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
