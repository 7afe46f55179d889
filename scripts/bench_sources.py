"""Peak memory and wall time of an HTTP source that never ends, bounded and (``--before``) unbounded.

A local HTTP server in this process serves, page by page: a 2 GiB JSON array of spaces with its Content-Length
(refused from its header at the 64 MiB ``data.http.max_page_bytes``), the same without a length (ended by
closing: stopped by counting at 64 MiB), and a valid page trickled one byte every 2 s (stopped at
``data.http.page_timeout_s``; ``read_timeout_s`` stays 60 s, which a byte every 2 s never trips). Each read runs
in a fresh process through the training reader (``visiontrain.tabular.ingest.read_source``), whose peak RSS
(``wait4``) and wall time are reported, beside a fresh process reading one small page (the baseline: Python,
pandas, requests). ``--before DIR`` runs the same reads with another checkout's ``src`` (``../main/src`` before
the limits), killed after ``--give-up`` seconds: the unbounded behaviour the issue measured.

    .venv/bin/python scripts/bench_sources.py --json benchmarks/sources.json
    .venv/bin/python scripts/bench_sources.py --before ../main/src --json benchmarks/sources.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import markdown_table, write_results  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"
GIB = 1 << 30
SPACES = b" " * (1 << 20)
TRICKLE_S = 2.0
ROW = b'{"customerID": "c1", "tenure": 3, "Churn": "No"}'

# the reader, in a fresh process: read_source as training calls it; prints what happened and how long it took
CLIENT = """
import json, sys, time
from visiontrain.errors import DataError
from visiontrain.config.tabular import HttpSource, SourceOptions
from visiontrain.tabular.ingest import read_source
url, http = sys.argv[1], json.loads(sys.argv[2])
started = time.perf_counter()
try:
    outcome = f"read {len(read_source(url, options=SourceOptions(http=HttpSource(**http)))[0])} rows"
except DataError as error:
    outcome = f"DataError: {error}"
print(json.dumps({"read_s": time.perf_counter() - started, "outcome": outcome}))
"""


class Source(BaseHTTPRequestHandler):
    """``/small``: one row; ``/spaces-declared`` and ``/spaces``: 2 GiB of spaces in a JSON array, with and
    without Content-Length; ``/trickle``: a page of rows, one byte every TRICKLE_S."""

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        try:
            getattr(self, "_" + self.path.strip("/").replace("-", "_"))()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the reader stopped reading: what the bounded cases do

    def _small(self) -> None:
        self._head({"Content-Length": str(len(ROW) + 2)})
        self.wfile.write(b"[" + ROW + b"]")

    def _spaces_declared(self) -> None:
        self._head({"Content-Length": str(2 * GIB)})
        self._spaces()

    def _spaces(self) -> None:
        if self.path == "/spaces":
            self._head({})  # HTTP/1.0 without a length: the body ends when the connection closes
        self.wfile.write(b"[")
        for _ in range(2 * GIB // len(SPACES) - 1):
            self.wfile.write(SPACES)
        self.wfile.write(SPACES[:-2] + b"]")  # 1 + 2047 MiB + 1 MiB - 1: exactly 2 GiB

    def _trickle(self) -> None:
        body = b"[" + b", ".join([ROW] * 20) + b"]"
        self._head({"Content-Length": str(len(body))})
        for byte in body:
            self.wfile.write(bytes([byte]))
            time.sleep(TRICKLE_S)

    def _head(self, headers: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()


def measure(src: Path, url: str, http: dict[str, Any], give_up_s: float) -> dict[str, Any]:
    """One read in a fresh process: its outcome, the read's seconds, the process's wall time and peak RSS."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", CLIENT, url, json.dumps(http)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killer = threading.Timer(give_up_s, process.kill)
    killer.start()
    _, status, usage = os.wait4(process.pid, 0)
    killer.cancel()
    wall = time.perf_counter() - started
    stdout, stderr = process.stdout.read(), process.stderr.read()
    process.returncode = os.waitstatus_to_exitcode(status)
    found: dict[str, Any] = {"wall_s": round(wall, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}
    if process.returncode == -9:
        return {**found, "outcome": f"still reading after {give_up_s:g} s: killed", "read_s": None}
    if process.returncode != 0:
        return {**found, "outcome": f"exit {process.returncode}: {stderr.strip().splitlines()[-1][:300]}",
                "read_s": None}
    result = json.loads(stdout.strip().splitlines()[-1])
    return {**found, "outcome": result["outcome"][:300], "read_s": round(result["read_s"], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="another checkout's src/ (e.g. ../main/src): unbounded reads")
    parser.add_argument("--page-timeout", type=float, default=10.0, help="data.http.page_timeout_s of the trickle")
    parser.add_argument("--give-up", type=float, default=60.0, help="seconds before an unbounded read is killed")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Source)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    cases = [("baseline: one small page", "/small", {}),
             ("2 GiB page, Content-Length", "/spaces-declared", {}),
             ("2 GiB page, no length", "/spaces", {}),
             (f"a byte every {TRICKLE_S:g} s", "/trickle", {"page_timeout_s": args.page_timeout})]
    results: dict[str, Any] = {"after": {}, "before": {}}
    for name, path, http in cases:
        results["after"][name] = measure(SRC, base + path, {"retries": 0, **http}, args.give_up)
        print(name, "after:", results["after"][name], flush=True)
        if args.before is not None:  # the keys before the limits: only those it knows
            results["before"][name] = measure(args.before, base + path, {"retries": 0}, args.give_up)
            print(name, "before:", results["before"][name], flush=True)
    server.shutdown()

    rows = [[name, *(results[when].get(name, {}).get(key, "") for when in ("before", "after")
                     for key in ("peak_rss_mib", "read_s"))] for name, _, _ in cases]
    print()
    print(markdown_table(["case", "before: peak RSS MiB", "before: read s", "after: peak RSS MiB", "after: read s"],
                         rows))
    command = "scripts/bench_sources.py " + " ".join(sys.argv[1:])
    write_results(args.json, command, {"limits": {"max_page_bytes": 64 << 20, "page_timeout_s": args.page_timeout,
                                                  "read_timeout_s": 60, "trickle_s": TRICKLE_S},
                                       "results": results})


if __name__ == "__main__":
    main()
