"""An operator's story: the service faces hostile and broken clients, and answers each with a 4xx naming the
row, column, file or limit, never a 500 or a null prediction, then goes on serving good requests.

Both models are trained here through the real CLI on data generated in tmp_path (no ../shared): an image
classifier on PIL-written photos and the churn table on its generated CSV. Each server is a real
`visiontrain serve` subprocess on loopback, started once per module; requests go over real sockets (httpx,
or raw sockets for the slow and short-body clients).
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import logging
import os
import select
import socket
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import TINY_BACKBONE, Server, run_cli

TOKEN = "catalogue-test-token-0123456789"  # only ever in a file or the environment, as the service demands
READ_TIMEOUT_S = 1.5
IMAGE_LIMITS = ["max_request_mb=1", "max_images=4", "max_image_pixels=4000000", "max_request_pixels=6000000",
                f"read_timeout_s={READ_TIMEOUT_S}"]
TABLE_LIMITS = ["max_request_mb=1", "max_rows=50", f"read_timeout_s={READ_TIMEOUT_S}"]


# --- real models, trained here --------------------------------------------------------------------------


def _photo(colour: tuple[int, int, int], rng: np.random.Generator) -> Image.Image:
    noise = rng.integers(-30, 30, (40, 48, 3))
    return Image.fromarray(np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def image_model(tmp_path_factory) -> dict[str, Any]:
    """A tiny classifier (red ants, blue bees) trained for one epoch on JPEGs written with PIL."""
    base = tmp_path_factory.mktemp("catalogue_image")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name, colour in (("ants", (200, 60, 40)), ("bees", (40, 80, 200))):
            folder = base / "photos" / split / name
            folder.mkdir(parents=True)
            for index in range(6):
                _photo(colour, rng).save(folder / f"{index}.jpg")
    result = run_cli("train", "experiment=hymenoptera", f"data.root={base / 'photos'}",
                     f"model.backbone={TINY_BACKBONE}", "model.weights=null", "model.input.image_size=32",
                     "data.batch_size=4", "data.num_workers=0", "trainer.enable_progress_bar=false",
                     "trainer.max_epochs=1", "schedule.freeze_epochs=0", f"hydra.run.dir={base / 'run'}",
                     cwd=base)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    photo = io.BytesIO()
    _photo((200, 60, 40), rng).save(photo, format="JPEG")
    return {"base": base, "onnx": base / "run" / "model.onnx", "photo": photo.getvalue()}


@pytest.fixture(scope="module")
def churn_model(tmp_path_factory) -> dict[str, Any]:
    """The churn table model (logistic regression: one epoch) on the generated churn CSV."""
    base = tmp_path_factory.mktemp("catalogue_churn")
    cache = base / "cache"
    result = run_cli("train", "experiment=churn", "model=logistic_regression",
                     "trainer.enable_progress_bar=false", f"hydra.run.dir={base / 'run'}", cwd=base,
                     env={"VISIONTRAIN_CACHE_DIR": str(cache)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    raw = pd.read_csv(cache / "datasets" / "churn-generated.csv", dtype=str, keep_default_na=False)
    return {"base": base, "onnx": base / "run" / "model.onnx", "rows": raw.head(60).to_dict("records")}


@pytest.fixture(scope="module")
def image_server(image_model):
    server = Server(image_model["onnx"], image_model["base"], *IMAGE_LIMITS, "docs=true",
                    "cors_origins=[https://app.example.com]")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def churn_server(churn_model):
    token_file = churn_model["base"] / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    log = churn_model["base"] / "served.jsonl"
    server = Server(churn_model["onnx"], churn_model["base"], *TABLE_LIMITS, f"token_file={token_file}",
                    f"log_predictions={log}", "log_drop_columns=[customerID]")
    server.log = log
    yield server
    server.stop()


AUTH = {"authorization": f"Bearer {TOKEN}"}


def _good_image_request(server: Server, photo: bytes) -> None:
    response = httpx.post(f"{server.url}/predict", files={"files": ("ok.jpg", photo, "image/jpeg")},
                          timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["top1"] in ("ants", "bees")


def _good_table_request(server: Server, row: dict[str, Any]) -> None:
    response = httpx.post(f"{server.url}/predict", json={"rows": [row]}, headers=AUTH, timeout=30)
    assert response.status_code == 200, response.text
    scored = response.json()["predictions"][0]
    meta = httpx.get(f"{server.url}/metadata", headers=AUTH, timeout=30).json()
    # the label the graph computed and the threshold the metadata records agree: the row was scored for real
    positive = scored["label"] == meta["positive_label"]
    assert positive == (scored["probability"] >= meta["threshold"]), (scored, meta)


# --- hostile table rows: 4xx naming row and column ------------------------------------------------------


def _with(value_json: str, column: str = "tenure", row_index: int = 0, rows: int = 1
          ) -> Callable[[list], bytes]:
    """A body of ``rows`` good rows, ``column`` of row ``row_index`` replaced by raw JSON ``value_json``."""
    def build(good: list[dict[str, Any]]) -> bytes:
        marker = "__VALUE__"
        chosen = [dict(row) for row in good[:rows]]
        chosen[row_index][column] = marker
        return json.dumps({"rows": chosen}).replace(f'"{marker}"', value_json).encode()
    return build


def _without(column: str) -> Callable[[list], bytes]:
    return lambda good: json.dumps({"rows": [{k: v for k, v in good[0].items() if k != column}]}).encode()


TABLE_CASES = {
    # name: (body builder, status, words the message must contain)
    "401-digit integer": (_with("1" * 401), 422,
                          ["rows[0]: tenure:", "(401 characters)", "outside the float32 range"]),
    "5,001-digit integer": (_with("9" * 5001, "TotalCharges"), 422,
                            ["rows[0]: TotalCharges:", "(5,001 characters)", "outside the float32 range"]),
    "1e300 for a float column": (_with("1e300"), 422,
                                 ["rows[0]: tenure: 1e+300 is outside the float32 range"]),
    "1e39 overflows float32": (_with("1e39", "MonthlyCharges", 1, rows=3), 422,
                               ["rows[1]: MonthlyCharges: 1e+39 is outside the float32 range"]),
    "-1e39 overflows float32": (_with("-1e39", "MonthlyCharges"), 422, ["MonthlyCharges: -1e+39 is outside"]),
    "NaN is not JSON": (_with("NaN"), 422, ["rows[0]: tenure: NaN is not JSON"]),
    "-Infinity is not JSON": (_with("-Infinity", "TotalCharges"), 422,
                              ["rows[0]: TotalCharges: -Infinity is not JSON"]),
    "'inf' as text": (_with('"inf"'), 422, ["rows[0]: tenure: 'inf' is not a finite number"]),
    "an array as a value": (_with("[1, 2]"), 422, ["rows[0]: tenure: an array is not a value"]),
    "an object in a text column": (_with('{"a": 1}', "gender"), 422,
                                   ["rows[0]: gender: an object is not a value"]),
    "text in a number column": (_with('"twelve"', "TotalCharges", 2, rows=3), 422,
                                ["rows[2]: TotalCharges: 'twelve' is not a number"]),
    "a long text in a number column": (_with(json.dumps("x" * 100_000)), 422,
                                       ["rows[0]: tenure:", "(100,000 characters) is not a number"]),
    "nested 100,000 deep": (lambda good: b'{"rows": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400,
                            ["nested too deeply"]),
    "not JSON": (lambda good: b'{"rows": [', 400, ["the body is not valid JSON"]),
    "not UTF-8": (lambda good: b'{"rows": [{"tenure": "\xff\xfe"}]}', 400, ["the body is not valid JSON"]),
    "rows is not a list": (lambda good: b'{"rows": {"tenure": 1}}', 422,
                           ['expected {"rows": [{column: value']),
    "no rows": (lambda good: b'{"rows": []}', 422, ["with at least one row"]),
    "a missing column": (_without("tenure"), 422, ["rows[0]: missing column(s) the model needs: tenure"]),
    "more rows than max_rows": (lambda good: json.dumps({"rows": good[:51]}).encode(), 413,
                                ["51 rows in one request, more than max_rows (50)"]),
    "a body over max_request_mb": (lambda good: json.dumps({"rows": good[:1] * 3000}).encode(), 413,
                                   ["request body is larger than max_request_mb (1 MB)"]),
}


@pytest.mark.parametrize("case", list(TABLE_CASES))
def test_hostile_table_requests_get_a_4xx_naming_row_and_column(case, churn_server, churn_model):
    build, status, words = TABLE_CASES[case]
    rows = churn_model["rows"]
    response = httpx.post(f"{churn_server.url}/predict", content=build(rows), timeout=30,
                          headers={**AUTH, "content-type": "application/json"})
    assert response.status_code == status, response.text[:2000]
    detail = response.json()["detail"]
    for word in words:
        assert word in detail, detail[:2000]
    assert len(detail) < 2000  # a hostile value is quoted cut short, never echoed whole
    _good_table_request(churn_server, rows[0])


def test_every_bad_value_of_a_request_is_listed_and_nothing_is_scored(churn_server, churn_model):
    """Three rows, two with bad values: both listed (row and column), and the request scores none."""
    rows = [dict(row) for row in churn_model["rows"][:3]]
    rows[1]["tenure"], rows[2]["MonthlyCharges"] = "__A__", "__B__"
    body = json.dumps({"rows": rows}).replace('"__A__"', "1e39").replace('"__B__"', "NaN")
    response = httpx.post(f"{churn_server.url}/predict", content=body, timeout=30,
                          headers={**AUTH, "content-type": "application/json"})
    assert response.status_code == 422
    rejected = response.json()["rejected"]
    assert [entry["row"] for entry in rejected] == [1, 2]
    assert rejected[0]["reason"].startswith("tenure: 1e+39 is outside the float32 range")
    assert rejected[1]["reason"] == ("MonthlyCharges: NaN is not JSON "
                                     "(send a number, or null for a missing value)")
    assert "predictions" not in response.json()


def test_a_chunked_body_without_length_is_cut_off_at_max_request_mb(churn_server):
    def chunks():
        yield b'{"rows": [{"tenure": "'
        for _ in range(300):
            yield b"1" * 8192  # 2.4 MB in all, no Content-Length
        yield b'"}]}'

    response = httpx.post(f"{churn_server.url}/predict", content=chunks(), timeout=30,
                          headers={**AUTH, "content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["detail"] == "request body is larger than max_request_mb (1 MB)"


def test_a_wrong_content_type_is_415(churn_server):
    response = httpx.post(f"{churn_server.url}/predict", content=b"tenure=3", timeout=30,
                          headers={**AUTH, "content-type": "text/csv"})
    assert response.status_code == 415
    assert response.json()["detail"].startswith("content type text/csv is not accepted: "
                                                "this model takes JSON")


# --- authentication and surface ----------------------------------------------------------------------------


@pytest.mark.parametrize("headers,problem", [
    ({}, "a bearer token is required"),
    ({"authorization": "Bearer wrong-token-but-long-enough"}, "the bearer token is not valid"),
    ({"authorization": f"Basic {TOKEN}"}, "the bearer token is not valid"),
    ({"authorization": f"Bearer {TOKEN[:-1]}"}, "the bearer token is not valid"),
])
def test_without_the_right_token_every_route_but_health_is_401(headers, problem, churn_server, churn_model):
    for method, path in (("POST", "/predict"), ("GET", "/metadata")):
        response = httpx.request(method, f"{churn_server.url}{path}", headers=headers, timeout=30,
                                 json={"rows": churn_model["rows"][:1]} if method == "POST" else None)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Bearer realm="visiontrain"'
        assert response.json()["detail"] == f"{problem}: send the header `Authorization: Bearer <token>`"
    health = httpx.get(f"{churn_server.url}/health", timeout=30)  # load balancers' probes need no token
    assert health.status_code == 200 and health.json()["status"] == "ok"
    _good_table_request(churn_server, churn_model["rows"][0])


def test_docs_are_off_unless_enabled_and_cors_off_unless_configured(churn_server, image_server):
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert httpx.get(f"{churn_server.url}{path}", headers=AUTH, timeout=30).status_code == 404
    assert httpx.get(f"{image_server.url}/openapi.json", timeout=30).json()["info"]["title"] == "visiontrain"
    assert httpx.get(f"{image_server.url}/docs", timeout=30).status_code == 200

    def preflight(server: Server, origin: str) -> httpx.Response:
        return httpx.options(f"{server.url}/predict", timeout=30, headers={
            "origin": origin, "access-control-request-method": "POST",
            "access-control-request-headers": "authorization"})

    allowed = preflight(image_server, "https://app.example.com")
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    other = preflight(image_server, "https://evil.example.net")
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    assert "access-control-allow-origin" not in preflight(churn_server, "https://app.example.com").headers


def test_metadata_tells_clients_the_limits(churn_server):
    server = httpx.get(f"{churn_server.url}/metadata", headers=AUTH, timeout=30).json()["server"]
    assert server["max_rows"] == 50 and server["read_timeout_s"] == READ_TIMEOUT_S
    assert server["authentication"] == "bearer" and server["max_request_mb"] == 1.0


def test_the_prediction_log_leaves_out_the_dropped_columns(churn_server, churn_model):
    _good_table_request(churn_server, churn_model["rows"][5])
    logged = json.loads(churn_server.log.read_text().splitlines()[-1])
    assert "customerID" not in logged["input"]
    assert logged["input"]["tenure"] == churn_model["rows"][5]["tenure"]  # raw inputs, as documented
    assert TOKEN not in churn_server.log.read_text()


def test_a_token_on_the_command_line_is_refused_before_anything_is_written(churn_model, tmp_path):
    for override in ("token=s3cret-value-on-the-command-line", "+token=s3cret-value-on-the-command-line"):
        result = run_cli("serve", f"model={churn_model['onnx']}", override, cwd=tmp_path)
        assert result.returncode == 2
        assert "config key `token`: a token on the command line is not accepted" in result.stderr
        assert "VISIONTRAIN_SERVE_TOKEN" in result.stderr and "token_file=" in result.stderr
        assert "s3cret" not in result.stdout + result.stderr
    assert not any("s3cret" in p.read_text(errors="ignore") for p in tmp_path.rglob("*") if p.is_file())


def test_the_token_from_the_environment_never_reaches_the_output(churn_model, tmp_path):
    secret = "env-token-" + "7" * 24
    server = Server(churn_model["onnx"], tmp_path, "access_log=true", env={"VISIONTRAIN_SERVE_TOKEN": secret})
    try:
        row = churn_model["rows"][0]
        good = httpx.post(f"{server.url}/predict", json={"rows": [row]}, timeout=30,
                          headers={"authorization": f"Bearer {secret}"})
        assert good.status_code == 200
        wrong = httpx.post(f"{server.url}/predict", json={"rows": [row]}, timeout=30,
                           headers={"authorization": f"Bearer {secret}x"})
        assert wrong.status_code == 401 and secret not in wrong.text
    finally:
        output = server.stop()
    assert "authentication: bearer token from $VISIONTRAIN_SERVE_TOKEN" in output
    assert secret not in output
    assert not any(secret in p.read_text(errors="ignore") for p in tmp_path.rglob("*") if p.is_file())


@pytest.mark.parametrize("setting,message", [
    ({"VISIONTRAIN_SERVE_TOKEN": "sh0rt"},
     "config key `VISIONTRAIN_SERVE_TOKEN`: the token must be at least 16"),
    ({"VISIONTRAIN_SERVE_TOKEN": "x" * 20, "token_file": "tok"}, "config key `token_file`: is set and so is"),
    ({"token_file": "missing-token-file"}, "config key `token_file`: "),
])
def test_token_mistakes_are_config_errors(setting, message, churn_model, tmp_path):
    (tmp_path / "tok").write_text("y" * 20)
    env = {key: value for key, value in setting.items() if key.isupper()}
    overrides = [f"token_file={tmp_path / setting['token_file']}"] if "token_file" in setting else []
    result = run_cli("serve", f"model={churn_model['onnx']}", *overrides, cwd=tmp_path, env=env)
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
    assert "sh0rt" not in result.stderr and "x" * 20 not in result.stderr and "y" * 20 not in result.stderr


@pytest.mark.parametrize("override,message", [
    ("max_rows=0", "config key `max_rows`: must be >= 1, got 0\n  fix: max_rows=1000"),
    ("read_timeout_s=-1", "config key `read_timeout_s`: must be > 0, got -1"),
    ("max_image_pixels=1000000000", "config key `max_image_pixels`: is 1,000,000,000, above the 178,956,970 pixels "
                                    "Pillow opens at all"),
])
def test_impossible_limits_are_config_errors(override, message, churn_model, tmp_path):
    result = run_cli("serve", f"model={churn_model['onnx']}", override, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]


# --- hostile images: limits checked from the header, before decoding --------------------------------------


@functools.lru_cache(maxsize=None)
def _png(size: tuple[int, int]) -> bytes:
    """A real, valid PNG of ``size`` (1-bit: a few kB however large it claims to be)."""
    buffer = io.BytesIO()
    Image.new("1", size).save(buffer, format="PNG")
    return buffer.getvalue()


def _noise_png() -> bytes:
    buffer = io.BytesIO()
    noise = np.random.default_rng(1).integers(0, 255, (60, 60, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, "PNG")
    return buffer.getvalue()


def _files(*named: tuple[str, bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (name, data, "application/octet-stream")) for name, data in named]


IMAGE_CASES = {
    "an 11000x11000 PNG": (lambda photo: _files(("bomb.png", _png((11000, 11000)))), 413,
                           ["bomb.png: image too large: 11000x11000 = 121,000,000 pixels, over "
                            "max_image_pixels=4,000,000"]),
    "four 11000x11000 PNGs": (
        lambda photo: _files(*[(f"bomb{i}.png", _png((11000, 11000))) for i in range(4)]), 413,
        ["bomb0.png: image too large: 11000x11000 = 121,000,000 pixels, over max_image_pixels"]),
    "a 20000x20000 PNG, beyond what PIL opens": (
        lambda photo: _files(("huge.png", _png((20000, 20000)))), 413,
        ["huge.png: image too large: 400,000,000 pixels, over max_image_pixels=4,000,000 (Pillow refuses"]),
    "more files than max_images": (lambda photo: _files(*[(f"{i}.jpg", photo) for i in range(5)]), 413,
                                   ["more than max_images (4) files in one request"]),
    "three images over max_request_pixels": (
        lambda photo: _files(*[(f"wide{i}.png", _png((2400, 1000))) for i in range(3)]), 413,
        ["the 3 images decode to 7,200,000 pixels in all, more than max_request_pixels (6,000,000)"]),
    "a text file": (lambda photo: _files(("ok.jpg", photo), ("notes.txt", b"not an image\n")), 400,
                    ["not a usable image: notes.txt: not an image (format not recognised)"]),
    "a truncated JPEG": (lambda photo: _files(("cut.jpg", photo[:300])), 400, ["cut.jpg: truncated image"]),
    "an empty file": (lambda photo: _files(("empty.jpg", b"")), 400, ["empty.jpg: empty file (0 bytes)"]),
    "half a PNG (the header passes)": (
        lambda photo: _files(("half.png", _noise_png()[:5000])), 400,
        ["not a usable image: half.png: truncated image: image file is truncated"]),
    "a body over max_request_mb": (lambda photo: _files(("big.jpg", b"\xff" * (1024 * 1024 + 10))), 413,
                                   ["request body is larger than max_request_mb (1 MB)"]),
    "no file field": (lambda photo: [("other", ("", b"", "text/plain"))], 422,
                      ["no image file in the request"]),
}


@pytest.mark.parametrize("case", list(IMAGE_CASES))
def test_hostile_image_uploads_get_a_4xx_naming_the_file_and_limit(case, image_server, image_model):
    build, status, words = IMAGE_CASES[case]
    response = httpx.post(f"{image_server.url}/predict", files=build(image_model["photo"]), timeout=30)
    assert response.status_code == status, response.text[:2000]
    detail = response.json()["detail"]
    for word in words:
        assert word in detail, detail
    _good_image_request(image_server, image_model["photo"])


def test_a_broken_multipart_body_is_400(image_server, image_model):
    response = httpx.post(f"{image_server.url}/predict", timeout=30,
                          content=b"--nope\r\ncontent-disposition: form-data\r\n",
                          headers={"content-type": "multipart/form-data"})
    assert response.status_code == 400
    assert response.json()["detail"].startswith("the multipart body cannot be parsed")
    _good_image_request(image_server, image_model["photo"])


def test_pixel_bombs_cost_the_server_no_memory(image_server, image_model):
    """Each refused 121-megapixel PNG would take 363 MB decoded: the server's memory does not move."""
    rss_before = _rss_mb(image_server.process.pid)
    for _ in range(5):
        response = httpx.post(f"{image_server.url}/predict", files=_files(("bomb.png", _png((11000, 11000)))),
                              timeout=30)
        assert response.status_code == 413
    assert _rss_mb(image_server.process.pid) - rss_before < 50
    _good_image_request(image_server, image_model["photo"])


# --- slow and short clients: cut off after read_timeout_s -------------------------------------------------


def _exchange(server: Server, parts: list[bytes], pause_s: float = 0.0, wait_s: float = 10.0
              ) -> tuple[bytes, float]:
    """Send ``parts`` over a raw socket (``pause_s`` apart), then read until the server closes it."""
    started = time.monotonic()
    received = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=wait_s) as sock:
        try:
            for part in parts:
                if select.select([sock], [], [], 0)[0]:
                    break  # the server has answered: stop sending, read it
                sock.sendall(part)
                time.sleep(pause_s)
        except OSError:  # the server closed it mid-send: that is the point
            pass
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    return received, time.monotonic() - started


HEAD = b"POST /predict HTTP/1.1\r\nhost: test\r\ncontent-type: multipart/form-data; boundary=x\r\n"

SLOW_CASES = {
    "a body shorter than its Content-Length": (
        [HEAD + b"content-length: 1000\r\n\r\n--x\r\n"], 0.0, b"408",
        b"the request body did not arrive within read_timeout_s (1.5 s) (Content-Length: 1000)"),
    "a body trickled a byte at a time": (
        [HEAD + b"content-length: 1000\r\n\r\n"] + [b"-"] * 40, 0.1, b"408",
        b"the request body did not arrive within read_timeout_s (1.5 s)"),
    "headers trickled a byte at a time (slow loris)": (
        [bytes([byte]) for byte in b"GET /health HTTP/1.1\r\nhost: test\r\nx-slow: " + b"a" * 60], 0.05,
        b"408", b"no complete request within read_timeout_s (1.5 s)"),
    "a connection that sends nothing": ([], 0.0, b"408",
                                        b"no complete request within read_timeout_s (1.5 s)"),
    "a Content-Length that is not a number": ([HEAD + b"content-length: lots\r\n\r\n"], 0.0, b"400",
                                              b"Invalid HTTP request received."),
}


@pytest.mark.parametrize("case", list(SLOW_CASES))
def test_slow_and_short_clients_are_cut_off(case, image_server, image_model):
    parts, pause_s, status, message = SLOW_CASES[case]
    response, seconds = _exchange(image_server, parts, pause_s)
    assert response.startswith(b"HTTP/1.1 " + status), response[:500]
    assert message in response, response[:500]
    assert seconds < READ_TIMEOUT_S * 2 + 3  # answered and closed, not held open
    _good_image_request(image_server, image_model["photo"])


# --- under load: bounded soak and the 2,000-request check (slow) ------------------------------------------


def _rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (psutil where installed, else /proc)."""
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise


async def _load(send: Callable[[httpx.AsyncClient, int], Any], count: int | None, concurrency: int,
                base_url: str, seconds: float | None = None) -> list[int]:
    """``count`` requests (or as many as fit in ``seconds``), ``concurrency`` at a time; their statuses."""
    statuses: list[int] = []
    deadline = time.monotonic() + (seconds or 1e9)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        counter = iter(range(count if count is not None else 10**9))

        async def worker() -> None:
            for index in counter:
                if time.monotonic() > deadline:
                    return
                statuses.append((await send(client, index)).status_code)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


@pytest.mark.slow
def test_2000_requests_at_concurrency_32_are_all_answered_200(image_model, tmp_path):
    server = Server(image_model["onnx"], tmp_path)
    try:
        photo = image_model["photo"]

        def send(client: httpx.AsyncClient, index: int):
            return client.post("/predict", files={"files": (f"{index}.jpg", photo, "image/jpeg")})

        statuses = asyncio.run(_load(send, 2000, 32, server.url))
        assert len(statuses) == 2000 and statuses.count(200) == 2000
        assert httpx.get(f"{server.url}/health").json()["inputs"] == 2000
    finally:
        server.stop()


@pytest.mark.slow
def test_memory_stays_flat_under_a_mixed_good_and_hostile_soak(image_model, churn_model, tmp_path):
    """Some minutes of good and hostile requests at concurrency 16: the servers' RSS, sampled every second
    after a warm-up, ends where it started (last-quarter median within 15% + 20 MB of the first-quarter's)."""
    seconds = float(os.environ.get("VISIONTRAIN_SOAK_SECONDS", "150"))
    images = Server(image_model["onnx"], tmp_path, "max_image_pixels=4000000", "max_request_mb=2")
    tables = Server(churn_model["onnx"], tmp_path, "max_request_mb=2")
    bomb, photo, rows = _png((11000, 11000)), image_model["photo"], churn_model["rows"]
    bad_rows = _with("1e39", "MonthlyCharges")(rows)
    bodies = {0: ("images", _files(("a.jpg", photo), ("b.jpg", photo))),
              1: ("images", _files(("bomb.png", bomb))),
              2: ("images", _files(("cut.jpg", photo[:300]))),
              3: ("tables", json.dumps({"rows": rows[:40]})),
              4: ("tables", bad_rows),
              5: ("tables", b'{"rows": ' + b"[" * 50_000 + b"]" * 50_000 + b"}")}
    expected = {0: 200, 1: 413, 2: 400, 3: 200, 4: 422, 5: 400}
    samples: dict[str, list[float]] = {"images": [], "tables": []}
    answered: dict[int, list[int]] = {kind: [] for kind in bodies}
    try:
        urls = {"images": images.url, "tables": tables.url}

        def send(client: httpx.AsyncClient, index: int):
            kind = index % len(bodies)
            target, payload = bodies[kind]
            if target == "images":
                request = client.post(f"{urls[target]}/predict", files=payload)
            else:
                request = client.post(f"{urls[target]}/predict", content=payload,
                                      headers={"content-type": "application/json"})

            async def tagged():
                response = await request
                answered[kind].append(response.status_code)
                return response
            return tagged()

        async def soak() -> None:
            async def sample() -> None:
                while True:
                    samples["images"].append(_rss_mb(images.process.pid))
                    samples["tables"].append(_rss_mb(tables.process.pid))
                    await asyncio.sleep(1.0)

            sampler = asyncio.get_running_loop().create_task(sample())
            await _load(send, None, 16, images.url, seconds)
            sampler.cancel()

        asyncio.run(soak())
    finally:
        images.stop()
        tables.stop()
    for kind, statuses in answered.items():
        assert statuses and set(statuses) == {expected[kind]}, (kind, sorted(set(statuses)))
    for name, series in samples.items():
        steady = series[len(series) // 5:]  # after the warm-up (first fifth)
        quarter = max(1, len(steady) // 4)
        first, last = statistics.median(steady[:quarter]), statistics.median(steady[-quarter:])
        print(f"soak, {name} server ({sum(map(len, answered.values()))} requests to both): "
              f"RSS median {first:.0f} MB "
              f"(first quarter) -> {last:.0f} MB (last quarter), peak {max(series):.0f} MB")
        assert last <= first * 1.15 + 20, (name, first, last, series)


@pytest.mark.parametrize(("mode", "warned"), [(0o600, False), (0o644, True)])
def test_a_token_file_others_can_read_is_warned_about(tmp_path, caplog, mode, warned):
    from visiontrain.deploy.access import load_token

    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token-of-32-characters-xx\n")
    token_file.chmod(mode)
    with caplog.at_level(logging.WARNING, logger="visiontrain"):
        token, source = load_token(str(token_file), environ={})
    assert token == "s3cret-token-of-32-characters-xx" and source == f"token_file {token_file}"
    lines = [r.getMessage() for r in caplog.records if "can be read by other users" in r.getMessage()]
    assert lines == ([f"token_file {token_file} can be read by other users (mode 644): chmod 600 {token_file}"]
                     if warned else [])
    assert all("s3cret" not in r.getMessage() for r in caplog.records)
