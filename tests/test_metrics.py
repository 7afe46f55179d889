"""An operator's story: Prometheus scrapes `visiontrain serve` and the stream's metrics port, and rolling drift
windows raise an alert when live traffic moves away from the training data.

One churn model (logistic regression, the fastest) is trained per module through the real CLI on a generated
table; the server is a real `visiontrain serve` subprocess, scraped over loopback with httpx, and the exposition
is read with prometheus-client's own parser.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageEnhance
from prometheus_client.parser import text_string_to_metric_families

from conftest import Server, run_cli

TOKEN = "metrics-test-token-0123456789ab"
AUTH = {"authorization": f"Bearer {TOKEN}"}
WINDOW = 200


@pytest.fixture(scope="module")
def churn(tmp_path_factory) -> dict[str, Any]:
    from visiontrain.tabular.builtin import generate_churn_table

    base = tmp_path_factory.mktemp("metrics_churn")
    generate_churn_table(rows=2000, seed=5).to_csv(base / "train.csv", index=False)
    result = run_cli("train", "experiment=churn", f"data.source={base / 'train.csv'}", "model=logistic_regression",
                     "trainer.enable_progress_bar=false", f"hydra.run.dir={base / 'run'}", cwd=base)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    generate_churn_table(rows=1500, seed=6).to_csv(base / "live.csv", index=False)  # same process, new draw
    live = pd.read_csv(base / "live.csv", dtype=str, keep_default_na=False)
    return {"base": base, "onnx": base / "run" / "model.onnx", "live": live}


def shifted(rows: pd.DataFrame) -> pd.DataFrame:
    """Customers who stay five times as long: tenure * 5 (blank tenure stays blank)."""
    moved = rows.copy()
    tenure = pd.to_numeric(moved["tenure"], errors="coerce") * 5
    moved["tenure"] = [f"{value:g}" if value == value else "" for value in tenure]
    return moved


def records(rows: pd.DataFrame) -> list[dict[str, str]]:
    return rows.to_dict("records")


def scrape(url: str, headers: dict[str, str] | None = None) -> dict[tuple[str, tuple], float]:
    """Every sample of a /metrics answer by (name, sorted labels), parsed as Prometheus reads it."""
    answer = httpx.get(url, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain"), answer.headers
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(answer.text) for sample in family.samples}


def value(samples: dict[tuple[str, tuple], float], name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, f"{name}{labels} not exposed; exposed: {sorted({n for n, _ in samples})}"
    return samples[key]


def labelled(samples: dict[tuple[str, tuple], float], name: str) -> dict[tuple, float]:
    return {labels: number for (sample, labels), number in samples.items() if sample == name}


# --- serve --------------------------------------------------------------------------------------------------


def test_serve_metrics_count_requests_batches_and_drift(churn):
    live = churn["live"]
    server = Server(churn["onnx"], churn["base"], f"drift_window={WINDOW}", "max_wait_ms=1",
                    env={"VISIONTRAIN_SERVE_TOKEN": TOKEN})
    try:
        predict = f"{server.url}/predict"
        good = [records(live.iloc[0:50]), records(live.iloc[50:120]), records(live.iloc[120:200]),  # window 0
                records(shifted(live.iloc[200:300])), records(shifted(live.iloc[300:400]))]  # window 1: moved
        for rows in good:
            answer = httpx.post(predict, json={"rows": rows}, headers=AUTH, timeout=30)
            assert answer.status_code == 200, answer.text
        bad_value = records(live.iloc[400:403])
        bad_value[1]["tenure"] = "abc"
        bad = [httpx.post(predict, json={"rows": bad_value}, headers=AUTH),  # 422, one row rejected
               httpx.post(predict, json={"rows": [{"tenure": 3}]}, headers=AUTH),  # 422, columns missing
               httpx.post(predict, content=b"tenure=3", headers={**AUTH, "content-type": "text/plain"}),  # 415
               httpx.post(predict, json={"rows": records(live.iloc[:2])})]  # 401, no token
        assert [answer.status_code for answer in bad] == [422, 422, 415, 401]
        assert httpx.get(f"{server.url}/metrics").status_code == 401  # behind the token like /predict
        samples = scrape(f"{server.url}/metrics", AUTH)
    finally:
        output = server.stop()

    requests = labelled(samples, "visiontrain_requests_total")
    predict_requests = {dict(labels)["code"]: count for labels, count in requests.items()
                        if dict(labels)["path"] == "/predict"}
    assert predict_requests == {"200": 5, "422": 2, "415": 1, "401": 1}, requests
    assert value(samples, "visiontrain_requests_total", path="/predict", outcome="ok", code="200") == 5
    assert value(samples, "visiontrain_requests_total", path="/predict", outcome="client_error",
                 code="422") == 2
    assert not any(dict(labels)["outcome"] == "server_error" for labels in requests)
    assert value(samples, "visiontrain_requests_total", path="/metrics", outcome="client_error",
                 code="401") == 1
    assert value(samples, "visiontrain_request_seconds_count", path="/predict") == 9  # one observation each
    assert value(samples, "visiontrain_request_seconds_bucket", path="/predict", le="+Inf") == 9
    assert value(samples, "visiontrain_request_seconds_sum", path="/predict") > 0

    scored = sum(len(rows) for rows in good)
    assert value(samples, "visiontrain_batch_size_sum") == scored == 400
    assert value(samples, "visiontrain_batch_size_count") == len(good)  # sent one after another: a batch each
    assert value(samples, "visiontrain_inputs_total") == scored
    assert value(samples, "visiontrain_batch_seconds_count") == value(samples, "visiontrain_batch_size_count")

    info = labelled(samples, "visiontrain_model_info")
    assert len(info) == 1 and list(info.values()) == [1.0]
    labels = dict(next(iter(info)))
    assert labels["sha256"] == hashlib.sha256(churn["onnx"].read_bytes()).hexdigest()
    assert labels["model"] == "model.onnx" and labels["task"] == "tabular_classification"
    assert labels["version"] == "run"  # the run folder the checkpoint came from

    assert value(samples, "visiontrain_drift_windows_total") == 2
    assert value(samples, "visiontrain_drift_drifted", feature="tenure") == 1  # the last window: moved
    assert value(samples, "visiontrain_drift_psi", feature="tenure") > 0.25
    assert value(samples, "visiontrain_drift_ks_statistic", feature="tenure") > 0.1
    assert value(samples, "visiontrain_drift_drifted", feature="gender") == 0
    assert value(samples, "visiontrain_drift_alerts_total", feature="tenure") == 1  # window 0 did not alert
    assert value(samples, "visiontrain_window_inputs", outcome="scored") == WINDOW
    assert value(samples, "visiontrain_window_inputs", outcome="rejected") == 0  # the bad row came after it
    alerts = [line for line in output.splitlines() if "DRIFT in" in line]
    assert len(alerts) == 1 and "WARNING" in alerts[0] and "drift window 1" in alerts[0], output[-3000:]
    assert "tenure (PSI" in alerts[0], alerts


def darkened(path: Path, factor: float = 0.3) -> bytes:
    """The photo as a JPEG taken in far worse light."""
    with Image.open(path) as image:
        buffer = io.BytesIO()
        ImageEnhance.Brightness(image.convert("RGB")).enhance(factor).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_serve_watches_image_statistics_for_drift(tiny_hymenoptera, tiny_image_run, tmp_path):
    onnx = tiny_image_run / "model.onnx"
    photos = sorted((tiny_hymenoptera / "train").rglob("*.jp*g"))  # the reference's photos, in worse light
    server = Server(onnx, tmp_path, f"drift_window={len(photos)}")
    try:
        not_an_image = [("files", ("notes.jpg", b"not an image", "image/jpeg"))]
        refused = httpx.post(f"{server.url}/predict", files=not_an_image)
        assert refused.status_code == 400, refused.text
        files = [("files", (path.name, darkened(path), "image/jpeg")) for path in photos]
        answer = httpx.post(f"{server.url}/predict", files=files, timeout=30)
        assert answer.status_code == 200, answer.text
        samples = scrape(f"{server.url}/metrics")
    finally:
        output = server.stop()
    assert value(samples, "visiontrain_inputs_total") == len(photos)
    assert value(samples, "visiontrain_drift_windows_total") == 1
    assert value(samples, "visiontrain_drift_drifted", feature="brightness") == 1
    assert value(samples, "visiontrain_window_inputs", outcome="scored") == len(photos)
    assert value(samples, "visiontrain_window_inputs", outcome="rejected") == 1  # the file that is no image
    measured = {dict(labels)["feature"] for labels in labelled(samples, "visiontrain_drift_psi")}
    assert {"brightness", "width", "output: confidence"} <= measured
    assert "brightness (PSI" in next(line for line in output.splitlines() if "DRIFT in" in line), output[-3000:]


def serve_options(model: Path, *overrides: str):
    """conf/serve.yaml with ``overrides``, as `visiontrain serve` parses it: the settings the app receives."""
    from hydra import compose, initialize

    from visiontrain.cli import _store_config
    from visiontrain.config.checks import check_serve_config

    with initialize(version_base="1.3", config_path=None):
        return check_serve_config(compose(_store_config("serve"), overrides=[f"model={model}", *overrides]))


def test_drift_window_is_checked_before_the_server_starts(churn, tmp_path):
    from visiontrain.errors import ConfigError

    assert serve_options(churn["onnx"]).drift_window == 0  # conf/serve.yaml's default
    assert serve_options(churn["onnx"], "drift_window=500").drift_window == 500
    for given in ("-1", "ten", "2.5", "true"):
        with pytest.raises(ConfigError, match="drift_window"):
            serve_options(churn["onnx"], f"drift_window={given}")
    result = run_cli("serve", f"model={churn['onnx']}", "drift_window=-1", cwd=tmp_path, timeout=120)
    assert result.returncode != 0
    assert "config key `drift_window`" in result.stderr, result.stderr[-2000:]
    assert "drift_window=1000" in result.stderr


def test_drift_window_needs_a_model_that_carries_its_reference(churn, tmp_path):
    import onnx

    from visiontrain.deploy.serve import create_app
    from visiontrain.errors import ConfigError
    from visiontrain.inference.onnx_model import OnnxModel

    stored = onnx.load(str(churn["onnx"]))
    kept = [prop for prop in stored.metadata_props if prop.key != "reference_stats"]
    del stored.metadata_props[:]
    stored.metadata_props.extend(kept)
    onnx.save(stored, str(tmp_path / "older.onnx"))
    older = OnnxModel(tmp_path / "older.onnx")
    assert older.metadata.reference_stats is None
    create_app(older, serve_options(older.path))  # without drift windows it serves as before
    with pytest.raises(ConfigError, match="carries no reference statistics"):
        create_app(older, serve_options(older.path, "drift_window=100"))


# --- rolling drift windows ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scoring(churn) -> dict[str, Any]:
    """The model, its reference, and what serve computes for rows: cleansed inputs and outputs."""
    from visiontrain.deploy.table_input import TableSpec, prepare_rows
    from visiontrain.inference.onnx_model import OnnxModel
    from visiontrain.monitoring.current import prediction_outputs

    model = OnnxModel(churn["onnx"])
    spec = TableSpec.from_metadata(model.metadata, model.input_columns())

    def score(rows: pd.DataFrame) -> tuple[dict[str, Any], dict[str, Any]]:
        prepared = prepare_rows(records(rows), spec)
        assert not prepared.rejects, prepared.rejects
        return prepared.values, prediction_outputs(model.score(prepared.feeds()))

    return {"model": model, "reference": model.metadata.reference_stats, "score": score}


def test_rows_like_the_training_data_raise_no_alert(churn, scoring):
    from visiontrain.monitoring.rolling import RollingDrift

    rolling = RollingDrift(scoring["reference"], 500)
    windows = rolling.add(*scoring["score"](churn["live"].iloc[:1000]))
    assert [window.index for window in windows] == [0, 1]
    for window in windows:
        assert not window.alert and window.drifted == (), window.describe()
        assert window.inputs == 500 and set(window.psi) >= {"tenure", "Contract", "output: confidence"}
        assert "no drift" in window.describe()


def test_shifted_rows_raise_an_alert_naming_the_feature(churn, scoring):
    from visiontrain.monitoring.rolling import RollingDrift

    rolling = RollingDrift(scoring["reference"], 500)
    inputs, outputs = scoring["score"](shifted(churn["live"].iloc[:500]))
    [window] = rolling.add(inputs, outputs, rejected=3)
    assert window.alert and "tenure" in window.drifted and window.psi["tenure"] > 0.25
    assert window.rejected == 3 and window.inputs == 500
    assert f"tenure (PSI {window.psi['tenure']:.3f})" in window.describe()
    assert "DRIFT in" in window.describe() and "3 rejected" in window.describe()
    message = json.loads(json.dumps(window.as_dict()))  # what an alert topic carries
    assert message["alert"] is True and "tenure" in message["drifted"] and message["index"] == 0
    assert message["psi"]["tenure"] == pytest.approx(window.psi["tenure"])


def test_windows_close_at_their_boundaries(churn, scoring):
    from visiontrain.monitoring.rolling import RollingDrift

    inputs, outputs = scoring["score"](churn["live"].iloc[:250])  # 2.5 windows of 100
    rolling = RollingDrift(scoring["reference"], 100)
    finished = []
    for start in range(0, 250, 30):  # uneven chunks, crossing the boundaries mid-chunk
        chunk_in = {name: values[start:start + 30] for name, values in inputs.items()}
        chunk_out = {name: values[start:start + 30] for name, values in outputs.items()}
        finished += rolling.add(chunk_in, chunk_out, rejected=1 if start == 60 else 0)
    assert [(window.index, window.inputs, window.rejected) for window in finished] == [(0, 100, 1), (1, 100, 0)]
    assert rolling.add({}, rejected=2) == []  # only refused inputs: nothing to compare yet
    tail_in = {name: values[:50] for name, values in inputs.items()}
    tail_out = {name: values[:50] for name, values in outputs.items()}
    [third] = rolling.add(tail_in, tail_out)
    assert (third.index, third.inputs, third.rejected) == (2, 100, 2)


def test_a_window_measures_what_visiontrain_drift_measures(churn, scoring):
    from visiontrain.monitoring.current import table_inputs
    from visiontrain.monitoring.drift import Thresholds, compare
    from visiontrain.monitoring.rolling import RollingDrift

    rows = shifted(churn["live"].iloc[500:900])
    inputs, outputs = scoring["score"](rows)
    [window] = RollingDrift(scoring["reference"], len(rows)).add(inputs, outputs)
    reference = scoring["reference"]
    from_file = table_inputs(rows, reference["inputs"])  # the path `visiontrain drift current=<table>` takes
    expected = compare(reference, from_file.values, outputs, Thresholds())
    measured = {row["feature"]: row for row in expected["features"] + expected["outputs"]}
    assert set(window.psi) == set(measured)
    for feature, row in measured.items():
        assert window.psi[feature] == pytest.approx(row["psi"], rel=1e-12), feature
        if "ks_statistic" in row:
            assert window.ks_statistic[feature] == pytest.approx(row["ks_statistic"], rel=1e-12), feature
            assert window.ks_pvalue[feature] == pytest.approx(row["ks_pvalue"], rel=1e-12, abs=1e-300), feature
    assert list(window.drifted) == expected["drifted"]


def test_rolling_drift_refuses_what_cannot_be_windowed(scoring):
    from visiontrain.monitoring.rolling import RollingDrift

    for window in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="window must be"):
            RollingDrift(scoring["reference"], window)
    with pytest.raises(ValueError, match="reference_stats"):
        RollingDrift({}, 10)
    rolling = RollingDrift(scoring["reference"], 10)
    with pytest.raises(ValueError, match="differ in length"):
        rolling.add({"tenure": [1.0, 2.0], "gender": ["Male"]})
    with pytest.raises(ValueError, match="one output per scored input"):
        rolling.add({"tenure": [1.0, 2.0]}, {"confidence": [0.5]})


# --- stream metrics -----------------------------------------------------------------------------------------


def test_stream_metrics_are_served_on_their_own_port(churn, scoring):
    from visiontrain.deploy.metrics import StreamMetrics
    from visiontrain.monitoring.rolling import RollingDrift

    [window] = RollingDrift(scoring["reference"], 300).add(*scoring["score"](shifted(churn["live"].iloc[:300])),
                                                          rejected=4)
    metrics = StreamMetrics(scoring["model"])
    port = metrics.serve_http("127.0.0.1", 0)
    try:
        assert port > 0
        metrics.messages("scored", "events", 0, count=40)
        metrics.messages("scored", "events", 1, count=25)
        metrics.messages("rejected", "events", 1)
        with pytest.raises(ValueError, match="scored, rejected"):
            metrics.messages("lost", "events", 0)
        metrics.batch(40, 0.004)
        metrics.batch(25, 0.003)
        for seconds in (0.002, 0.03, 0.2, 4.0):
            metrics.latency(seconds)
        metrics.lag("events", 0, 12)
        metrics.lag("events", 1, 0)
        metrics.drift(window)
        samples = scrape(f"http://127.0.0.1:{port}/metrics")
    finally:
        metrics.close()

    assert value(samples, "visiontrain_messages_total", outcome="scored", topic="events", partition="0") == 40
    assert value(samples, "visiontrain_messages_total", outcome="scored", topic="events", partition="1") == 25
    assert value(samples, "visiontrain_messages_total", outcome="rejected", topic="events", partition="1") == 1
    assert value(samples, "visiontrain_batch_size_count") == 2
    assert value(samples, "visiontrain_batch_size_sum") == 65
    assert value(samples, "visiontrain_batch_seconds_sum") == pytest.approx(0.007)
    assert value(samples, "visiontrain_inputs_total") == 65
    assert value(samples, "visiontrain_end_to_end_seconds_count") == 4
    assert value(samples, "visiontrain_end_to_end_seconds_bucket", le="0.001") == 0
    assert value(samples, "visiontrain_end_to_end_seconds_bucket", le="0.0025") == 1
    assert value(samples, "visiontrain_end_to_end_seconds_bucket", le="0.25") == 3
    assert value(samples, "visiontrain_end_to_end_seconds_bucket", le="10.0") == 4
    assert value(samples, "visiontrain_consumer_lag", topic="events", partition="0") == 12
    assert value(samples, "visiontrain_consumer_lag", topic="events", partition="1") == 0
    assert value(samples, "visiontrain_drift_windows_total") == 1
    assert value(samples, "visiontrain_drift_drifted", feature="tenure") == 1
    assert value(samples, "visiontrain_drift_psi", feature="tenure") == pytest.approx(window.psi["tenure"])
    assert value(samples, "visiontrain_drift_alerts_total", feature="tenure") == 1
    assert value(samples, "visiontrain_window_inputs", outcome="scored") == 300
    assert value(samples, "visiontrain_window_inputs", outcome="rejected") == 4
    info = dict(next(iter(labelled(samples, "visiontrain_model_info"))))
    assert info["sha256"] == scoring["model"].version
    with pytest.raises(httpx.TransportError):  # close() stopped the server
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_each_app_has_its_own_registry(scoring):
    from visiontrain.deploy.metrics import ServeMetrics, StreamMetrics

    first, second = StreamMetrics(scoring["model"]), ServeMetrics(scoring["model"])
    first.batch(10, 0.01)
    assert b"visiontrain_inputs_total 10.0" in first.exposition()[0]
    assert b"visiontrain_inputs_total 0.0" in second.exposition()[0]
    assert b"visiontrain_messages_total" not in second.exposition()[0]
    assert np.isclose(first.registry.get_sample_value("visiontrain_batch_seconds_sum"), 0.01)


def test_requests_that_fail_inside_the_app_count_as_server_errors(scoring):
    from fastapi import FastAPI, HTTPException

    from visiontrain.deploy.metrics import RequestMetrics, ServeMetrics

    metrics = ServeMetrics(scoring["model"])
    app = FastAPI()

    @app.get("/predict")
    async def broken() -> None:
        raise RuntimeError("a bug, not the client's mistake")

    @app.get("/metadata")
    async def unavailable() -> None:
        raise HTTPException(503, "warming up")

    app.add_middleware(RequestMetrics, metrics=metrics)

    async def calls() -> list[int]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [(await client.get(path)).status_code for path in ("/predict", "/metadata", "/no/such/path")]

    assert asyncio.run(calls()) == [500, 503, 404]
    sample = metrics.registry.get_sample_value
    assert sample("visiontrain_requests_total", {"path": "/predict", "outcome": "server_error", "code": "500"}) == 1
    assert sample("visiontrain_requests_total", {"path": "/metadata", "outcome": "server_error", "code": "503"}) == 1
    assert sample("visiontrain_requests_total", {"path": "other", "outcome": "client_error", "code": "404"}) == 1
    assert sample("visiontrain_request_seconds_count", {"path": "/predict"}) == 1
