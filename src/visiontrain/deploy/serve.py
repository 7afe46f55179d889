"""``visiontrain serve model=<file.onnx>``: an HTTP prediction service on onnxruntime (FastAPI + uvicorn).

``POST /predict`` takes multipart image uploads (image classifiers) or ``{"rows": [...]}`` JSON (table
models); ``GET /health`` and ``GET /metadata`` describe the service. Concurrent requests are batched into
one model call (:mod:`visiontrain.deploy.batcher`). Client mistakes get a 4xx naming what was wrong: 413
too large, 415 wrong content type, 400 a file that is not an image, 422 missing columns or bad values.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from visiontrain.deploy.batcher import Batcher
from visiontrain.deploy.image_input import ImageRejected, ImageSpec, decode, preprocess, statistics
from visiontrain.deploy.model import IMAGE, OnnxModel, open_model
from visiontrain.deploy.table_input import ColumnsError, TableSpec, prepare_rows
from visiontrain.errors import ConfigError


@dataclass(frozen=True)
class ServeSettings:
    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    max_request_mb: float = 10.0
    top_k: int = 5
    log_predictions: str | None = None

    @property
    def max_request_bytes(self) -> int:
        return int(self.max_request_mb * 1024 * 1024)


class HttpError(Exception):
    """A client mistake: the status code and a message that names the file, row or column."""

    def __init__(self, status: int, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.detail, self.extra = status, detail, extra


class PredictionLog:
    """JSON lines of input summaries and outputs, one per prediction, for `visiontrain drift` later."""

    def __init__(self, path: Path, model_version: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.model_version = model_version
        self._file = open(path, "a", buffering=1)  # line-buffered: a crash loses at most one line
        self._lock = threading.Lock()

    def write(self, pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
        lines = "".join(json.dumps({"time": now, "model_version": self.model_version, "input": given,
                                    "output": output}, default=str) + "\n" for given, output in pairs)
        with self._lock:
            self._file.write(lines)

    def close(self) -> None:
        self._file.close()


def create_app(model: OnnxModel, settings: ServeSettings) -> FastAPI:
    """The service for ``model``: routes, the batcher and the optional prediction log."""
    is_image = model.kind == IMAGE
    batcher: Batcher = Batcher(_image_runner(model, settings) if is_image else _table_runner(model, settings),
                               settings.max_batch_size, settings.max_wait_ms)
    version = f"sha256:{model.version}"
    log = PredictionLog(Path(settings.log_predictions), version) if settings.log_predictions else None
    image_spec = ImageSpec.from_metadata(model.metadata) if is_image else None
    lookup = image_spec.lookup_table() if image_spec else None
    table_spec = None if is_image else TableSpec.from_metadata(model.metadata, model.input_columns())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.close()
        if log is not None:
            log.close()

    app = FastAPI(title="visiontrain", summary=f"predictions from {model.path.name}", lifespan=lifespan)

    @app.exception_handler(HttpError)
    async def client_error(_: Request, error: HttpError) -> JSONResponse:
        return JSONResponse({"detail": error.detail, **error.extra}, status_code=error.status)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model_version": version, **batcher.stats.as_dict()}

    @app.get("/metadata")
    async def metadata() -> dict[str, Any]:
        return {**model.describe(), "server": {"max_batch_size": settings.max_batch_size,
                                              "max_wait_ms": settings.max_wait_ms,
                                              "max_request_mb": settings.max_request_mb}}

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        wanted = "multipart/form-data" if is_image else "application/json"
        given = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if given != wanted:
            what = "image files as multipart/form-data (field `files`)" if is_image else \
                'JSON {"rows": [{column: value, ...}]} as application/json'
            raise HttpError(415, f"content type {given or '(none)'} is not accepted: this model takes {what}")
        body = await _read_limited(request, settings.max_request_bytes)
        if is_image:
            predictions, logged = await _predict_images(request, body, image_spec, lookup, batcher, settings)
        else:
            predictions, logged = await _predict_rows(body, table_spec, batcher)
        if log is not None:
            log.write(logged)
        return {"model_version": version, "predictions": predictions}

    return app


async def _read_limited(request: Request, limit: int) -> bytes:
    """The request body, or 413 as soon as it is known to exceed ``limit`` bytes (by header or count)."""
    declared = request.headers.get("content-length")
    message = f"request body is larger than max_request_mb ({limit / 1024 / 1024:g} MB)"
    if declared and declared.isdigit() and int(declared) > limit:
        raise HttpError(413, message)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HttpError(413, message)
    return bytes(body)


async def _predict_images(request: Request, body: bytes, spec: ImageSpec, lookup: np.ndarray,
                          batcher: Batcher, settings: ServeSettings
                          ) -> tuple[list[dict[str, Any]], list[tuple[dict, dict]]]:
    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_part_size=settings.max_request_bytes)
    except Exception as error:  # noqa: BLE001 - python-multipart's errors: a malformed body
        raise HttpError(400, f"the multipart body cannot be parsed: {error}") from None
    uploads = [(value.filename or key, await value.read()) for key, value in form.multi_items()
               if isinstance(value, UploadFile)]
    await form.close()
    if not uploads:
        raise HttpError(422, "no image file in the request: send the image(s) as multipart field `files`")
    pixels, stats, rejected = await run_in_threadpool(_prepare_images, uploads, spec, lookup)
    if rejected:
        names = ", ".join(f"{name}: {reason}" for name, reason in rejected)
        raise HttpError(400, f"not a usable image: {names}",
                        rejected=[{"file": name, "reason": reason} for name, reason in rejected])
    results = await batcher.submit(pixels, len(uploads))
    predictions = [{"file": name, **result} for (name, _), result in zip(uploads, results)]
    logged = [({"file": name, **stat},
               {"predicted_class": result["top1"], "confidence": result["top1_probability"]})
              for (name, _), stat, result in zip(uploads, stats, results)]
    return predictions, logged


def _prepare_images(uploads: list[tuple[str, bytes]], spec: ImageSpec, table: np.ndarray
                    ) -> tuple[np.ndarray | None, list[dict[str, float]], list[tuple[str, str]]]:
    pixels, stats, rejected = [], [], []
    for name, data in uploads:
        try:
            decoded = decode(data, spec.resize_to)
        except ImageRejected as error:
            rejected.append((name, str(error)))
            continue
        pixels.append(preprocess(decoded.image, spec, table))
        stats.append(statistics(decoded))
    return (np.stack(pixels) if pixels and not rejected else None), stats, rejected


async def _predict_rows(body: bytes, spec: TableSpec, batcher: Batcher
                        ) -> tuple[list[dict[str, Any]], list[tuple[dict, dict]]]:
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise HttpError(400, f"the body is not valid JSON: {error}") from None
    rows = payload.get("rows") if isinstance(payload, dict) else None
    if not isinstance(rows, list) or not rows or not all(isinstance(row, dict) for row in rows):
        raise HttpError(422, 'expected {"rows": [{column: value, ...}, ...]} with at least one row',
                        columns=spec.columns)
    for index, row in enumerate(rows):
        try:
            spec.check_columns(row)
        except ColumnsError as error:
            raise HttpError(422, f"rows[{index}]: {error}", missing=error.missing,
                            unexpected=error.unexpected, columns=spec.columns) from None
    prepared = prepare_rows(rows, spec)
    if prepared.rejects:
        rejected = sorted(prepared.rejects.items())
        problems = "; ".join(f"rows[{index}]: {reason}" for index, reason in rejected)
        raise HttpError(422, f"unusable values: {problems}",
                        rejected=[{"row": index, "reason": reason} for index, reason in rejected])
    results = await batcher.submit(prepared.feeds, len(rows))
    return results, list(zip(rows, results))


def _split(results: list[Any], counts: list[int]) -> list[list[Any]]:
    out, start = [], 0
    for count in counts:
        out.append(results[start:start + count])
        start += count
    return out


def _image_runner(model: OnnxModel, settings: ServeSettings):
    """Payloads are [k, 3, H, W] arrays, one per request; one model call per ``max_batch_size`` images."""
    def run(payloads: list[np.ndarray]) -> list[list[dict[str, Any]]]:
        pixels = payloads[0] if len(payloads) == 1 else np.concatenate(payloads)
        results: list[dict[str, Any]] = []
        for start in range(0, len(pixels), settings.max_batch_size):
            results.extend(model.classify(pixels[start:start + settings.max_batch_size], settings.top_k))
        return _split(results, [len(p) for p in payloads])
    return run


def _table_runner(model: OnnxModel, settings: ServeSettings):
    """Payloads are feeds ({column: [n, 1]}), one per request, concatenated column by column."""
    def run(payloads: list[dict[str, np.ndarray]]) -> list[list[dict[str, Any]]]:
        feeds = payloads[0] if len(payloads) == 1 else \
            {name: np.concatenate([p[name] for p in payloads]) for name in payloads[0]}
        total = len(next(iter(feeds.values())))
        results: list[dict[str, Any]] = []
        step = settings.max_batch_size
        for start in range(0, total, step):
            results.extend(model.score({name: values[start:start + step] for name, values in feeds.items()}))
        return _split(results, [len(next(iter(p.values()))) for p in payloads])
    return run


def serve(cfg: Any) -> None:
    """Load the model, then run uvicorn until interrupted (conf/serve.yaml)."""
    import uvicorn

    model = open_model(cfg.get("model"), threads=int(cfg.get("threads") or 0), spin=bool(cfg.get("spin")))
    if int(cfg.max_batch_size) < 1:
        raise ConfigError("max_batch_size", f"is {cfg.max_batch_size}", "max_batch_size=1 (no batching)")
    settings = ServeSettings(int(cfg.max_batch_size), float(cfg.max_wait_ms), float(cfg.max_request_mb),
                             int(cfg.top_k), str(cfg.log_predictions) if cfg.get("log_predictions") else None)
    kind = "image classifier" if model.kind == IMAGE else "table model"
    print(f"visiontrain serve: {model.path} ({kind}, sha256:{model.version[:12]}) on http://{cfg.host}:{cfg.port}\n"
          f"  POST /predict   GET /health   GET /metadata   (max_batch_size={settings.max_batch_size}, "
          f"max_wait_ms={settings.max_wait_ms:g})", flush=True)
    uvicorn.run(create_app(model, settings), host=str(cfg.host), port=int(cfg.port),
                log_level=str(cfg.log_level), access_log=bool(cfg.get("access_log", False)))
