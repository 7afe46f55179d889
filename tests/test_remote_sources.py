"""Training data from a Kafka topic and from a paginated HTTP API: real broker, real HTTP server, real client.

The Kafka tests use the session's Tansu broker (tests/kafka_broker.py); the HTTP tests a ThreadingHTTPServer on
a free loopback port that pages the Telco sample both ways, fails some first attempts with 503/429 and refuses
requests without the bearer token.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pandas as pd
import pytest

from conftest import TELCO_SAMPLE, free_port, run_cli
from kafka_broker import new_topic, produce
from visiontrain.config.tabular import HttpSource
from visiontrain.errors import ConfigError, DataError
from visiontrain.tabular.http_source import read_http_source
from visiontrain.tabular.ingest import detect_format, read_source
from visiontrain.tabular.kafka_snapshot import read_kafka_snapshot

TOKEN = "tok-3f9c2a7e51d84b6c"  # noqa: S105 - a test token, grepped for in every file a run writes
TOKEN_ENV = "VISIONTRAIN_TEST_API_TOKEN"
# messages that hold no row, and how many entries each leaves in source_rejects.csv (a list: one per item)
BROKEN = {b"not json at all": 1, b"": 1, b"42": 1, b"[]": 1, b'[7, "x"]': 2, b"\xff\xfe": 1}


@pytest.fixture(scope="module")
def telco() -> list[dict]:
    """The 500 sample rows as JSON objects, values as the CSV holds them (text)."""
    return pd.read_csv(TELCO_SAMPLE, dtype=str, keep_default_na=False).to_dict("records")


# --- HTTP -------------------------------------------------------------------------------------------------------

PAGE_SIZE = 60


class TelcoApi(BaseHTTPRequestHandler):
    """The Telco rows three ways: ``/page/customers?page=N`` ({"results": [...]}, until an empty page),
    ``/link/customers?cursor=N`` (a list, a ``Link: rel="next"`` header; one item that is not a row) and
    ``/next/customers`` ({"data": [...], "next": "<relative URL>"}). The first request of page 2 of each
    answers 503, of page 3 429 with Retry-After: 0; ``/always503``, ``/html`` fail as named; without the
    bearer token: 401."""

    rows: list[dict] = []
    attempts: dict[str, int] = {}
    seen_tokens: list[str | None] = []

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query))
        self.seen_tokens.append(self.headers.get("Authorization"))
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send(401, {"error": "unauthorized"})
        if parts.path == "/always503":
            return self._send(503, {"error": "down"})
        if parts.path == "/html":
            return self._send(200, b"<html>hello</html>", "text/html")
        style = parts.path.split("/")[1]
        page = int(query.get("page") or query.get("cursor") or int(query.get("offset", 0)) // PAGE_SIZE + 1)
        attempt = self.attempts[self.path] = self.attempts.get(self.path, 0) + 1
        if attempt == 1 and page == 2:
            return self._send(503, {"error": "busy"})
        if attempt == 1 and page == 3:
            return self._send(429, {"error": "slow down"}, headers={"Retry-After": "0"})
        chunk = self.rows[(page - 1) * PAGE_SIZE:page * PAGE_SIZE]
        more = page * PAGE_SIZE < len(self.rows)
        if style == "page":
            return self._send(200, {"results": chunk, "page": page})
        if style == "link":
            base = query.get("host") or f"http://{self.headers['Host']}"  # ?host=: the next page elsewhere
            link = {"Link": f'<{base}/link/customers?cursor={page + 1}>; rel="next"'} if more else {}
            return self._send(200, chunk + ([7] if page == 1 else []), headers=link)
        body = {"data": chunk, "next": f"/next/customers?offset={page * PAGE_SIZE}" if more else None}
        return self._send(200, body)

    def _send(self, status: int, body, kind: str = "application/json", headers: dict | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def telco_api(telco):
    TelcoApi.rows = telco
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), TelcoApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def api_token(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    TelcoApi.attempts.clear()
    return HttpSource(token_env=TOKEN_ENV, backoff_s=0.01)


@pytest.mark.parametrize("path, pagination, not_rows", [("/page/customers?page=1", "page", 0),
                                                        ("/link/customers?cursor=1", "link", 1),
                                                        ("/next/customers", "next", 0)])
def test_http_api_pages_are_read_whole_with_retries_counted(telco_api, api_token, telco, path, pagination,
                                                            not_rows):
    read = read_http_source(telco_api + path, api_token)
    assert read.frame.to_dict("records") == telco  # every row, once, in order
    pages = -(-len(telco) // PAGE_SIZE) + (pagination == "page")  # page mode ends on an empty page
    report = read.report
    assert (report["pages"], report["pagination"], report["retries"]) == (pages, pagination, 2)
    assert [page["retries"] for page in report["page_list"][:4]] == [0, 1, 1, 0]
    assert report["rows"] == len(telco) and report["not_rows"] == not_rows == len(read.not_rows)
    assert report["read"] == report["rows"] + report["not_rows"]
    first = read.lineage.iloc[PAGE_SIZE]  # the first row of page 2
    assert (first["row"], first["page"], first["index_in_page"]) == (PAGE_SIZE + 1, 2, 0)
    assert first["url"].startswith(telco_api) and read.lineage["url"].nunique() == len(telco) // PAGE_SIZE + 1
    if not_rows:
        assert read.not_rows.iloc[0][["page", "index", "value"]].tolist() == [1, PAGE_SIZE, "7"]
        assert "item 60 is a number" in read.not_rows.iloc[0]["reason"]


def test_page_mode_adds_the_page_parameter_and_stops_at_an_empty_page(telco_api, api_token, telco):
    options = HttpSource(token_env=TOKEN_ENV, pagination="page", rows_key="results", backoff_s=0.01)
    read = read_http_source(f"{telco_api}/page/customers", options)
    assert len(read.frame) == len(telco) and read.report["pages"] == len(telco) // PAGE_SIZE + 2
    assert read.lineage["url"].iloc[0].endswith("/page/customers?page=1")
    with pytest.raises(DataError, match="no list under data.http.rows_key='rows'"):
        read_http_source(f"{telco_api}/page/customers", HttpSource(token_env=TOKEN_ENV, rows_key="rows"))


def test_http_errors_name_the_fix_and_never_the_token(telco_api, api_token, monkeypatch):
    with pytest.raises(DataError, match=r"still 503 .* after 2 retries") as error:
        read_http_source(f"{telco_api}/always503", HttpSource(token_env=TOKEN_ENV, retries=2, backoff_s=0.01))
    assert f"{telco_api}/always503" in str(error.value)
    with pytest.raises(DataError, match="not JSON"):
        read_http_source(f"{telco_api}/html", api_token)
    with pytest.raises(DataError, match=r"max_pages=3"):
        read_http_source(f"{telco_api}/next/customers", HttpSource(token_env=TOKEN_ENV, max_pages=3,
                                                                    backoff_s=0.01))
    with pytest.raises(DataError, match="401 .*set data.http.token_env"):
        read_http_source(f"{telco_api}/next/customers", HttpSource())
    monkeypatch.setenv(TOKEN_ENV, "wrong-token")
    with pytest.raises(DataError, match=rf"401 .*check the token in \${TOKEN_ENV}") as error:
        read_http_source(f"{telco_api}/next/customers", api_token)
    assert "wrong-token" not in str(error.value)
    monkeypatch.delenv(TOKEN_ENV)
    with pytest.raises(ConfigError, match=f"data.http.token_env.*{TOKEN_ENV}"):
        read_http_source(f"{telco_api}/next/customers", api_token)
    with pytest.raises(DataError, match="request failed"):
        read_http_source(f"http://127.0.0.1:{free_port()}/x", HttpSource(retries=1, backoff_s=0.01))


def test_a_key_in_the_url_reaches_no_log_line_or_error(telco_api, api_token, caplog):
    """A URL from data.source_env may carry ?api_key=: urllib3's retry warnings and the error mask it."""
    caplog.set_level("DEBUG")
    with pytest.raises(DataError) as error:
        read_http_source(f"{telco_api}/always503?api_key={TOKEN}", HttpSource(token_env=TOKEN_ENV, retries=2,
                                                                               backoff_s=0.01))
    assert "api_key=***" in str(error.value) and TOKEN not in str(error.value)
    assert any(record.name == "urllib3.util.retry" for record in caplog.records)
    assert not any(TOKEN in record.getMessage() for record in caplog.records)


def test_the_token_goes_only_to_the_sources_host(telco_api, api_token):
    """A next link to another host (localhost instead of 127.0.0.1) is requested without the token."""
    TelcoApi.seen_tokens.clear()
    other_host = telco_api.replace("127.0.0.1", "localhost")
    with pytest.raises(DataError, match="401"):
        read_http_source(f"{telco_api}/link/customers?cursor=1&host={other_host}", api_token)
    assert TelcoApi.seen_tokens == [f"Bearer {TOKEN}", None]


# --- Kafka ------------------------------------------------------------------------------------------------------


def telco_messages(rows: list[dict]) -> list[tuple[str | None, object]]:
    """Rows as messages: mostly one per message, some lists of 3, and the broken ones in between."""
    messages: list[tuple[str | None, object]] = []
    index = 0
    while index < len(rows):
        size = 3 if index % 10 == 0 else 1
        chunk = rows[index:index + size]
        messages.append((chunk[0]["customerID"], chunk if size > 1 else chunk[0]))
        index += size
        if index % 97 == 0:
            messages.append((None, list(BROKEN)[(index // 97) % len(BROKEN)]))
    return messages + [(None, value) for value in BROKEN]


def not_row_entries(messages: list[tuple[str | None, object]]) -> int:
    return sum(BROKEN.get(value, 0) for _, value in messages if isinstance(value, bytes))


@pytest.fixture(scope="module")
def telco_topic(kafka_broker, telco) -> dict:
    topic = new_topic(kafka_broker, partitions=3)
    messages = telco_messages(telco)
    produce(kafka_broker, topic, messages, partitions=3)  # linger.ms=5: many messages per batch
    return {"topic": topic, "url": kafka_broker.url(topic), "messages": messages}


def test_kafka_snapshot_reads_every_row_once_and_lists_broken_messages(telco_topic, telco):
    read = read_kafka_snapshot(telco_topic["url"], timeout_s=20)
    assert sorted(read.frame["customerID"]) == sorted(row["customerID"] for row in telco)
    assert len(read.frame) == len(telco) and read.frame["customerID"].is_unique
    broken = read.not_rows
    assert len(broken) == not_row_entries(telco_topic["messages"])
    assert set(broken["partition"]) <= {0, 1, 2} and broken["offset"].ge(0).all()
    reasons = " | ".join(broken["reason"])
    for expected in ("not valid JSON", "empty message", "row 0 is int", "an empty list", "row 1 is str"):
        assert expected in reasons
    assert broken.loc[broken["reason"].str.contains("row 1 is str"), "value"].iloc[0] == '"x"'  # the item
    report = read.report
    assert report["topic"] == telco_topic["topic"] and report["rows"] == len(telco)
    assert report["read"] == len(telco_topic["messages"]) and report["not_rows"] == len(broken)
    assert [p["partition"] for p in report["partitions"]] == [0, 1, 2]
    assert sum(p["messages"] for p in report["partitions"]) == report["read"]
    for partition in report["partitions"]:  # every offset from the first to the last was read
        assert partition["first_offset"] == 0 and partition["last_offset"] == partition["messages"] - 1
        assert partition["high_watermark"] <= partition["messages"]  # Tansu: the last batch's base + 1


def test_kafka_lineage_maps_each_row_to_its_message(kafka_broker, telco):
    """Read the topic back through a plain consumer and check lineage.csv's (partition, offset, index) hold
    exactly the row it names."""
    topic = new_topic(kafka_broker, partitions=3)
    rows = telco[:40]
    messages = [(None, rows[i:i + 4]) for i in range(0, 20, 4)] + [(None, row) for row in rows[20:]]
    produce(kafka_broker, topic, messages, partitions=3)
    read = read_kafka_snapshot(kafka_broker.url(topic), timeout_s=20)
    from kafka_broker import consume_all

    stored = {(m.partition(), m.offset()): json.loads(m.value())
              for m in consume_all(kafka_broker, topic, expected=len(messages))}
    assert list(read.lineage["row"]) == list(range(1, len(read.frame) + 1))
    for row, origin in zip(read.frame.to_dict("records"), read.lineage.to_dict("records")):
        assert origin["topic"] == topic
        value = stored[(origin["partition"], origin["offset"])]
        held = value[origin["index_in_message"]] if isinstance(value, list) else value
        assert held == row
    assert sorted(read.lineage["index_in_message"].unique()) == [0, 1, 2, 3]


def test_one_batch_on_one_partition_is_read_whole(kafka_broker, telco):
    """Tansu's high watermark moves by 1 for a batch of 50: the snapshot must still read all 50."""
    topic = new_topic(kafka_broker, partitions=1)
    produce(kafka_broker, topic, [(None, row) for row in telco[:50]], partition=0)
    read = read_kafka_snapshot(kafka_broker.url(topic), timeout_s=20)
    partition = read.report["partitions"][0]
    assert len(read.frame) == 50 and partition["last_offset"] == 49
    assert partition["high_watermark"] < 50  # the quirk this test is about was there


def test_kafka_errors_are_clear_and_never_hang(kafka_broker):
    with pytest.raises(DataError, match="cannot read the topic 'no-such-topic'"):
        read_kafka_snapshot(kafka_broker.url("no-such-topic"), {"allow.auto.create.topics": False}, timeout_s=5)
    with pytest.raises(DataError, match=r"kafka://127.0.0.1:1/t: no answer from the Kafka broker within 1 s"):
        read_kafka_snapshot(f"kafka://127.0.0.1:{1}/t", timeout_s=1)
    only_broken = new_topic(kafka_broker, partitions=1)
    produce(kafka_broker, only_broken, [(None, b"{")], partition=0)
    with pytest.raises(DataError, match="holds no rows"):
        read_kafka_snapshot(kafka_broker.url(only_broken), timeout_s=10)
    with pytest.raises(ConfigError, match="data.kafka.sasl.password"):
        read_kafka_snapshot(kafka_broker.url(only_broken), {"sasl.password": "x"})


def test_ingest_dispatches_on_the_scheme():
    assert detect_format("kafka://localhost:9092/churn") == "kafka"
    assert detect_format("https://api.example.com/v1/customers") == "http"
    assert detect_format("HTTP://api.example.com/rows.json") == "http"
    assert detect_format("sqlite:///churn.db") == "sql"
    with pytest.raises(ConfigError, match="data.format"):
        read_source("kafka://localhost:9092/churn", fmt="json")
    with pytest.raises(ConfigError, match="data.table"):
        read_source("https://api.example.com/v1/customers", table="customers")


# --- config -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides, key", [
    (["data.source=kafka://localhost:9092/churn", "data.kafka_timeout_s=-1"], "data.kafka_timeout_s"),
    (["data.source=kafka://localhost/churn"], "data.source"),
    (["data.source=kafka://localhost:9092/churn", "+data.kafka.sasl.password=hunter2"],
     "data.kafka.sasl.password"),
    (["data.source=kafka://localhost:9092/churn", "data.format=json"], "data.format"),
    (["data.source=https://api.example.com/v1/customers", "data.http.pagination=cursor"], "data.http.pagination"),
    (["data.source=https://api.example.com/v1/customers", "data.http.read_timeout_s=0"],
     "data.http.read_timeout_s"),
    (["data.source=https://api.example.com/v1/customers", "data.http.max_pages=0"], "data.http.max_pages"),
    (["data.source=https://api.example.com/v1/customers", "data.http.retries=-1"], "data.http.retries"),
    (["data.source=https://api.example.com/v1/customers", f"data.http.token_env={TOKEN}"], "data.http.token_env"),
])
def test_config_mistakes_fail_before_training_naming_the_key(tmp_path, overrides, key):
    from conftest import compose_train
    from visiontrain.config.checks import check_train_config

    cfg = compose_train("experiment=churn", *overrides, f"paths.run_dir={tmp_path}")
    with pytest.raises(ConfigError) as error:
        check_train_config(cfg)
    assert error.value.key == key
    assert TOKEN not in str(error.value) and "hunter2" not in str(error.value)


def test_run_folder_names_a_topic_or_an_api_resource_never_its_host_or_query():
    from omegaconf import OmegaConf

    from visiontrain.config.run_name import run_name

    def name(source: str) -> str:
        return run_name("churn", _root_=OmegaConf.create({"data": {"source": source}}))

    assert name("kafka://broker-1:9092,broker-2:9092/telco-events") == "churn-telco-events"
    assert name("https://api.example.com/v2/customers?page=1&api_key=s3cr3t") == "churn-customers"
    assert name("http://api.example.com/export/customers.json") == "churn-customers"
    assert name("https://api.example.com/") == "churn"


# --- end to end: the CLI -----------------------------------------------------------------------------------------


def train(source: str, tmp_path: Path, *extra: str, env: dict | None = None) -> tuple[Path, str]:
    run_dir = tmp_path / "run"
    result = run_cli("train", "experiment=churn", f"data.source={source}", "model=logistic_regression",
                     "trainer.enable_progress_bar=false", "logger=csv", f"hydra.run.dir={run_dir}", *extra,
                     cwd=tmp_path, env={"VISIONTRAIN_CACHE_DIR": str(tmp_path / "cache"), **(env or {})})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return run_dir, output


def test_train_on_an_http_api_records_pages_and_lineage_and_never_the_token(telco_api, api_token, telco,
                                                                               tmp_path):
    run_dir, output = train(f"{telco_api}/next/customers", tmp_path, f"data.http.token_env={TOKEN_ENV}",
                            "data.http.backoff_s=0.01", env={TOKEN_ENV: TOKEN})
    summary = json.loads((run_dir / "summary.json").read_text())
    source = summary["data"]["report"]["source"]
    assert (source["kind"], source["pages"], source["retries"], source["rows"]) == ("http", 9, 2, len(telco))
    assert summary["data"]["rows_in"] == len(telco)
    lineage = pd.read_csv(run_dir / "lineage.csv")
    assert len(lineage) == len(telco) and lineage["page"].max() == 9
    assert "## Source" in (run_dir / "data_report.md").read_text()
    assert TOKEN not in output
    # evaluate reads the API again: without the token's variable it says which one to export
    result = run_cli("evaluate", f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}",
                     f"hydra.run.dir={tmp_path / 'evaluate'}", cwd=tmp_path, env={TOKEN_ENV: None})
    assert result.returncode != 0 and f"export {TOKEN_ENV}=" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_train_on_a_kafka_topic_accounts_for_every_message(kafka_broker, telco_topic, telco, tmp_path):
    run_dir, output = train(telco_topic["url"], tmp_path, "data.kafka_timeout_s=20",
                            "+data.kafka.client.id=vt-snapshot")  # arrives nested, reaches librdkafka dotted
    summary = json.loads((run_dir / "summary.json").read_text())
    data, source = summary["data"], summary["data"]["report"]["source"]
    assert source["topic"] == telco_topic["topic"] and len(source["partitions"]) == 3
    broken = not_row_entries(telco_topic["messages"])
    assert source["not_rows"] == broken and data["rows_in"] == source["rows"] == len(telco)
    assert source["read"] == len(telco_topic["messages"])
    assert source["rows"] + source["not_rows"] == data["rows_kept"] + data["rows_rejected"] + broken
    assert len(pd.read_csv(run_dir / "source_rejects.csv")) == broken
    lineage = pd.read_csv(run_dir / "lineage.csv")
    assert list(lineage["row"]) == list(range(1, len(telco) + 1)) and set(lineage["partition"]) == {0, 1, 2}
    rejects = pd.read_csv(run_dir / "rejects.csv")
    if len(rejects):  # a row cleansing rejected is traced to its message
        assert set(rejects["row"]) <= set(lineage["row"])
    report = (run_dir / "data_report.md").read_text()
    assert f"Kafka topic {telco_topic['topic']}" in report and "| partition | offsets read |" in report
    assert f"{broken} messages or items in the {source['read']} messages" in output  # never silently dropped
    # evaluate reads the topic again, with the same lineage
    out = tmp_path / "evaluate"
    result = run_cli("evaluate", f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}", f"hydra.run.dir={out}",
                     cwd=tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["data"]["source"]["rows"] == len(telco) and (out / "lineage.csv").is_file()
