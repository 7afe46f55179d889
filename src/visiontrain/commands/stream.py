"""``visiontrain stream model=<file.onnx> source=kafka://... group=<id> output=kafka://...``: score a Kafka topic.

The loop (consume, score, deliver, store, commit; at least once) is :mod:`visiontrain.deploy.streaming`; this is
the command: its typed options in, the model opened, the loop run until stopped, stream_summary.json out.
onnxruntime only, never torch.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from visiontrain.config.commands import StreamOptions
from visiontrain.core.redaction import redact_url
from visiontrain.deploy.streaming.consumer import StopSignal, StreamWorker
from visiontrain.inference.onnx_model import IMAGE, open_model


def stream(options: StreamOptions, run_dir: Path) -> dict[str, Any]:
    """Run until stopped (SIGTERM, Ctrl-C, ``idle_exit_s``, ``max_messages``); returns the counts, also written to
    stream_summary.json in ``run_dir`` (where rejects go too, without ``rejects`` or a dead letter topic)."""
    model = open_model(options.model, threads=options.threads, spin=options.spin, providers=options.providers)
    stop = StopSignal()
    rejects = options.rejects_path(run_dir)
    worker = StreamWorker(model, options, rejects)
    kind = "image classifier" if model.kind == IMAGE else "table model"
    where = [f"  results  {worker.output}" if worker.output else None,
             f"  sink     {worker.sink.describe()}" if worker.sink else None,
             f"  rejects  {worker.dead_letter or rejects}",
             f"  metrics  http://{options.metrics_host}:{worker.metrics_port}/metrics" if worker.metrics else None]
    print(f"visiontrain stream: {model.path.name} ({kind}, sha256:{model.version[:12]}) scoring "
          f"{worker.source} as group {options.group!r}\n  {model.providers_line}\n" + "\n".join(line for line in where if line),
          flush=True)
    started = time.perf_counter()
    worker.run(stop)
    summary = {"messages": worker.ledger.total("messages"), "scored": worker.ledger.total("scored"),
               "rejected": worker.ledger.total("rejected"), "batches": worker.batches,
               "drift_alerts": worker.alerts, "partitions": worker.ledger.as_dict(),
               "stopped_by": stop.signal_name or worker.stopped_by,
               "seconds": round(time.perf_counter() - started, 3), "model_version": worker.version,
               "source": redact_url(str(worker.source))}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "stream_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"visiontrain stream: {summary['messages']} messages: {summary['scored']} scored + "
          f"{summary['rejected']} rejected in {summary['batches']} batches ({summary['seconds']:.1f} s, "
          f"stopped by {summary['stopped_by']})", flush=True)
    return summary
