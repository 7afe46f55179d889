"""A deployer's story: two versions of the churn model in a registry, served side by side and switched under load.

v1 and v2 are real churn models trained differently (logistic regression with C=1 and C=0.003: other
probabilities for the same customer), trained once per module in one real multirun. The registry is a real
folder written with :class:`ModelRegistry` (the ``visiontrain models`` command over it is written separately).
The server is the real ``visiontrain serve registry=... model=churn`` in a subprocess, or the real app as that
command builds it under uvicorn in a thread; both are called over loopback with httpx.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import pandas as pd
import pytest
import uvicorn

from conftest import Server, free_port, run_cli

POLL = "registry_poll_s=0.1"


# --- fixtures: two real versions, a registry ----------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Any]:
    """Two churn models from one multirun (one process: the imports are paid once)."""
    base = tmp_path_factory.mktemp("rollout")
    result = run_cli("train", "-m", "experiment=churn", "model=logistic_regression",
                     "model.estimator.classification.C=1.0,0.003", "trainer.enable_progress_bar=false",
                     f"hydra.sweep.dir={base / 'sweep'}", cwd=base, env={"VISIONTRAIN_CACHE_DIR": str(base / "cache")})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    raw = pd.read_csv(base / "cache" / "datasets" / "churn-generated.csv", dtype=str, keep_default_na=False)
    runs = [base / "sweep" / "0", base / "sweep" / "1"]
    return {"base": base, "runs": runs, "rows": raw.head(40).to_dict("records"), "raw": raw}


@pytest.fixture()
def registry(trained, tmp_path):
    """churn v1 and v2 registered with their training records; production -> v1."""
    from visiontrain.model_registry.records import training_record
    from visiontrain.model_registry.store import ModelRegistry

    registry = ModelRegistry(tmp_path / "registry")
    for run in trained["runs"]:
        registry.register("churn", run / "model.onnx", training_record(run))
    registry.promote("churn", 1, reason="first release")
    return registry


def expected(trained: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Each version's probabilities for ``rows``, computed outside any server."""
    from visiontrain.deploy.table_input import TableSpec, prepare_rows
    from visiontrain.inference.onnx_model import OnnxModel

    found = {}
    for number, run in enumerate(trained["runs"], start=1):
        model = OnnxModel(run / "model.onnx")
        spec = TableSpec.from_metadata(model.metadata, model.input_columns())
        found[f"churn:v{number}"] = [p["probability"] for p in model.score(prepare_rows(rows, spec).feeds())]
    return found


def parsed_options(*overrides: str):
    """conf/serve.yaml with ``overrides``, parsed as `visiontrain serve` parses it."""
    from hydra import compose, initialize

    from visiontrain.cli import _store_config
    from visiontrain.config.checks import check_serve_config

    with initialize(version_base="1.3", config_path=None):
        return check_serve_config(compose(_store_config("serve"), overrides=list(overrides)))


def serve_options(registry, *overrides: str):
    """The options of `visiontrain serve registry=<registry> model=churn <overrides>`."""
    return parsed_options("model=churn", f"registry={registry.url}", *overrides)


class ThreadServer:
    """The app `visiontrain serve registry=...` builds (``registry`` None: `serve model=<model_file>`), under a
    real uvicorn in a thread of this process."""

    def __init__(self, registry, *overrides: str, model_file: Path | None = None) -> None:
        from visiontrain.deploy.rollout import open_rollout
        from visiontrain.deploy.serve import create_app
        from visiontrain.inference.onnx_model import OnnxModel

        if registry is None:
            self.options = parsed_options(f"model={model_file}", *overrides)
            source: Any = OnnxModel(model_file)
        else:
            self.options = serve_options(registry, *overrides)
            source = open_rollout(self.options)
        self.url = f"http://127.0.0.1:{free_port()}"
        config = uvicorn.Config(create_app(source, self.options), host="127.0.0.1",
                                port=int(self.url.rsplit(":", 1)[1]), log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.server.started, "uvicorn did not start"

    def __enter__(self) -> ThreadServer:
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def predict(self, rows: list[dict[str, Any]], **headers: str) -> httpx.Response:
        response = httpx.post(f"{self.url}/predict", json={"rows": rows}, headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        return response


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"waited {timeout:g} s for {what}")


def health(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/health", timeout=10).json()


def samples(url: str) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics by (name, sorted labels), as Prometheus parses the exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def metric(found: dict[tuple[str, tuple], float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def probabilities(response: httpx.Response) -> list[float]:
    return [p["probability"] for p in response.json()["predictions"]]


# --- under load: a promote and a rollback while 16 clients keep asking ----------------------------------------


async def load_across_a_move(url: str, rows: list[dict[str, Any]], move: Callable[[], Any], revision: int,
                             total: int = 200, after: int = 40) -> dict[str, Any]:
    """``total`` requests or more, 16 at a time; once 50 have answered, ``move()`` (an alias move) runs, and the
    load goes on until ``after`` requests have started after /health showed ``revision``. Returns each answer with
    when it was sent and received, and when the move began and the switch showed."""
    answers: list[tuple[float, float, httpx.Response | Exception]] = []
    marks: dict[str, float] = {}

    async def client_loop(client: httpx.AsyncClient) -> None:
        while len(answers) < total or sum(sent > marks.get("seen", float("inf")) for sent, _, _ in answers) < after:
            sent = time.monotonic()
            try:
                answer: httpx.Response | Exception = await client.post("/predict", json={"rows": rows})
            except httpx.HTTPError as error:
                answer = error
            answers.append((sent, time.monotonic(), answer))
            if len(answers) > 5000:
                raise AssertionError("the switch never showed in /health")

    async def mover(client: httpx.AsyncClient) -> None:
        while len(answers) < 50:
            await asyncio.sleep(0.005)
        marks["moved"] = time.monotonic()
        await asyncio.to_thread(move)
        while (await client.get("/health")).json()["routing"]["revision"] != revision:
            await asyncio.sleep(0.01)
        marks["seen"] = time.monotonic()

    async with httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=17), timeout=60) as client:
        await asyncio.gather(mover(client), *(client_loop(client) for _ in range(16)))
    return {"answers": answers, **marks}


def check_the_switch(run: dict[str, Any], before: str, after: str, expected: dict[str, list[float]]) -> None:
    """Zero failures; every answer from the version it names, with that version's probabilities; everything
    answered before the move from ``before``, everything sent after the switch showed from ``after`` (requests in
    flight across the switch may be either)."""
    failed = [answer for _, _, answer in run["answers"] if not isinstance(answer, httpx.Response)
              or answer.status_code != 200]
    assert failed == [], failed[:3]
    versions = []
    for sent, received, answer in run["answers"]:
        body = answer.json()
        version = body["model_version"]
        assert answer.headers["x-model-version"] == version
        assert {p["model_version"] for p in body["predictions"]} == {version}
        assert probabilities(answer) == pytest.approx(expected[version], abs=1e-6)
        versions.append((sent, received, version))
    assert {version for _, received, version in versions if received < run["moved"]} == {before}
    assert {version for sent, _, version in versions if sent > run["seen"]} == {after}
    assert sum(sent > run["seen"] for sent, _, _ in versions) >= 40


def test_production_answers_and_a_promote_then_a_rollback_under_load_fail_no_request(registry, trained, tmp_path):
    rows = trained["rows"][:5]
    want = expected(trained, rows)
    assert want["churn:v1"] != pytest.approx(want["churn:v2"], abs=1e-3)  # two models, two answers
    log = tmp_path / "served.jsonl"
    server = Server("churn", tmp_path, f"registry={registry.url}", POLL, "max_wait_ms=1", f"log_predictions={log}")
    try:
        answer = httpx.post(f"{server.url}/predict", json={"rows": rows}, timeout=30)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        v1 = registry.version("churn", 1)
        assert (body["model_version"], body["model_sha256"]) == ("churn:v1", v1.sha256)
        assert answer.headers["x-model-version"] == "churn:v1"
        assert [p["model_version"] for p in body["predictions"]] == ["churn:v1"] * len(rows)
        assert probabilities(answer) == pytest.approx(want["churn:v1"], abs=1e-6)
        state = health(server.url)
        assert state["routing"] == {"revision": 1, "aliases": {"production": 1}, "production": "churn:v1",
                                    "candidate": None, "canary_share": 0.0, "sticky_key": None, "shadow": False}
        assert [version["version"] for version in state["versions"]] == ["churn:v1"]
        meta = httpx.get(f"{server.url}/metadata").json()
        assert meta["model_version"] == "churn:v1" and meta["registry"] == str(registry.url)
        assert meta["positive_label"] == "Yes" and meta["routing"]["production"] == "churn:v1"

        promoted = asyncio.run(load_across_a_move(server.url, rows, lambda: registry.promote("churn", 2), 2))
        check_the_switch(promoted, "churn:v1", "churn:v2", want)
        wait_for(lambda: [v["version"] for v in health(server.url)["versions"]] == ["churn:v2"],
                 "v1 to be closed once its last request answered")

        rolled_back = asyncio.run(load_across_a_move(server.url, rows, lambda: registry.rollback("churn"), 3))
        check_the_switch(rolled_back, "churn:v2", "churn:v1", want)
        found = samples(server.url)
    finally:
        output = server.stop()

    assert "visiontrain serve: churn from registry" in output, output[-3000:]
    assert "production: churn:v1 (sha256:" in output and "candidate: none" in output
    assert "serve: production churn:v1 -> churn:v2 (revision 2)" in output, output[-3000:]
    assert "serve: production churn:v2 -> churn:v1 (revision 3)" in output
    assert "serve: churn:v1 closed" in output

    answered = {version: sum(answer.json()["model_version"] == version for run in (promoted, rolled_back)
                             for _, _, answer in run["answers"]) for version in ("churn:v1", "churn:v2")}
    for version in ("churn:v1", "churn:v2"):  # every scoring metric says which version scored
        assert metric(found, "visiontrain_inputs_total", version=version) >= answered[version] * len(rows) > 0
        assert metric(found, "visiontrain_batch_size_count", version=version) > 0
        assert metric(found, "visiontrain_routed_inputs_total", version=version, role="production") > 0
        assert metric(found, "visiontrain_requests_total", path="/predict", outcome="ok", code="200",
                      version=version) > 0
    assert metric(found, "visiontrain_registry_switches_total") == 2
    assert metric(found, "visiontrain_registry_revision") == 3
    assert metric(found, "visiontrain_registry_alias", alias="production", version="churn:v1") == 1
    info = [dict(labels) for name, labels in found if name == "visiontrain_model_info"]
    assert [(i["model"], i["version"]) for i in info] == [("churn", "churn:v1")]  # v2 closed, its series gone

    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert {(line["model_version"], line["role"]) for line in logged} == {("churn:v1", "production"),
                                                                          ("churn:v2", "production")}


# --- canary: a share of the users, each always on one version ---------------------------------------------------


def test_a_header_sticky_key_keeps_each_user_on_one_version(registry, trained):
    registry.promote("churn", 2, to="candidate", reason="try C=0.003 on 30% of the users")
    row = trained["rows"][:1]
    want = expected(trained, row)
    users = [f"user-{index:04d}" for index in range(200)]
    with ThreadServer(registry, "canary_share=0.3", "sticky_key=header:X-User-Id") as server:
        async def ask(order: list[str]) -> dict[str, str]:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                gate = asyncio.Semaphore(16)

                async def one(user: str) -> tuple[str, str]:
                    async with gate:
                        answer = await client.post("/predict", json={"rows": row}, headers={"X-User-Id": user})
                    assert answer.status_code == 200, answer.text
                    version = answer.json()["model_version"]
                    assert probabilities(answer) == pytest.approx(want[version], abs=1e-6)
                    return user, version

                return dict(await asyncio.gather(*(one(user) for user in order)))

        first = asyncio.run(ask(users))
        again = asyncio.run(ask(users[::-1]))
        anonymous = [server.predict(row).json()["model_version"] for _ in range(60)]  # no header: a draw each
    assert again == first  # one user, one version
    share = sum(version == "churn:v2" for version in first.values()) / len(users)
    assert 0.2 <= share <= 0.4, share  # 200 fixed users: the sha256 points are the same on every run
    assert 5 <= anonymous.count("churn:v2") <= 35, anonymous.count("churn:v2")

    with ThreadServer(registry, "canary_share=0.3", "sticky_key=field:customerID") as server:  # the same hash
        keyed = [{**row[0], "customerID": user} for user in users]
        by_field = [p["model_version"] for p in server.predict(keyed).json()["predictions"]]
    assert by_field == [first[user] for user in users]


def test_a_field_sticky_key_routes_each_row_and_a_raised_share_only_moves_users_to_the_candidate(registry, trained):
    registry.promote("churn", 2, to="candidate")
    raw = trained["raw"]
    customers = [{**row, "customerID": f"C-{index:05d}"} for index, row in
                 enumerate(raw.sample(2000, replace=True, random_state=0).to_dict("records"))]
    mixed = customers[:40]
    want = expected(trained, mixed)
    with ThreadServer(registry, "canary_share=0.3", "sticky_key=field:customerID", "max_rows=1000") as server:
        answer = server.predict(mixed)
        body = answer.json()
        versions = [p["model_version"] for p in body["predictions"]]
        assert body["model_version"] == "mixed" and body["model_sha256"] is None
        assert set(versions) == {"churn:v1", "churn:v2"}
        assert set(answer.headers["x-model-version"].split(", ")) == {"churn:v1", "churn:v2"}
        for position, prediction in enumerate(body["predictions"]):  # merged back in the request's order
            assert prediction["probability"] == pytest.approx(want[prediction["model_version"]][position], abs=1e-6)
        assert [p["model_version"] for p in server.predict(mixed[::-1]).json()["predictions"]] == versions[::-1]
        twice = server.predict([mixed[0], mixed[1], mixed[0]]).json()["predictions"]
        assert twice[0]["model_version"] == twice[2]["model_version"] == versions[0]
        unkeyed = server.predict([{**row, "customerID": ""} for row in mixed[:20]]).json()["predictions"]
        assert len({p["model_version"] for p in unkeyed}) == 1  # rows without the key share one draw

        at_30 = [p["model_version"] for part in (customers[:1000], customers[1000:])
                 for p in server.predict(part).json()["predictions"]]
    with ThreadServer(registry, "canary_share=0.6", "sticky_key=field:customerID", "max_rows=1000") as server:
        at_60 = [p["model_version"] for part in (customers[:1000], customers[1000:])
                 for p in server.predict(part).json()["predictions"]]
    assert abs(at_30.count("churn:v2") / 2000 - 0.3) < 0.03
    assert abs(at_60.count("churn:v2") / 2000 - 0.6) < 0.03
    moved = {(before, after) for before, after in zip(at_30, at_60)}
    assert ("churn:v2", "churn:v1") not in moved  # raising the share never sends a user back


# --- shadow: the candidate scores a copy, production answers ----------------------------------------------------


def test_shadow_scores_a_copy_that_is_logged_and_measured_but_never_returned(registry, trained, tmp_path):
    from visiontrain.monitoring.current import prediction_log

    registry.promote("churn", 2, to="candidate", reason="shadow before any canary")
    rows = trained["rows"][:10]
    want = expected(trained, rows)
    log = tmp_path / "served.jsonl"
    with ThreadServer(registry, "shadow=true", f"log_predictions={log}") as server:
        for _ in range(30):
            answer = server.predict(rows)
            assert answer.json()["model_version"] == "churn:v1" and answer.headers["x-model-version"] == "churn:v1"
            assert probabilities(answer) == pytest.approx(want["churn:v1"], abs=1e-6)
        found = wait_for(lambda: (s := samples(server.url)) and metric(
            s, "visiontrain_routed_inputs_total", version="churn:v2", role="shadow") == 300 and s,
            "the 30 shadow copies to be scored")
        state = health(server.url)
        registry.promote("churn", 2, reason="the shadow agreed")  # the shadow load never answers: v2 is loaded
        promoted = wait_for(lambda: (s := health(server.url))["routing"]["production"] == "churn:v2" and s,
                            "v2 in production")  # again, at normal priority, to answer
    assert state["routing"]["shadow"] is True and state["routing"]["candidate"] == "churn:v2"
    roles = {v["role"]: v for v in state["versions"]}
    assert roles["candidate"]["background"] is True and roles["production"]["background"] is False
    assert {v["role"]: v["background"] for v in promoted["versions"]}["production"] is False

    assert metric(found, "visiontrain_routed_inputs_total", version="churn:v1", role="production") == 300
    assert metric(found, "visiontrain_routed_inputs_total", version="churn:v2", role="candidate") == 0
    agreed = metric(found, "visiontrain_shadow_comparisons_total", version="churn:v2", agreed="true")
    disagreed = metric(found, "visiontrain_shadow_comparisons_total", version="churn:v2", agreed="false")
    assert agreed + disagreed == 300
    assert ("visiontrain_shadow_dropped_total", (("version", "churn:v2"),)) in found  # exposed, at 0
    assert metric(found, "visiontrain_shadow_dropped_total", version="churn:v2") == 0
    for version in ("churn:v1", "churn:v2"):
        assert metric(found, "visiontrain_inputs_total", version=version) == 300
        assert metric(found, "visiontrain_model_info", model="churn", version=version,
                      sha256=registry.version("churn", version[-1]).sha256, task="tabular_classification") == 1

    logged = [json.loads(line) for line in log.read_text().splitlines()]
    shadow = [line for line in logged if line["role"] == "shadow"]
    assert len(shadow) == 300 and {line["model_version"] for line in shadow} == {"churn:v2"}
    assert [line["output"]["probability"] for line in shadow[:10]] == pytest.approx(want["churn:v2"], abs=1e-6)
    assert {line["role"] for line in logged} == {"production", "shadow"}
    labels = [line["output"]["label"] for line in logged if line["role"] == "production"]
    assert agreed == sum(a == b for a, b in zip(labels, [line["output"]["label"] for line in shadow]))
    assert len(prediction_log(log)) == 300  # `visiontrain drift` reads production's lines only


def test_a_shadow_scores_on_the_lowest_priority_thread():
    from visiontrain.deploy.batcher import Batcher

    def niceness(payloads: list[int]) -> list[int]:
        return [os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) for _ in payloads]

    async def scored(nice: int) -> int:
        batcher = Batcher(niceness, nice=nice)
        batcher.start()
        try:
            return await batcher.submit(0, 1)
        finally:
            await batcher.close()

    assert asyncio.run(scored(19)) == 19  # the shadow's model calls: only what the answers leave idle
    assert asyncio.run(scored(0)) == os.getpriority(os.PRIO_PROCESS, 0)  # answers: as the server runs


def test_a_full_shadow_queue_drops_copies_without_delaying_anyone(trained):
    """16 copies offered to a queue of 4 whose scorer is stuck: 4 wait, 12 are dropped and counted, and no offer
    waits; once the scorer moves, every lease is given back."""
    from visiontrain.deploy.deployed import Deployed
    from visiontrain.deploy.shadow import ShadowCopy, ShadowQueue
    from visiontrain.inference.onnx_model import OnnxModel

    onnx = trained["runs"][1] / "model.onnx"
    target = Deployed(OnnxModel(onnx), "churn:v2", parsed_options(f"model={onnx}"))
    dropped: list[ShadowCopy] = []

    async def story() -> tuple[list[bool], float, int]:
        stuck = asyncio.Event()

        async def score(_: ShadowCopy) -> None:
            await stuck.wait()

        queue = ShadowQueue(score, dropped.append, lambda copy, error: None, size=4, workers=1)
        queue.start()
        taken = [queue.offer(ShadowCopy(target, [], [], "churn:v1"))]
        await asyncio.sleep(0.01)  # the worker takes it, and waits
        started = time.perf_counter()
        taken += [queue.offer(ShadowCopy(target, [], [], "churn:v1")) for _ in range(16)]
        offering = time.perf_counter() - started
        await asyncio.sleep(0.05)
        held = target.in_flight
        stuck.set()
        while target.in_flight:
            await asyncio.sleep(0.01)
        await queue.close()
        return taken, offering, held

    taken, offering, held = asyncio.run(story())
    assert taken.count(True) == 5 and len(dropped) == 12  # one being scored, four waiting
    assert held == 5 and target.in_flight == 0
    assert offering < 0.05


# --- what a switch refuses -------------------------------------------------------------------------------------


def other_columns(source: Path, target: Path) -> Path:
    """``source`` as a model that reads ``tenure_months`` instead of ``tenure`` (graph and metadata alike)."""
    import onnx

    model = onnx.load(str(source))
    for value in (*model.graph.input,):
        if value.name == "tenure":
            value.name = "tenure_months"
    for node in model.graph.node:
        node.input[:] = ["tenure_months" if name == "tenure" else name for name in node.input]
    for prop in model.metadata_props:
        if prop.key in ("input_columns", "column_order"):
            prop.value = prop.value.replace('"tenure"', '"tenure_months"')
    onnx.save(model, str(target))
    return target


def test_a_version_that_cannot_serve_never_replaces_what_answers(registry, trained, tmp_path):
    rows = trained["rows"][:5]
    want = expected(trained, rows)
    garbage = tmp_path / "model.onnx"
    garbage.write_text("this is not an ONNX model\n")
    with ThreadServer(registry, POLL, "canary_share=0.5") as server:
        registry.register("churn", garbage, note="a text file")  # v3
        registry.promote("churn", 3, to="candidate")  # revision 2
        state = wait_for(lambda: (s := health(server.url))["routing"]["revision"] == 2 and s, "revision 2")
        assert state["routing"]["candidate"] is None and "churn:v3" in state["registry_error"]
        assert "not a loadable ONNX model" in state["registry_error"]
        for _ in range(10):  # production answers everything meanwhile
            assert probabilities(server.predict(rows)) == pytest.approx(want["churn:v1"], abs=1e-6)

        v4 = registry.register("churn", trained["runs"][1] / "model.onnx", note="to be damaged")
        stored = Path(registry.root) / "churn" / "versions" / "4" / "model.onnx"
        stored.write_bytes(stored.read_bytes()[:-16] + b"\0" * 16)  # changed after registration
        registry.promote("churn", v4.version)  # revision 3: production -> a file that is not what was registered
        state = wait_for(lambda: (s := health(server.url))["registry_error"] and "revision 3" in
                         s["registry_error"] and s, "revision 3 to be refused")
        assert "sha256" in state["registry_error"] and state["routing"]["production"] == "churn:v1"
        assert server.predict(rows).json()["model_version"] == "churn:v1"

        v5 = registry.register("churn", other_columns(trained["runs"][1] / "model.onnx", tmp_path / "v5.onnx"))
        registry.promote("churn", v5.version)  # revision 4: clients could not send it the same rows
        state = wait_for(lambda: (s := health(server.url))["registry_error"] and "revision 4" in
                         s["registry_error"] and s, "revision 4 to be refused")
        assert "input columns differ" in state["registry_error"] and "tenure" in state["registry_error"]

        registry.promote("churn", 2)  # revision 5: a good version is served as soon as the aliases move again
        state = wait_for(lambda: (s := health(server.url))["routing"]["production"] == "churn:v2" and s,
                         "the good version")
        assert probabilities(server.predict(rows)) == pytest.approx(want["churn:v2"], abs=1e-6)
        assert "revision 5: candidate churn:v3" in state["registry_error"]  # tried again, still no model
        registry.move_alias("churn", "candidate", None, action="remove")  # revision 6
        wait_for(lambda: health(server.url)["routing"]["revision"] == 6, "revision 6")
        assert health(server.url)["registry_error"] is None
        found = samples(server.url)
    assert metric(found, "visiontrain_registry_errors_total", stage="load") == 4


def test_a_model_file_is_served_as_before_and_names_its_version_in_a_header_too(trained):
    import hashlib

    onnx = trained["runs"][0] / "model.onnx"
    with ThreadServer(None, model_file=onnx) as server:
        answer = server.predict(trained["rows"][:3])
        found = samples(server.url)
    sha256 = f"sha256:{hashlib.sha256(onnx.read_bytes()).hexdigest()}"
    assert answer.json()["model_version"] == answer.headers["x-model-version"] == sha256
    assert [set(p) for p in answer.json()["predictions"]] == [{"probability", "label"}] * 3
    assert metric(found, "visiontrain_inputs_total") == 3  # one model: the metrics have no version label


# --- mistakes: before the server starts ------------------------------------------------------------------------


def test_rollout_mistakes_are_config_errors_naming_the_fix(registry, trained, tmp_path):
    from visiontrain.config.commands import StickyKey
    from visiontrain.deploy.rollout import check_sticky_key, open_rollout
    from visiontrain.errors import ConfigError
    from visiontrain.inference.onnx_model import IMAGE
    from visiontrain.model_registry.store import ModelRegistry

    for overrides, key in ((["canary_share=1.5"], "canary_share"), (["sticky_key=cookie:id"], "sticky_key"),
                           (["sticky_key=header:"], "sticky_key"), (["sticky_key='header:X User'"], "sticky_key"),
                           (["registry_poll_s=0"], "registry_poll_s")):
        with pytest.raises(ConfigError, match=f"config key `{key}`"):
            serve_options(registry, *overrides)
    assert serve_options(registry, "sticky_key=header:X-User-Id").sticky == StickyKey("header", "X-User-Id")
    with pytest.raises(ConfigError, match="config key `registry`: model registry .* does not exist"):
        serve_options(ModelRegistry(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="config key `sticky_key`: .* image classifier"):
        check_sticky_key(StickyKey("field", "customerID"), IMAGE)

    with pytest.raises(ConfigError, match=r"has no model 'chrun' \(it has churn\)"):
        open_rollout(serve_options(registry, "model=chrun"))
    empty = ModelRegistry(tmp_path / "fresh")
    empty.register("churn", trained["runs"][0] / "model.onnx")
    with pytest.raises(ConfigError, match="no production alias") as raised:
        open_rollout(serve_options(empty))
    assert "visiontrain models promote" in str(raised.value)

    cli = run_cli("serve", "model=churn", f"registry={empty.url}", cwd=tmp_path, timeout=120)
    assert cli.returncode == 2 and "config key `model`" in cli.stderr and "visiontrain models promote" in cli.stderr
    shadow = run_cli("serve", f"model={trained['runs'][0] / 'model.onnx'}", "shadow=true", cwd=tmp_path)
    assert shadow.returncode == 2 and "config key `shadow`" in shadow.stderr and "registry=" in shadow.stderr
