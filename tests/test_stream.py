"""`visiontrain stream`: a real Tansu broker, real models, real processes killed and restarted.

The user's story: churn rows and photos arrive on a Kafka topic; every one of them is scored into the results
topic (and a sink) or dead-lettered with its reason and original bytes, whatever happens to the scoring processes:
a kill -9 loses nothing, SIGTERM finishes cleanly, and two processes of one group share the partitions.
"""

from __future__ import annotations

import base64
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from kafka_broker import consume_all, new_topic, produce
from visiontrain.core.files import sha256_of_file

pytestmark = pytest.mark.timeout(600)


# --- models and processes -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def churn_model(tmp_path_factory) -> dict:
    """A real churn model (logistic regression: the fastest to train) and the raw rows it was trained on."""
    base = tmp_path_factory.mktemp("stream_churn")
    cache = base / "cache"
    result = run_cli("train", "experiment=churn", "model=logistic_regression", "trainer.enable_progress_bar=false",
                     f"hydra.run.dir={base / 'run'}", cwd=base, env={"VISIONTRAIN_CACHE_DIR": str(cache)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    raw = pd.read_csv(cache / "datasets" / "churn-generated.csv", dtype=str, keep_default_na=False)
    return {"base": base, "onnx": base / "run" / "model.onnx", "rows": raw.drop(columns=["Churn"])}


class Streamer:
    """`visiontrain stream` in a subprocess, its output in a file (a pipe could fill and block it)."""

    def __init__(self, model: Path, broker, source: str, group: str, run_dir: Path, *overrides: str,
                 code: str | None = None) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir, self.log = run_dir, run_dir / "stdout.txt"
        launcher = ["-c", code] if code else ["-m", "visiontrain"]
        command = [sys.executable, *launcher, "stream", f"model={model}", f"source={broker.url(source)}",
                   f"group={group}", f"hydra.run.dir={run_dir}", *overrides]
        self.process = subprocess.Popen(command, stdout=open(self.log, "w"), stderr=subprocess.STDOUT,
                                        env={**__import__("os").environ, "PYTHONUNBUFFERED": "1"})

    def output(self) -> str:
        return self.log.read_text()

    def wait_for(self, text: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.output():
            if self.process.poll() is not None:
                raise AssertionError(f"stream exited ({self.process.returncode}):\n{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} within {timeout_s} s:\n{self.output()[-3000:]}")
            time.sleep(0.1)

    def finish(self, timeout_s: float = 120) -> dict:
        """Wait for the exit (idle_exit_s) and return stream_summary.json."""
        code = self.process.wait(timeout_s)
        assert code == 0, self.output()[-3000:]
        return json.loads((self.run_dir / "stream_summary.json").read_text())

    def signal(self, number: int) -> int:
        self.process.send_signal(number)
        return self.process.wait(60)


def _rows(frame: pd.DataFrame, start: int, count: int) -> list[tuple[str, dict]]:
    return [(row["customerID"], row) for row in frame.iloc[start:start + count].to_dict("records")]


def _coordinates(messages) -> list[tuple[int, int, int]]:
    values = [json.loads(m.value()) for m in messages]
    return [(v["partition"], v["offset"], v["row"]) for v in values]


def _expected_scores(model: Path, rows: list[dict]) -> list[float]:
    """The same rows through `predict`'s code in-process: what every streamed result must equal."""
    from visiontrain.deploy.table_input import TableSpec, prepare_rows
    from visiontrain.inference.onnx_model import OnnxModel

    onnx = OnnxModel(model)
    prepared = prepare_rows(rows, TableSpec.from_metadata(onnx.metadata, onnx.input_columns()))
    return [result["probability"] for result in onnx.score(prepared.feeds())]


# --- tables -------------------------------------------------------------------------------------------------


def test_every_row_is_scored_like_predict_or_dead_lettered_with_its_bytes(kafka_broker, churn_model, tmp_path):
    rows = churn_model["rows"]
    source, output, dead = (new_topic(kafka_broker, partitions) for partitions in (4, 1, 1))
    good = _rows(rows, 0, 400)
    listed = [row for _, row in _rows(rows, 400, 3)]
    listed[1] = {**listed[1], "tenure": "abc"}  # one bad value in a message of three rows
    broken = [("not-json", b"{not json"), ("empty", b""), ("missing", {"tenure": 3}),
              ("nested", {**good[0][1], "tenure": {"years": 2}})]
    produce(kafka_broker, source, [*good, ("list", listed), *broken], partitions=4)

    streamer = Streamer(churn_model["onnx"], kafka_broker, source, "scoring", tmp_path / "run",
                        f"output={kafka_broker.url(output)}", f"dead_letter={kafka_broker.url(dead)}",
                        f"sink={tmp_path / 'results.db'}", "idle_exit_s=3", "max_batch_size=64")
    summary = streamer.finish()

    assert summary["messages"] == 405 and summary["scored"] == 402 and summary["rejected"] == 5
    # in = scored + rejected, per partition: message i went to partition i % 4, and the list (message 400,
    # partition 0) holds three rows
    sent = Counter(index % 4 for index in range(405))
    for partition in range(4):
        counts = summary["partitions"][f"{source}[{partition}]"]
        assert counts["messages"] == sent[partition]
        assert counts["scored"] + counts["rejected"] == sent[partition] + (2 if partition == 0 else 0)
    results = consume_all(kafka_broker, output, expected=402)
    assert len(results) == 402 and len(set(_coordinates(results))) == 402
    by_key = {json.loads(m.value())["key"]: json.loads(m.value()) for m in results if m.key() != b"list"}
    expected = _expected_scores(churn_model["onnx"], [row for _, row in good])
    got = [by_key[key]["probability"] for key, _ in good]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)  # the same cleansing and model as predict
    first = by_key[good[0][0]]
    assert first["model"] == "model.onnx" and first["model_version"].startswith("sha256:")
    assert first["customerID"] == good[0][0] and first["source_timestamp_ms"] > 0
    assert sorted(json.loads(m.value())["row"] for m in results if m.key() == b"list") == [0, 2]

    letters = {m.key(): m for m in consume_all(kafka_broker, dead, expected=5)}
    assert set(letters) == {b"not-json", b"empty", b"missing", b"nested", b"list"}
    assert letters[b"not-json"].value() == b"{not json"  # the original bytes, untouched
    reasons = {key: dict(m.headers())["visiontrain.reason"].decode() for key, m in letters.items()}
    assert "not valid JSON" in reasons[b"not-json"] and "empty message" in reasons[b"empty"]
    assert "missing column" in reasons[b"missing"] and "tenure" in reasons[b"nested"]
    assert "tenure" in reasons[b"list"] and dict(letters[b"list"].headers())["visiontrain.row"] == b"1"

    with sqlite3.connect(tmp_path / "results.db") as database:
        stored = database.execute("SELECT COUNT(*), COUNT(DISTINCT topic || partition || ':' || offset || ':' || row) "
                                  "FROM stream_results").fetchone()
    assert stored == (402, 402)


def test_a_kill_9_then_a_restart_loses_nothing_and_repeats_at_most_a_batch(kafka_broker, churn_model, tmp_path):
    rows = churn_model["rows"]
    source, output = new_topic(kafka_broker, 2), new_topic(kafka_broker, 1)
    total, batch = 3000, 100
    produce(kafka_broker, source, [(str(i), row) for i, (_, row) in enumerate(_rows(rows, 0, total))],
            partitions=2)
    sink = tmp_path / "parquet"
    common = (f"output={kafka_broker.url(output)}", f"sink={sink}", f"max_batch_size={batch}")

    killed_at = []
    for attempt, files in enumerate((4, 12, 20)):  # three crashes at different points of the topic
        crashing = Streamer(churn_model["onnx"], kafka_broker, source, "crashy", tmp_path / f"crash{attempt}",
                            *common)
        deadline = time.monotonic() + 60
        while len(list(sink.glob("*.parquet"))) < files and time.monotonic() < deadline:
            time.sleep(0.02)
        crashing.process.kill()  # kill -9: no chance to commit, flush or leave the group
        crashing.process.wait()
        assert crashing.process.returncode == -signal.SIGKILL
        killed_at.append(len(list(sink.glob("*.parquet"))))
    assert killed_at[-1] < total // batch  # each crash came before the end of the topic

    final = Streamer(churn_model["onnx"], kafka_broker, source, "crashy", tmp_path / "final", *common,
                     "idle_exit_s=3")
    final.finish()

    results = _coordinates(consume_all(kafka_broker, output, idle_s=4))  # every copy, duplicates too
    assert set(results) == {(p, o, 0) for p in (0, 1) for o in range(total // 2)}  # nothing lost
    repeated = sum(count - 1 for count in Counter(results).values())
    assert repeated <= 3 * batch  # per crash, the one batch in flight when the process died, at most
    stored = pd.read_parquet(sink)
    assert len(stored) == total and not stored.duplicated(["topic", "partition", "offset", "row"]).any()


def test_sigterm_finishes_the_batch_commits_and_exits_0(kafka_broker, churn_model, tmp_path):
    rows = churn_model["rows"]
    source, output = new_topic(kafka_broker, 1), new_topic(kafka_broker, 1)
    produce(kafka_broker, source, _rows(rows, 0, 2000))
    first = Streamer(churn_model["onnx"], kafka_broker, source, "polite", tmp_path / "first",
                     f"output={kafka_broker.url(output)}", "max_batch_size=50")
    deadline = time.monotonic() + 60
    while not consume_all(kafka_broker, output, expected=1, timeout_s=5) and time.monotonic() < deadline:
        pass
    assert first.signal(signal.SIGTERM) == 0, first.output()[-3000:]
    summary = json.loads((first.run_dir / "stream_summary.json").read_text())
    assert summary["stopped_by"] == "SIGTERM" and summary["scored"] == summary["messages"]

    second = Streamer(churn_model["onnx"], kafka_broker, source, "polite", tmp_path / "second",
                      f"output={kafka_broker.url(output)}", "idle_exit_s=3")
    rest = second.finish()
    assert summary["scored"] + rest["scored"] == 2000  # the restart began exactly where SIGTERM committed
    results = _coordinates(consume_all(kafka_broker, output, expected=2000, idle_s=4))
    assert sorted(results) == [(0, offset, 0) for offset in range(2000)]  # each once: no crash, no repeat


def test_two_processes_of_one_group_share_four_partitions_and_take_over(kafka_broker, churn_model, tmp_path):
    rows = churn_model["rows"]
    source, output = new_topic(kafka_broker, 4), new_topic(kafka_broker, 1)
    common = (f"output={kafka_broker.url(output)}", "max_batch_size=50")
    first = Streamer(churn_model["onnx"], kafka_broker, source, "shared", tmp_path / "a", *common)
    first.wait_for("assigned")
    second = Streamer(churn_model["onnx"], kafka_broker, source, "shared", tmp_path / "b", *common)
    second.wait_for("assigned")
    deadline = time.monotonic() + 60
    while "revoked" not in first.output() and time.monotonic() < deadline:  # the group rebalanced to two
        time.sleep(0.1)
    time.sleep(1.0)
    produce(kafka_broker, source, _rows(rows, 0, 800), partitions=4)
    consume_all(kafka_broker, output, expected=800)

    assert first.signal(signal.SIGTERM) == 0
    produce(kafka_broker, source, _rows(rows, 800, 800), partitions=4)
    results = _coordinates(consume_all(kafka_broker, output, expected=1600, idle_s=4))
    assert second.signal(signal.SIGTERM) == 0

    a = json.loads((tmp_path / "a" / "stream_summary.json").read_text())
    b = json.loads((tmp_path / "b" / "stream_summary.json").read_text())
    assert a["scored"] > 0 and b["scored"] > 0  # both worked
    assert a["scored"] + b["scored"] == 1600
    assert sorted(results) == sorted({(p, o, 0) for p in range(4) for o in range(400)})  # all, none twice
    assert len(b["partitions"]) == 4  # the survivor took over every partition


def test_live_metrics_and_a_drift_alert_while_streaming(kafka_broker, churn_model, tmp_path):
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    from conftest import free_port

    rows = churn_model["rows"]
    source, output, alerts = (new_topic(kafka_broker, 1) for _ in range(3))  # one partition: windows in order
    usual = _rows(rows, 0, 300)
    moved = [(key, {**row, "tenure": str(float(row["tenure"] or 0) * 5 + 60)}) for key, row in _rows(rows, 300, 300)]
    port = free_port()
    streamer = Streamer(churn_model["onnx"], kafka_broker, source, "watched", tmp_path / "run",
                        f"output={kafka_broker.url(output)}", f"alerts={kafka_broker.url(alerts)}",
                        "drift_window=300", f"metrics_port={port}", "lag_interval_s=0.5", "max_batch_size=100")
    streamer.wait_for("assigned")
    produce(kafka_broker, source, [*usual, *moved, ("bad", b"oops")])
    warnings = consume_all(kafka_broker, alerts, expected=1, timeout_s=60)
    consume_all(kafka_broker, output, expected=600)
    time.sleep(1.0)  # a lag measurement after the last batch
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert streamer.signal(signal.SIGTERM) == 0

    samples = [sample for family in text_string_to_metric_families(text) for sample in family.samples]

    def value(name: str, **labels: str) -> float:
        found = [sample.value for sample in samples
                 if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())]
        assert found, f"no {name} {labels} in /metrics"
        return sum(found)
    assert value("visiontrain_messages_total", outcome="scored") == 600
    assert value("visiontrain_messages_total", outcome="rejected") == 1
    assert value("visiontrain_end_to_end_seconds_count") == 600
    assert value("visiontrain_batch_size_sum") == 601
    assert value("visiontrain_drift_windows_total") == 2
    assert value("visiontrain_drift_drifted", feature="tenure") == 1
    assert value("visiontrain_consumer_lag") == 0
    info = next(sample for sample in samples if sample.name == "visiontrain_model_info")
    assert info.labels["sha256"] == sha256_of_file(churn_model["onnx"])

    alert = json.loads(warnings[0].value())  # the second window: the moved rows
    assert alert["index"] == 1 and "tenure" in alert["drifted"] and alert["model_version"].startswith("sha256:")
    assert "DRIFT in tenure" in streamer.output()
    summary = json.loads((tmp_path / "run" / "stream_summary.json").read_text())
    assert summary["drift_alerts"] == 1


# --- images -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_model(tiny_hymenoptera, tiny_image_run) -> dict:
    return {"onnx": tiny_image_run / "model.onnx", "photos": sorted((tiny_hymenoptera / "val").rglob("*.jpg"))[:6]}


def test_images_as_bytes_or_base64_json_are_classified_like_predict(kafka_broker, image_model, tmp_path):
    from visiontrain.inference.onnx_model import OnnxModel

    photos = image_model["photos"]
    source, output, dead = (new_topic(kafka_broker, 1) for _ in range(3))
    messages = [(f"raw-{i}", path.read_bytes()) for i, path in enumerate(photos[:3])]
    messages += [(f"b64-{i}", {"image": base64.b64encode(path.read_bytes()).decode(), "camera": f"cam{i}"})
                 for i, path in enumerate(photos[3:])]
    import io

    from PIL import Image

    huge = io.BytesIO()
    Image.new("RGB", (1200, 1000)).save(huge, format="PNG")  # 1.2 M pixels: over this run's max_image_pixels
    messages += [("truncated", photos[0].read_bytes()[:500]), ("no-image", {"camera": "cam9"}),
                 ("huge", huge.getvalue())]
    produce(kafka_broker, source, messages)
    streamer = Streamer(image_model["onnx"], kafka_broker, source, "photos", tmp_path / "run",
                        f"output={kafka_broker.url(output)}", f"dead_letter={kafka_broker.url(dead)}",
                        "idle_exit_s=3", "top_k=1", "max_image_pixels=1000000")
    summary = streamer.finish()
    assert (summary["scored"], summary["rejected"]) == (6, 3)

    results = {m.key().decode(): json.loads(m.value()) for m in consume_all(kafka_broker, output, expected=6)}
    expected = OnnxModel(image_model["onnx"]).predict_images(photos, top_k=1)
    keys = [f"raw-{i}" for i in range(3)] + [f"b64-{i}" for i in range(3)]
    for key, want in zip(keys, expected):
        assert results[key]["top1"] == want["top1"]
        assert abs(results[key]["top1_probability"] - want["top1_probability"]) < 1e-6
    assert results["b64-1"]["camera"] == "cam1"  # the message's other fields travel with the result
    letters = {m.key(): dict(m.headers())["visiontrain.reason"].decode()
               for m in consume_all(kafka_broker, dead, expected=3)}
    assert "truncated" in letters[b"truncated"] and "image_field" in letters[b"no-image"]
    assert "1200x1000" in letters[b"huge"] and "max_image_pixels" in letters[b"huge"]


def test_stream_runs_with_the_training_stack_unimportable(kafka_broker, churn_model, tmp_path):
    from test_predict_serve import BLOCKED_CLI

    source, output = new_topic(kafka_broker, 1), new_topic(kafka_broker, 1)
    produce(kafka_broker, source, _rows(churn_model["rows"], 0, 20))
    streamer = Streamer(churn_model["onnx"], kafka_broker, source, "light", tmp_path / "run",
                        f"output={kafka_broker.url(output)}", "idle_exit_s=2", "metrics_port=0", code=BLOCKED_CLI)
    assert streamer.finish()["scored"] == 20
    assert "HEAVY MODULES: []" in streamer.output(), streamer.output()[-3000:]


# --- mistakes -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides, key", [
    (["source=localhost:9092/rows", "group=g", "output=kafka://localhost:9092/out"], "source"),
    (["source=kafka://localhost:9092/rows", "group=null", "output=kafka://localhost:9092/out"], "group"),
    (["source=kafka://localhost:9092/rows", "group=g"], "output"),
    (["source=kafka://localhost:9092/rows", "group=g", "output=kafka://localhost:9092/rows"], "output"),
    (["source=kafka://user:s3cr3tpw@localhost:9092/rows", "group=g", "output=kafka://localhost:9092/o"], "source"),
    (["source=kafka://localhost:9092/rows", "group=g", "output=kafka://localhost:9092/o",
      "kafka.sasl.password=hunter2"], "kafka.sasl.password"),
    (["source=kafka://localhost:9092/rows", "group=g", "output=kafka://localhost:9092/o", "max_batch_size=0"],
     "max_batch_size"),
])
def test_stream_mistakes_fail_before_connecting_naming_the_key(churn_model, tmp_path, overrides, key):
    result = run_cli("stream", f"model={churn_model['onnx']}", *overrides, f"hydra.run.dir={tmp_path / 'run'}",
                     cwd=tmp_path, timeout=120)
    assert result.returncode != 0
    assert f"config key `{key}`" in result.stdout + result.stderr
    assert "hunter2" not in result.stdout + result.stderr and "s3cr3tpw" not in result.stdout + result.stderr
