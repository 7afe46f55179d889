"""Rolling out model versions under load: a promote and a rollback mid-run, a 10% canary, shadow on and off.

Trains two versions of a table model (Telco churn: logistic regression, then histogram gradient boosting) and two
of an image model (hymenoptera at 128 px: EfficientNet-Lite0 from the packaged ImageNet weights, one and two
epochs), registers them in a fresh registry folder, and runs the real `visiontrain serve registry=... model=<name>` (a
subprocess on loopback) against a closed-loop client of ``--concurrency`` async httpx workers:

1. **switch**: ``--requests`` requests; after a third of them v2 is promoted to production, after two thirds it is
   rolled back. Failed requests (any non-200 or transport error) must be 0; p99 latency of the requests in flight
   while a switch was being picked up (from the alias move until 1 s after the first answer of the new version)
   is compared with the p99 of every other request of the same run.
2. **canary** (table): ``--canary-requests`` requests with ``canary_share=0.1``: the share answered by the
   candidate, once with a sticky header (``--keys`` customers, each always on one version) and once without.
3. **shadow**: the same ``--requests`` with ``shadow=true`` and ``shadow=false`` (candidate set, no canary):
   p50 of the returned answers, on over off.

    .venv/bin/python scripts/bench_rollout.py --json benchmarks/rollout.json

The client shares the machine's cores with the server, so absolute latencies are for the whole loop; the ratios
come from one run each.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from benchlib import SHARED_DATA, markdown_table, write_results

REPO = Path(__file__).resolve().parents[1]
SWITCH_WINDOW_S = 1.0  # after the first answer of the new version, requests still count as "during the switch"


# --- models --------------------------------------------------------------------------------------------------

def train_versions(work: Path, kind: str) -> list[Path]:
    """Two real versions of one model (cached in ``work``): their model.onnx files."""
    if kind == "table":
        table = SHARED_DATA / "telco-churn.csv"
        if not table.is_file():
            from visiontrain.tabular.builtin import generate_churn_table

            table = work / "churn.csv"
            generate_churn_table(rows=5000, seed=1).to_csv(table, index=False)
        variants = [["experiment=churn", f"data.source={table}", "model=logistic_regression"],
                    ["experiment=churn", f"data.source={table}", "model=hist_gradient_boosting"]]
    else:
        images = SHARED_DATA / "hymenoptera"
        if not images.is_dir():
            images = REPO / "tests" / "fixtures" / "hymenoptera"
        base = ["experiment=hymenoptera", f"data.root={images}", "model.input.image_size=128", "data.num_workers=0"]
        variants = [[*base, "trainer.max_epochs=1", "schedule.freeze_epochs=0"],
                    [*base, "trainer.max_epochs=2", "schedule.freeze_epochs=1"]]
    files = []
    for index, overrides in enumerate(variants, 1):
        run_dir = work / f"{kind}-v{index}"
        onnx = run_dir / "model.onnx"
        if not onnx.is_file():
            print(f"training {kind} v{index} ...", flush=True)
            result = subprocess.run([sys.executable, "-m", "visiontrain", "train", *overrides,
                                     "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}"],
                                    capture_output=True, text=True)
            if result.returncode != 0 or not onnx.is_file():
                raise SystemExit(f"training {kind} v{index} failed:\n{result.stderr[-3000:]}")
        files.append(onnx)
    return files


def fresh_registry(work: Path, name: str, files: list[Path], candidate: bool) -> Path:
    """A registry with v1 in production (and v2 as candidate if asked)."""
    from visiontrain.model_registry.store import ModelRegistry

    folder = work / f"registry-{name}-{time.monotonic_ns()}"
    registry = ModelRegistry(folder)
    for onnx in files:
        registry.register(name, onnx, {"bench": str(onnx.parent)})
    registry.promote(name, 1)
    if candidate:
        registry.promote(name, 2, to="candidate")
    return folder


def request_bodies(kind: str, limit: int = 200) -> list[dict[str, Any]]:
    """One image upload or one JSON row per request, cycled through."""
    if kind == "image":
        folder = SHARED_DATA / "hymenoptera" / "val"
        if not folder.is_dir():
            folder = REPO / "tests" / "fixtures" / "hymenoptera"
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:limit]
        return [{"files": {"files": (p.name, p.read_bytes(), "image/jpeg")}} for p in files]
    import pandas as pd

    table = SHARED_DATA / "telco-churn.csv"
    if not table.is_file():
        from visiontrain.tabular.builtin import generate_churn_table

        frame = generate_churn_table(rows=limit, seed=2).astype(str)
    else:
        frame = pd.read_csv(table, dtype=str, keep_default_na=False).head(limit)
    return [{"json": {"rows": [row]}} for row in frame.drop(columns=["Churn"], errors="ignore").to_dict("records")]


# --- the server and the client -------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`visiontrain serve registry=... model=<name>` in a subprocess, until stopped."""

    def __init__(self, registry: Path, name: str, work: Path, *overrides: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.run_dir = work / f"serve-{time.monotonic_ns()}"
        command = [sys.executable, "-m", "visiontrain", "serve", f"registry={registry}", f"model={name}",
                   f"port={self.port}", "log_level=warning", "registry_poll_s=0.2", f"hydra.run.dir={self.run_dir}",
                   *overrides]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited:\n{self.process.stderr.read()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise SystemExit("the server did not answer /health within 180 s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.run_dir, ignore_errors=True)


def answered_by(response: httpx.Response) -> str:
    """The version that answered: the X-Model-Version header (the body's model_version otherwise)."""
    header = response.headers.get("x-model-version")
    return header if header else str(response.json().get("model_version"))


async def load(url: str, bodies: list[dict[str, Any]], requests: int, concurrency: int,
               keys: list[str] | None = None, on_progress: Any = None) -> list[dict[str, Any]]:
    """Closed loop; one record per request: start and end (monotonic s), latency (ms), status, version, key."""
    records: list[dict[str, Any]] = []
    counter = itertools.count()
    cycle = itertools.cycle(bodies)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        async def worker() -> None:
            while (index := next(counter)) < requests:
                body = next(cycle)
                key = keys[index % len(keys)] if keys else None
                headers = {"x-customer-id": key} if key else None
                started = time.monotonic()
                record: dict[str, Any] = {"start": started, "key": key}
                try:
                    response = await client.post("/predict", headers=headers, **body)
                    record.update(status=response.status_code,
                                  version=answered_by(response) if response.status_code == 200 else None)
                except httpx.HTTPError as error:
                    record.update(status=type(error).__name__, version=None)
                record.update(end=time.monotonic(), ms=(time.monotonic() - started) * 1000)
                records.append(record)
                if on_progress is not None:
                    on_progress(len(records))
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return records


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2) if ordered else float("nan")


# --- the three measurements ----------------------------------------------------------------------------------

def switch_under_load(kind: str, files: list[Path], work: Path, requests: int, concurrency: int) -> dict[str, Any]:
    """A promote at a third of the requests and a rollback at two thirds, the client never pausing."""
    from visiontrain.model_registry.store import ModelRegistry

    name = f"{kind}-model"
    folder = fresh_registry(work, name, files, candidate=False)
    registry = ModelRegistry(folder)
    server = Server(folder, name, work)
    moves: list[tuple[float, str]] = []
    lock = threading.Lock()

    def progress(done: int) -> None:
        with lock:
            if done >= requests // 3 and not moves:
                moves.append((time.monotonic(), f"{name}:v2"))
                threading.Thread(target=registry.promote, args=(name, 2), kwargs={"reason": "bench"}).start()
            elif done >= 2 * requests // 3 and len(moves) == 1:
                moves.append((time.monotonic(), f"{name}:v1"))
                threading.Thread(target=registry.rollback, args=(name,), kwargs={"reason": "bench"}).start()

    bodies = request_bodies(kind)
    try:
        asyncio.run(load(server.url, bodies, 100, concurrency))  # warm-up
        records = asyncio.run(load(server.url, bodies, requests, concurrency, on_progress=progress))
    finally:
        server.stop()
    failed = [r for r in records if r["status"] != 200]
    windows = []
    for moved_at, version in moves:
        first = min((r["end"] for r in records if r["end"] >= moved_at and r["version"] == version), default=None)
        windows.append((moved_at, (first if first is not None else moved_at) + SWITCH_WINDOW_S))
    during = [r["ms"] for r in records if any(r["start"] <= end and r["end"] >= start for start, end in windows)]
    steady = [r["ms"] for r in records if not any(r["start"] <= end and r["end"] >= start for start, end in windows)]
    order = [r["version"] for r in sorted(records, key=lambda r: r["start"]) if r["version"]]
    result = {"requests": len(records), "concurrency": concurrency, "failed": len(failed),
              "failures": sorted({str(r["status"]) for r in failed}),
              "switch_pickup_s": [round(end - SWITCH_WINDOW_S - start, 3) for start, end in windows],
              "answered": {v: order.count(v) for v in sorted(set(order))},
              "requests_during_switches": len(during), "p50_steady_ms": percentile(steady, 0.5),
              "p99_steady_ms": percentile(steady, 0.99), "p99_switch_ms": percentile(during, 0.99),
              "p99_ratio_switch_steady": round(percentile(during, 0.99) / percentile(steady, 0.99), 3),
              "ended_on": order[-1] if order else None}
    print(f"{kind} switch: {result['failed']} failed of {result['requests']}, p99 steady {result['p99_steady_ms']} "
          f"ms, during switches {result['p99_switch_ms']} ms (x{result['p99_ratio_switch_steady']}), "
          f"picked up in {result['switch_pickup_s']} s", flush=True)
    return result


def canary(files: list[Path], work: Path, requests: int, concurrency: int, keys: int) -> dict[str, Any]:
    """The candidate's share at canary_share=0.1, with and without a sticky key."""
    name = "table-model"
    folder = fresh_registry(work, name, files, candidate=True)
    bodies = request_bodies("table")
    results = {}
    for mode, overrides, customer_keys in (
            ("sticky header", ["canary_share=0.1", "sticky_key=header:x-customer-id"],
             [f"customer-{i:05d}" for i in range(keys)]),
            ("random", ["canary_share=0.1"], None)):
        server = Server(folder, name, work, *overrides)
        try:
            records = asyncio.run(load(server.url, bodies, requests, concurrency, keys=customer_keys))
        finally:
            server.stop()
        answered = [r for r in records if r["status"] == 200]
        share = sum(r["version"] == f"{name}:v2" for r in answered) / len(answered)
        result: dict[str, Any] = {"requests": len(records), "failed": len(records) - len(answered),
                                  "candidate_share": round(share, 4),
                                  "within_2_points": abs(share - 0.1) <= 0.02}
        if customer_keys:
            seen: dict[str, set[str]] = {}
            for r in answered:
                seen.setdefault(r["key"], set()).add(r["version"])
            result.update(keys=len(seen), keys_on_one_version=sum(len(v) == 1 for v in seen.values()),
                          sticky_share=round(sum(len(v) == 1 for v in seen.values()) / len(seen), 4))
        results[mode] = result
        print(f"canary {mode}: candidate share {share:.4f} over {len(answered)} answers"
              + (f", {result['sticky_share']:.2%} of keys on one version" if customer_keys else ""), flush=True)
    return results


def shadow(kind: str, files: list[Path], work: Path, requests: int, concurrency: int) -> dict[str, Any]:
    """p50 of the answers with the candidate scoring a copy of the traffic, and without; alternated twice."""
    name = f"{kind}-model"
    folder = fresh_registry(work, name, files, candidate=True)
    bodies = request_bodies(kind)
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for setting in ("off", "on", "on", "off"):  # ABBA: a drift in the machine's speed affects both alike
        server = Server(folder, name, work, f"shadow={'true' if setting == 'on' else 'false'}")
        try:
            asyncio.run(load(server.url, bodies, 100, concurrency))
            records = asyncio.run(load(server.url, bodies, requests, concurrency))
            metrics = httpx.get(f"{server.url}/metrics").text
        finally:
            server.stop()
        answered = [r["ms"] for r in records if r["status"] == 200]
        versions = {r["version"] for r in records if r["version"]}
        runs[setting].append({"p50_ms": percentile(answered, 0.5), "p99_ms": percentile(answered, 0.99),
                              "failed": len(records) - len(answered), "answered_by": sorted(versions),
                              "shadow_scored": counter(metrics, "visiontrain_routed_inputs_total", 'role="shadow"'),
                              "shadow_dropped": counter(metrics, "visiontrain_shadow_dropped_total", "")})
    p50_off = round(statistics.median(run["p50_ms"] for run in runs["off"]), 2)
    p50_on = round(statistics.median(run["p50_ms"] for run in runs["on"]), 2)
    result = {"runs": runs, "p50_off_ms": p50_off, "p50_on_ms": p50_on, "p50_ratio_on_off": round(p50_on / p50_off, 3)}
    print(f"{kind} shadow: p50 off {p50_off} ms, on {p50_on} ms (x{result['p50_ratio_on_off']})", flush=True)
    return result


def counter(exposition: str, name: str, label: str) -> float:
    """The sum of a metric's samples (with ``label`` among their labels) in a Prometheus exposition."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in exposition.splitlines()
               if line.startswith(name) and label in line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "bench_rollout",
                        help="trained versions are cached here")
    parser.add_argument("--kinds", nargs="+", default=["table", "image"], choices=["table", "image"])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--canary-requests", type=int, default=10000)
    parser.add_argument("--keys", type=int, default=2000, help="distinct sticky keys in the canary run")
    parser.add_argument("--measure", nargs="+", default=["switch", "shadow", "canary"],
                        choices=["switch", "shadow", "canary"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    random.seed(0)

    results: dict[str, Any] = {"requests": args.requests, "concurrency": args.concurrency}
    for kind in args.kinds:
        files = train_versions(args.work, kind)
        results[kind] = {}
        if "switch" in args.measure:
            results[kind]["switch"] = switch_under_load(kind, files, args.work, args.requests, args.concurrency)
        if "shadow" in args.measure:
            results[kind]["shadow"] = shadow(kind, files, args.work, args.requests, args.concurrency)
        if kind == "table" and "canary" in args.measure:
            results[kind]["canary"] = canary(files, args.work, args.canary_requests, args.concurrency, args.keys)
    rows = [[kind, r.get("switch", {}).get("failed"), r.get("switch", {}).get("p99_steady_ms"),
             r.get("switch", {}).get("p99_switch_ms"), r.get("switch", {}).get("p99_ratio_switch_steady"),
             r.get("shadow", {}).get("p50_ratio_on_off")] for kind, r in results.items() if kind in args.kinds]
    print("\n" + markdown_table(["model", "failed", "p99 steady ms", "p99 switch ms", "switch/steady",
                                 "shadow p50 on/off"], rows))
    write_results(args.json, " ".join(["scripts/bench_rollout.py", *sys.argv[1:]]), results)


if __name__ == "__main__":
    main()
