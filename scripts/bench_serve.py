"""Load test of `visiontrain serve`: latency and throughput with server-side batching on and off, same run.

Starts the real server (a subprocess on loopback) once per setting, sends ``--requests`` requests from
``--concurrency`` concurrent async httpx clients (closed loop: each sends its next request when its last one
is answered), one image or one table row per request, and reports p50 / p90 / p99 latency, throughput and
errors.

    .venv/bin/python scripts/bench_serve.py --model outputs/hymenoptera/runs/<time>/model.onnx \\
        --json benchmarks/serve_image.json
    .venv/bin/python scripts/bench_serve.py --model outputs/churn/runs/<time>/model.onnx \\
        --inputs ../shared/data/telco-churn.csv --json benchmarks/serve_churn.json

The client runs on the same machine as the server, so on a small VM it takes CPU from the server: the
numbers are for the whole loop, and the on/off ratio is the fair comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = REPO.parent / "shared" / "data" / "hymenoptera" / "val"
DEFAULT_TABLE = REPO.parent / "shared" / "data" / "telco-churn.csv"
SETTINGS = {"batching": ("32", "5"), "no batching": ("1", "0")}  # max_batch_size, max_wait_ms


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: Path, max_batch_size: str, max_wait_ms: str, extra: list[str],
                 run_dir: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "visiontrain", "serve", f"model={model}", f"port={port}",
               f"max_batch_size={max_batch_size}", f"max_wait_ms={max_wait_ms}", "log_level=warning",
               f"hydra.run.dir={run_dir}", *extra]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited:\n{process.stderr.read()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not answer /health within 120 s")


def payloads(kind: str, inputs: Path, limit: int = 200) -> list[dict[str, Any]]:
    """Request bodies, cycled through: one image upload or one JSON row each."""
    if kind == "image":
        suffixes = (".jpg", ".jpeg", ".png")
        files = sorted(p for p in inputs.rglob("*") if p.suffix.lower() in suffixes)[:limit]
        return [{"files": {"files": (p.name, p.read_bytes(), "image/jpeg")}} for p in files]
    import pandas as pd

    rows = pd.read_csv(inputs, dtype=str, keep_default_na=False).head(limit).to_dict("records")
    return [{"json": {"rows": [row]}} for row in rows]


async def load(url: str, bodies: list[dict[str, Any]], requests: int, concurrency: int) -> dict[str, Any]:
    """Closed loop: ``concurrency`` workers, ``requests`` in all; latency per request in milliseconds."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    counter = itertools.count()
    cycle = itertools.cycle(bodies)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        async def worker() -> None:
            while next(counter) < requests:
                body = next(cycle)
                started = time.perf_counter()
                try:
                    response = await client.post("/predict", **body)
                    if response.status_code != 200:
                        errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1
                except httpx.HTTPError as error:
                    errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"requests": len(latencies), "errors": sum(errors.values()), "error_kinds": errors,
            "wall_s": round(wall, 3), "throughput_rps": round(len(latencies) / wall, 1),
            "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99),
            "mean_ms": round(statistics.fmean(latencies), 2), "max_ms": round(ordered[-1], 2)}


def bench(model: Path, kind: str, inputs: Path, requests: int, concurrency: int, warmup: int,
          extra: list[str]) -> dict[str, Any]:
    bodies = payloads(kind, inputs)
    if not bodies:
        raise SystemExit(f"no inputs found in {inputs}")
    results = {}
    for name, (max_batch_size, max_wait_ms) in SETTINGS.items():
        run_dir = tempfile.mkdtemp(prefix="visiontrain-bench-")
        process, url = start_server(model, max_batch_size, max_wait_ms, extra, run_dir)
        try:
            asyncio.run(load(url, bodies, warmup, concurrency))
            before = httpx.get(f"{url}/health").json()
            result = asyncio.run(load(url, bodies, requests, concurrency))
            after = httpx.get(f"{url}/health").json()
        finally:
            process.terminate()
            process.wait(timeout=30)
            shutil.rmtree(run_dir, ignore_errors=True)
        calls = after["batches"] - before["batches"]
        inputs = after["inputs"] - before["inputs"]
        result.update({"max_batch_size": int(max_batch_size), "max_wait_ms": float(max_wait_ms),
                       "model_calls": calls, "mean_batch_size": round(inputs / calls, 2),
                       "model_seconds": round(after["model_seconds"] - before["model_seconds"], 3)})
        results[name] = result
        print(f"{name:12s} {result['throughput_rps']:8.1f} req/s   p50 {result['p50_ms']:7.1f} ms   "
              f"p99 {result['p99_ms']:7.1f} ms   errors {result['errors']}   "
              f"mean batch {result['mean_batch_size']}",
              flush=True)
    on, off = results["batching"], results["no batching"]
    return {"settings": results,
            "throughput_ratio_on_off": round(on["throughput_rps"] / off["throughput_rps"], 2),
            "p99_ratio_on_off": round(on["p99_ms"] / off["p99_ms"], 2)}


def machine() -> dict[str, Any]:
    import onnxruntime

    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
               platform.processor())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores,
            "python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
            "httpx": httpx.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a model.onnx written by visiontrain")
    parser.add_argument("--inputs", type=Path, help="image folder or table file (default: hymenoptera val / "
                                                    "the Telco CSV)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("serve_overrides", nargs="*", help="`visiontrain serve` overrides, e.g. threads=1")
    args = parser.parse_args()

    from visiontrain.inference.onnx_model import IMAGE, OnnxModel

    model = OnnxModel(args.model)
    kind = "image" if model.kind == IMAGE else "table"
    inputs = args.inputs or (DEFAULT_IMAGES if kind == "image" else DEFAULT_TABLE)
    print(f"{args.model} ({kind}, {model.metadata.backbone or model.metadata.model}): "
          f"{args.requests} requests, {args.concurrency} concurrent, one {kind} input each", flush=True)
    result = {"model": str(args.model), "kind": kind, "backbone": model.metadata.backbone,
              "input_size": model.metadata.input_size, "inputs": str(inputs),
              "requests": args.requests,
              "concurrency": args.concurrency, "serve_overrides": args.serve_overrides, "machine": machine(),
              "measured": time.strftime("%Y-%m-%d %H:%M"),
              **bench(args.model, kind, inputs, args.requests, args.concurrency, args.warmup,
                     args.serve_overrides)}
    print(f"batching on/off: throughput x{result['throughput_ratio_on_off']}, "
          f"p99 x{result['p99_ratio_on_off']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if any(s["errors"] for s in result["settings"].values()):
        raise SystemExit("some requests failed")


if __name__ == "__main__":
    main()
