"""A catalogue of data sources that never end: each a real source, each with the exact outcome asserted.

HTTP: a real ThreadingHTTPServer on loopback that trickles its body or its headers, keeps answering 503, declares
a 2 GiB body, sends one without a length (ended by closing, or chunked) or a gzip bomb, cuts its body short,
pages for ever or back to a page already read. Kafka: the session's Tansu broker (tests/kafka_broker.py) with a
producer that keeps producing while the snapshot reads, and messages too large to parse or to fetch. SQL: a real
SQLite file. Each ends in the reader's DataError naming the key to raise (through the real CLI for the main
ones: exit code 2, that one line, no traceback), or in the rows read and every message accounted for. How long
the bounded cases take, and their memory, is measured in scripts/bench_sources.py, not asserted here.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pandas as pd
import pytest
import sqlalchemy

from conftest import TELCO_SAMPLE, compose_train, free_port, run_cli
from kafka_broker import new_topic, produce
from visiontrain.config.checks import check_train_config
from visiontrain.config.tabular import HttpSource, SourceOptions
from visiontrain.errors import ConfigError, DataError
from visiontrain.tabular.http_source import read_http_source
from visiontrain.tabular.ingest import read_source
from visiontrain.tabular.kafka_snapshot import SnapshotLimits, read_kafka_snapshot

MIB = 1 << 20
TRICKLE_S = 0.25  # between two bytes of a trickling answer: far under every read timeout below
ROW = {"customerID": "c1", "tenure": 3, "Churn": "No"}
FAST = HttpSource(retries=0, page_timeout_s=10, read_timeout_s=5, max_page_bytes=MIB, max_total_bytes=4 * MIB)


def options(**changes) -> HttpSource:
    return HttpSource(**{**FAST.__dict__, **changes})


# --- a hostile API --------------------------------------------------------------------------------------------


class HostileApi(BaseHTTPRequestHandler):
    """One way to never end per path; ``/rows?count=N``: a well-behaved page of N rows."""

    protocol_version = "HTTP/1.1"  # chunked bodies, and keep-alive as a real API has

    def log_message(self, *args) -> None:  # quiet
        pass

    def handle(self) -> None:
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):  # the client dropped the connection: as intended
            pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query))
        try:
            getattr(self, "_" + parts.path.strip("/").replace("-", "_"))(query)
        except (BrokenPipeError, ConnectionResetError):  # the client stopped reading: what these cases want
            self.close_connection = True

    def _rows(self, query: dict) -> None:
        self._json([{**ROW, "customerID": f"c{i}"} for i in range(int(query.get("count", 1)))])

    def _trickle(self, query: dict) -> None:
        """A valid page, one byte every TRICKLE_S: each read is quick, the page never arrives."""
        body = json.dumps([ROW] * 100).encode()
        self._head(200, {"Content-Length": str(len(body))})
        for byte in body:
            self.wfile.write(bytes([byte]))
            time.sleep(TRICKLE_S)

    def _trickle_headers(self, query: dict) -> None:
        """The status line, then a header trickled a byte at a time: the body is never reached."""
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: ")
        for _ in range(400):
            self.wfile.write(b"a")
            time.sleep(TRICKLE_S)

    def _busy(self, query: dict) -> None:
        self._json({"error": "busy"}, 503, {"Retry-After": "2"})

    def _declared_huge(self, query: dict) -> None:
        """2 GiB of spaces announced; two bytes sent, then silence (a client reading on would wait)."""
        self._head(200, {"Content-Length": str(2 << 30)})
        self.wfile.write(b"[ ")
        time.sleep(8)

    def _endless(self, query: dict) -> None:
        """No Content-Length: a JSON array of spaces, ended by closing the connection (which never comes)."""
        self._head(200, {"Connection": "close"})
        self.close_connection = True
        self._spaces(lambda data: self.wfile.write(data))

    def _chunked(self, query: dict) -> None:
        self._head(200, {"Transfer-Encoding": "chunked"})
        self._spaces(lambda data: self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data)))

    def _gzip_bomb(self, query: dict) -> None:
        """A small compressed body (its Content-Length true) that decodes to 32 MiB of spaces."""
        body = gzip.compress(b"[" + b" " * (32 * MIB) + b"]", compresslevel=9)
        self._head(200, {"Content-Length": str(len(body)), "Content-Encoding": "gzip"})
        self.wfile.write(body)

    def _short(self, query: dict) -> None:
        """1000 bytes announced, 9 sent, then the connection closed."""
        self._head(200, {"Content-Length": "1000"})
        self.wfile.write(b'[{"a": 1}')
        self.close_connection = True

    def _forever(self, query: dict) -> None:
        """One row per page, and a next link to a page never seen before."""
        number = int(query.get("n", 1))
        self._json({"data": [{**ROW, "customerID": f"c{number}"}], "next": f"/forever?n={number + 1}"})

    def _loop(self, query: dict) -> None:
        """Pages 1, 2, 3, and page 3's next link back to page 1."""
        number = int(query.get("n", 1))
        self._json({"data": [{**ROW, "customerID": f"c{number}"}], "next": f"/loop?n={number % 3 + 1}"})

    def _big_pages(self, query: dict) -> None:
        """Pages of 600 KiB each (under a 1 MiB page limit), for ever: the total limit must stop them."""
        number = int(query.get("n", 1))
        self._json({"data": [{**ROW, "pad": " " * (600 << 10)}], "next": f"/big-pages?n={number + 1}"})

    def _spaces(self, send) -> None:
        send(b"[")
        for _ in range(2048):  # 128 MiB at most, should the client not stop
            send(b" " * (64 << 10))

    def _head(self, status: int, headers: dict) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _json(self, body, status: int = 200, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self._head(status, {"Content-Length": str(len(data)), **(headers or {})})
        self.wfile.write(data)


@pytest.fixture(scope="module")
def api():
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), HostileApi)
    server.daemon_threads = True  # a trickling answer must not hold the shutdown
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# --- HTTP: the page deadline ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/trickle", "/trickle-headers", "/busy"])
def test_a_page_that_never_finishes_stops_at_the_page_deadline(api, path):
    """A trickled body or header passes every read timeout (each byte comes in TRICKLE_S); retries with a long
    Retry-After count too: the page as a whole has page_timeout_s."""
    with pytest.raises(DataError) as error:
        read_http_source(f"{api}{path}", options(page_timeout_s=1, retries=3))
    message = str(error.value)
    assert message.startswith(f"{api}{path}: page 1 was not read within data.http.page_timeout_s=1 s; the "
                              "deadline for one page (connecting, retries and the whole body) passed with ")
    assert message.endswith(" of it received. Raise data.http.page_timeout_s if the API is really this slow.")


def test_a_trickling_api_stops_the_cli_at_the_deadline_naming_the_key(api, tmp_path):
    result = cli(tmp_path, f"data.source={api}/trickle", "data.http.page_timeout_s=1", "data.http.read_timeout_s=5")
    assert_data_error(result, f"{api}/trickle: page 1 was not read within data.http.page_timeout_s=1 s")


# --- HTTP: bytes --------------------------------------------------------------------------------------------------


def test_a_declared_2_gib_page_is_refused_before_its_body_is_read(api):
    with pytest.raises(DataError) as error:
        read_http_source(f"{api}/declared-huge", options())
    assert str(error.value) == (
        f"{api}/declared-huge: page 1 is 2,147,483,648 bytes (its Content-Length), over data.http.max_page_bytes="
        "1048576 (1 MiB); refused before reading it. Raise data.http.max_page_bytes if the API really sends this "
        "much, or ask the API for smaller pages (a page size parameter in data.source).")


@pytest.mark.parametrize("path, declared", [("/endless", ""), ("/chunked", ""),
                                            ("/gzip-bomb", " decoded (its Content-Length said")])
def test_a_body_without_an_honest_length_is_stopped_by_counting(api, path, declared):
    """No Content-Length (ended by closing, or chunked), or a true one for a body that decodes 1000 times
    larger: reading stops once 1 MiB has arrived."""
    with pytest.raises(DataError) as error:
        read_http_source(f"{api}{path}", options())
    message = str(error.value)
    assert message.startswith(f"{api}{path}: page 1 went on past 1 MiB{declared}")
    assert "over data.http.max_page_bytes=1048576 (1 MiB); stopped reading there. Raise " \
           "data.http.max_page_bytes if the API really sends this much" in message


def test_an_endless_page_stops_the_cli_naming_the_limit(api, tmp_path):
    result = cli(tmp_path, f"data.source={api}/endless", "data.http.max_page_bytes=1048576")
    assert_data_error(result, f"{api}/endless: page 1 went on past 1 MiB, over data.http.max_page_bytes=1048576 "
                              "(1 MiB); stopped reading there.")


def test_the_total_limit_stops_pages_each_under_the_page_limit(api):
    with pytest.raises(DataError) as error:
        read_http_source(f"{api}/big-pages", options(max_total_bytes=2 * MIB))
    message = str(error.value)
    assert message.startswith(f"{api}/big-pages?n=4: page 4 is ")
    assert "(its Content-Length), over data.http.max_total_bytes=2097152 (2 MiB); refused before reading it. " \
           "Raise data.http.max_total_bytes if the API really sends this much, or filter what the API returns " \
           "(the pages before this one hold 1.76 MiB)." in message


def test_a_body_cut_short_of_its_length_is_a_clear_error(api):
    with pytest.raises(DataError) as error:
        read_http_source(f"{api}/short", options())
    assert str(error.value).startswith(f"{api}/short: reading page 1 failed after 9 bytes (")
    assert "IncompleteRead" in str(error.value) or "incomplete" in str(error.value).lower()


# --- HTTP: pages and rows -------------------------------------------------------------------------------------------


def test_a_next_link_that_never_ends_stops_at_max_pages(api):
    with pytest.raises(DataError) as error:
        read_http_source(f"{api}/forever", options(max_pages=5))
    assert str(error.value) == (
        f"{api}/forever: more than data.http.max_pages=5 pages (page 6 would be {api}/forever?n=6); raise "
        "data.http.max_pages if the API really has that many, or check that its last page says so (no next "
        "link; page mode: an empty page).")


def test_a_next_link_back_to_a_page_already_read_stops_the_read(api):
    with pytest.raises(DataError) as error:
        read_http_source(f"{api}/loop?n=1", options())
    assert str(error.value) == (
        f"{api}/loop?n=1: page 3 points back at page 1 ({api}/loop?n=1), already read: following it would loop "
        "forever (pagination next). Set data.http.pagination to the way this API pages, or check its next links.")


def test_more_rows_than_max_rows_is_an_error_not_a_cut(api):
    assert len(read_http_source(f"{api}/rows?count=20", options(), max_rows=20).frame) == 20  # exactly: kept
    with pytest.raises(DataError) as error:
        read_http_source(f"{api}/rows?count=21", options(), max_rows=20)
    assert str(error.value) == (
        f"{api}/rows?count=21: more than data.max_rows=20 rows (reading stopped at row 21); raise data.max_rows "
        "if the table really is this large, or filter the API's rows (a query parameter in data.source).")


# --- SQL and files --------------------------------------------------------------------------------------------------


@pytest.fixture
def crm_db(tmp_path) -> Path:
    path = tmp_path / "crm.db"
    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    pd.read_csv(TELCO_SAMPLE, dtype=str).head(50).to_sql("customers", engine, index=False)
    engine.dispose()
    return path


@pytest.mark.parametrize("table, query, what, fix", [
    ("customers", None, "table 'customers'", "read fewer with data.query (a SELECT with a WHERE clause)"),
    (None, "SELECT * FROM customers", "data.query", "add a WHERE clause to data.query"),
])
def test_a_sql_source_with_more_rows_than_max_rows_stops(crm_db, table, query, what, fix):
    frame, _ = read_source(str(crm_db), table=table, query=query, options=SourceOptions(max_rows=50))
    assert len(frame) == 50  # at the limit: every row, nothing cut
    with pytest.raises(DataError) as error:
        read_source(str(crm_db), table=table, query=query, options=SourceOptions(max_rows=49))
    assert str(error.value) == (
        f"sqlite:///{crm_db} ({what}): more than data.max_rows=49 rows (reading stopped at row 50); raise "
        f"data.max_rows if the table really is this large, or {fix}.")


def test_a_sql_query_returning_far_more_rows_stops_the_cli(crm_db, tmp_path):
    huge = "SELECT c.* FROM customers c, customers a, customers b"  # 125,000 rows
    result = cli(tmp_path, f"data.source={crm_db}", f"data.query='{huge}'", "data.max_rows=1000")
    assert_data_error(result, f"sqlite:///{crm_db} (data.query): more than data.max_rows=1000 rows (reading "
                              "stopped at row 1,001); raise data.max_rows if the table really is this large, or "
                              "add a WHERE clause to data.query.")


def test_a_file_with_more_rows_than_max_rows_is_refused(tmp_path):
    path = tmp_path / "customers.csv"
    pd.read_csv(TELCO_SAMPLE, dtype=str).head(30).to_csv(path, index=False)
    with pytest.raises(DataError) as error:
        read_source(str(path), options=SourceOptions(max_rows=29))
    assert str(error.value) == (f"{path}: 30 rows, more than data.max_rows=29; raise data.max_rows if the table "
                                "really is this large, or point data.source at a smaller extract.")


# --- Kafka ----------------------------------------------------------------------------------------------------------


def test_a_topic_growing_while_it_is_read_ends_at_the_first_message_produced_after_the_start(kafka_broker):
    """5,000 messages, then a producer that keeps producing through the whole read. Every message present at
    the start is read (Tansu's last batch included), and the read ends, past the start's high watermark, at
    the first message stamped after its start (``late_s=0`` here): not at whatever end it catches up with."""
    from confluent_kafka import Producer

    topic = new_topic(kafka_broker, partitions=1)
    produce(kafka_broker, topic, [(None, {**ROW, "customerID": f"before-{i}"}) for i in range(5000)], partition=0)
    stop, producer = threading.Event(), Producer({"bootstrap.servers": kafka_broker.bootstrap, "linger.ms": 1,
                                                  "log_level": 3})

    def keep_producing() -> None:
        count = 0
        while not stop.is_set():
            producer.produce(topic, json.dumps({**ROW, "customerID": f"during-{count}"}).encode(), partition=0)
            producer.poll(0)
            count += 1
            time.sleep(0.0005)
        producer.flush(10)

    thread = threading.Thread(target=keep_producing)
    thread.start()
    try:
        time.sleep(0.3)  # the topic is growing before the read starts, and goes on growing through it
        read = read_kafka_snapshot(kafka_broker.url(topic), limits=SnapshotLimits(timeout_s=20, late_s=0))
    finally:
        stop.set()
        thread.join()
    ids = read.frame["customerID"]
    assert set(ids[ids.str.startswith("before-")]) == {f"before-{i}" for i in range(5000)}
    partition = read.report["partitions"][0]
    started_ms = read.report["started_ms"]
    stamps = timestamps(kafka_broker, topic, partition["last_offset"] + 2)
    read_past_start = range(partition["high_watermark"], partition["last_offset"] + 1)
    assert all(stamps[offset] <= started_ms for offset in read_past_start)
    assert stamps[partition["last_offset"] + 1] > started_ms  # the first message not read was produced later
    assert partition["messages"] == partition["last_offset"] + 1 == len(read.frame)  # every offset up to it


def timestamps(broker, topic: str, count: int) -> dict[int, int]:
    """Offset -> timestamp (ms) of the first ``count`` messages of the topic's partition 0."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "stamps", "log_level": 3})
    consumer.assign([TopicPartition(topic, 0, 0)])
    found: dict[int, int] = {}
    try:
        while len(found) < count:
            for message in consumer.consume(1000, timeout=5):
                if message.error() is None:
                    found[message.offset()] = message.timestamp()[1]
    finally:
        consumer.close()
    return found


@pytest.fixture(scope="module")
def huge_message_topic(kafka_broker) -> str:
    """A row, a 3 MB message of rows (each row padded), a row."""
    from confluent_kafka import Producer

    topic = new_topic(kafka_broker, partitions=1)
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap, "message.max.bytes": 10 * MIB,
                         "log_level": 3})
    huge = json.dumps([{**ROW, "customerID": f"h{i}", "pad": "x" * 1000} for i in range(3000)]).encode()
    for value in (json.dumps({**ROW, "customerID": "first"}).encode(), huge,
                  json.dumps({**ROW, "customerID": "last"}).encode()):
        producer.produce(topic, value, partition=0)
        assert producer.flush(30) == 0
    return topic


def test_a_message_over_the_size_limit_is_listed_not_parsed(kafka_broker, huge_message_topic):
    read = read_kafka_snapshot(kafka_broker.url(huge_message_topic), limits=SnapshotLimits(
        timeout_s=20, max_message_bytes=MIB))
    assert list(read.frame["customerID"]) == ["first", "last"]
    listed = read.not_rows.to_dict("records")
    assert len(listed) == 1 and listed[0]["offset"] == 1
    assert listed[0]["reason"].startswith("a message of 3,")
    assert listed[0]["reason"].endswith(" bytes, over data.kafka_max_message_bytes=1048576 (1 MiB): not read; "
                                        "raise data.kafka_max_message_bytes to use it")
    assert listed[0]["value"].startswith('[{"customerID": "h0"') and len(listed[0]["value"]) == 203
    assert read.report["read"] == 3 and read.report["not_rows"] == 1  # every message used or listed
    whole = read_kafka_snapshot(kafka_broker.url(huge_message_topic), timeout_s=20)  # under the default limit
    assert len(whole.frame) == 3002 and whole.report["not_rows"] == 0


def test_a_message_too_large_to_fetch_stops_the_read_naming_the_client_setting(kafka_broker, huge_message_topic):
    small_client = {"receive.message.max.bytes": 2_000_000, "fetch.max.bytes": 1_000_000,
                    "message.max.bytes": 1_000_000}
    with pytest.raises(DataError) as error:
        read_kafka_snapshot(kafka_broker.url(huge_message_topic), small_client, timeout_s=20)
    message = str(error.value)
    assert message.startswith(f"{kafka_broker.url(huge_message_topic)}: a message is too large for the Kafka "
                              "client to fetch (an answer of 3,")
    assert message.endswith(" bytes, over its receive.message.max.bytes=2000000); raise "
                            "data.kafka.receive.message.max.bytes above the message's size if it belongs in the "
                            "topic (a message over data.kafka_max_message_bytes is then listed in "
                            "source_rejects.csv, not read), or remove it from the topic.")


def test_a_topic_with_more_rows_than_max_rows_stops(kafka_broker):
    topic = new_topic(kafka_broker, partitions=1)
    produce(kafka_broker, topic, [(None, {**ROW, "customerID": f"c{i}"}) for i in range(21)], partition=0)
    assert len(read_kafka_snapshot(kafka_broker.url(topic), limits=SnapshotLimits(max_rows=21)).frame) == 21
    with pytest.raises(DataError) as error:
        read_kafka_snapshot(kafka_broker.url(topic), limits=SnapshotLimits(max_rows=20))
    assert str(error.value) == (
        f"{kafka_broker.url(topic)}: more than data.max_rows=20 rows (reading stopped at row 21); raise "
        "data.max_rows if the table really is this large, or train on a topic holding fewer messages.")


# --- config ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("override, problem", [
    ("data.http.page_timeout_s=0", "must be > 0"),
    ("data.http.max_page_bytes=0", "must be >= 1"),
    ("data.http.max_total_bytes=-1", "must be >= 1"),
    ("data.http.max_page_bytes=64MiB", "must be an integer"),
    ("data.max_rows=0", "must be >= 1"),
    ("data.max_rows=1.5", "must be an integer"),
    ("data.kafka_max_message_bytes=0", "must be >= 1"),
])
def test_the_new_limits_are_checked_before_training(tmp_path, override, problem):
    from visiontrain.config.checks import check_train_config

    cfg = compose_train("experiment=churn", "data.source=https://api.example.com/v1/customers", override,
                        f"paths.run_dir={tmp_path}")
    with pytest.raises(ConfigError) as error:
        check_train_config(cfg)
    assert error.value.key == override.split("=")[0]
    assert problem in error.value.problem


def test_the_defaults_suit_a_real_source():
    cfg = compose_train("experiment=churn")
    assert (cfg.data.max_rows, cfg.data.kafka_max_message_bytes) == (5_000_000, 16 * MIB)
    http = cfg.data.http
    assert (http.page_timeout_s, http.max_page_bytes, http.max_total_bytes) == (300, 64 * MIB, 1 << 30)
    settings = check_train_config(cfg).data  # the YAML and the model's defaults (older configs) agree
    assert HttpSource() == settings.http
    assert SnapshotLimits.of(settings) == SnapshotLimits()


# --- the CLI ----------------------------------------------------------------------------------------------------------


def cli(tmp_path: Path, *overrides: str):
    return run_cli("train", "experiment=churn", "model=logistic_regression", "trainer.enable_progress_bar=false",
                   "data.http.retries=0", f"hydra.run.dir={tmp_path / 'run'}", *overrides, cwd=tmp_path,
                   env={"VISIONTRAIN_CACHE_DIR": str(tmp_path / "cache")})


def assert_data_error(result, expected: str) -> None:
    """Exit code 2 and the one line a user sees, starting with ``expected``; no traceback."""
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("visiontrain: data error: ")]
    assert len(lines) == 1, output[-3000:]
    assert lines[0].startswith(f"visiontrain: data error: {expected}"), lines[0]
    assert "Traceback" not in output
