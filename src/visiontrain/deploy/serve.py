"""The HTTP prediction service of ``visiontrain serve`` (the command: :mod:`visiontrain.commands.serve`).

``POST /predict`` takes multipart image uploads (image classifiers) or ``{"rows": [...]}`` JSON (table
models); ``GET /health`` and ``GET /metadata`` describe the service, ``GET /metrics`` is its Prometheus
exposition (:mod:`visiontrain.deploy.metrics`; ``drift_window=N``: rolling drift over every N inputs).
Concurrent requests are batched into one model call (:mod:`visiontrain.deploy.batcher`). Client mistakes get
a 4xx naming what was wrong: 401 no or a wrong token, 408 too slow, 413 over a limit (named), 415 wrong content
type, 400 a file that is not an image or a body that is not JSON, 422 missing columns or bad values (naming row
and column). Every limit is checked before the costly work it protects (decoding, the model): see
:mod:`visiontrain.deploy.request_body`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import threading
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from visiontrain.config.commands import ServeOptions
from visiontrain.core.image_decode import decode, decoded_size
from visiontrain.core.image_preprocess import ImageSpec, preprocess
from visiontrain.core.image_statistics import IMAGE_STATISTICS, image_statistics
from visiontrain.core.machine import available_cores
from visiontrain.deploy.access import BearerAuth
from visiontrain.deploy.batcher import Batcher
from visiontrain.deploy.metrics import RequestMetrics, ServeMetrics
from visiontrain.deploy.request_body import ClientError, parse_json, read_body, rejected_rows, table_rows
from visiontrain.deploy.table_input import TableSpec, prepare_rows
from visiontrain.errors import ConfigError, ImageRejected, ImageTooLarge
from visiontrain.inference.onnx_model import IMAGE, OnnxModel
from visiontrain.monitoring.current import prediction_outputs
from visiontrain.monitoring.rolling import RollingDrift

logger = logging.getLogger("visiontrain")

OPEN_PATHS = ("/health",)  # answered without the token: load balancers and liveness probes call it
DOCS_PATHS = {"docs_url": "/docs", "redoc_url": "/redoc", "openapi_url": "/openapi.json"}


class PredictionLog:
    """JSON lines of inputs and outputs, one per prediction, for `visiontrain drift` later.

    Table inputs are written as the client sent them (identifiers and personal data included), less the
    ``log_drop_columns``; image inputs as file name, size and colour statistics (never the pixels).
    """

    def __init__(self, path: Path, model_version: str, drop: tuple[str, ...] = ()) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.model_version, self.drop = model_version, frozenset(drop)
        self._file = open(path, "a", buffering=1)  # line-buffered: a crash loses at most one line
        self._lock = threading.Lock()

    def write(self, pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
        lines = "".join(json.dumps({"time": now, "model_version": self.model_version,
                                    "input": {k: v for k, v in given.items() if k not in self.drop},
                                    "output": output}, default=str) + "\n" for given, output in pairs)
        with self._lock:
            self._file.write(lines)

    def close(self) -> None:
        self._file.close()


def create_app(model: OnnxModel, settings: ServeOptions, token: str | None = None) -> FastAPI:
    """The service for ``model``: routes, the batcher, the optional token, CORS, prediction log and metrics."""
    is_image = model.kind == IMAGE
    metrics = ServeMetrics(model)
    batcher: Batcher = Batcher(_image_runner(model, settings) if is_image else _table_runner(model, settings),
                               settings.max_batch_size, settings.max_wait_ms, on_scored=metrics.scored)
    rolling = _rolling_drift(model, settings.drift_window)
    version = f"sha256:{model.version}"
    log = PredictionLog(Path(settings.log_predictions), version, settings.log_drop_columns) \
        if settings.log_predictions else None
    image_spec = ImageSpec.from_metadata(model.metadata.as_dict()) if is_image else None
    lookup = image_spec.lookup_table() if image_spec else None
    table_spec = None if is_image else TableSpec.from_metadata(model.metadata, model.input_columns())
    # decoding holds up to max_request_pixels per request in memory: one request per core decodes at a time
    decoding = asyncio.Semaphore(max(1, available_cores()))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.close()
        if log is not None:
            log.close()

    docs = DOCS_PATHS if settings.docs else dict.fromkeys(DOCS_PATHS)
    app = FastAPI(title="visiontrain", summary=f"predictions from {model.path.name}", lifespan=lifespan,
                  **docs)
    if token is not None:
        app.add_middleware(BearerAuth, token=token, open_paths=OPEN_PATHS)
    if settings.cors_origins:  # added last: outermost, so browsers' preflight requests need no token
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["authorization", "content-type"])
    app.add_middleware(RequestMetrics, metrics=metrics)  # outermost: 401s and CORS answers are counted too

    def watch(inputs: dict[str, Any], predictions: list[dict[str, Any]], rejected: int = 0) -> None:
        """Feed the drift window; publish each one finished, and log a warning when it drifted."""
        if rolling is None:
            return
        outputs = prediction_outputs(predictions) if predictions else None
        for window in rolling.add(inputs, outputs, rejected):
            metrics.drift(window)
            if window.alert:
                logger.warning("visiontrain serve: %s", window.describe())

    @app.exception_handler(ClientError)
    async def client_error(_: Request, error: ClientError) -> JSONResponse:
        watch({}, [], rejected=len(error.extra.get("rejected", ())))  # rows or files refused, each listed
        return JSONResponse({"detail": error.detail, **error.extra}, status_code=error.status_code)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model_version": version, "providers": model.providers,
                **batcher.stats.as_dict()}

    @app.get("/metadata")
    async def metadata() -> dict[str, Any]:
        limits = ("max_batch_size", "max_wait_ms", "max_request_mb", "max_rows", "max_images",
                  "max_image_pixels", "max_request_pixels", "read_timeout_s")
        return {**model.describe(), "server": {**{key: getattr(settings, key) for key in limits},
                                              "authentication": "bearer" if token else "none"}}

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        content, content_type = metrics.exposition()
        return Response(content, media_type=content_type)

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        wanted = "multipart/form-data" if is_image else "application/json"
        given = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if given != wanted:
            what = "image files as multipart/form-data (field `files`)" if is_image else \
                'JSON {"rows": [{column: value, ...}]} as application/json'
            raise HTTPException(415, f"content type {given[:80] or '(none)'} is not accepted: "
                                f"this model takes {what}")
        body = await read_body(request, settings.max_request_bytes, settings.read_timeout_s)
        if is_image:
            uploads = await _uploads(request, body, settings)
            async with decoding:
                pixels, stats = await run_in_threadpool(_prepare_images, uploads, image_spec, lookup,
                                                        settings)
            predictions, logged = await _predict_images(uploads, pixels, stats, batcher)
            watch({name: [stat[name] for stat in stats] for name in IMAGE_STATISTICS}, predictions)
        else:
            predictions, logged, inputs = await _predict_rows(body, table_spec, batcher, settings.max_rows)
            watch(inputs, predictions)
        if log is not None:
            log.write(logged)
        return {"model_version": version, "predictions": predictions}

    return app


async def _uploads(request: Request, body: bytes, settings: ServeOptions) -> list[tuple[str, bytes]]:
    """The uploaded files of a multipart body as (file name, bytes); 413 past ``max_images``."""
    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_part_size=settings.max_request_bytes,
                                                         max_files=settings.max_images)
    except Exception as error:  # noqa: BLE001 - python-multipart's errors: a malformed body
        message = str(getattr(error, "detail", error))
        if message.startswith("Too many files"):
            raise HTTPException(413, f"more than max_images ({settings.max_images}) files in one request: "
                                "send them in several requests") from None
        raise HTTPException(400, f"the multipart body cannot be parsed: {message}") from None
    uploads = [(value.filename or key, await value.read()) for key, value in form.multi_items()
               if isinstance(value, UploadFile)]
    await form.close()
    if not uploads:
        raise HTTPException(422, "no image file in the request: send the image(s) as multipart field `files`")
    return uploads


def _prepare_images(uploads: list[tuple[str, bytes]], spec: ImageSpec, table: np.ndarray,
                    settings: ServeOptions) -> tuple[np.ndarray, list[dict[str, float]]]:
    """Model inputs and drift statistics, or a ClientError naming the files: sizes are checked, from the
    headers, against both pixel limits before a single image is decoded."""
    sizes = [_checked_size(name, data, spec, settings) for name, data in uploads]
    _raise_for_rejects([(name, size) for (name, _), size in zip(uploads, sizes) if isinstance(size, str)])
    total = sum(width * height for width, height in sizes)
    if total > settings.max_request_pixels:
        raise HTTPException(413, f"the {len(uploads)} images decode to {total:,} pixels in all, more than "
                            f"max_request_pixels ({settings.max_request_pixels:,}): send fewer or smaller images "
                            "per request")
    pixels, stats, rejected = [], [], []
    for name, data in uploads:
        try:
            decoded = decode(data, spec.resize_to, limit=settings.pixel_limit)
        except ImageRejected as error:
            rejected.append((name, str(error)))
            continue
        pixels.append(preprocess(decoded.image, spec, table))
        stats.append(image_statistics(decoded))
    _raise_for_rejects(rejected)
    return np.stack(pixels), stats


def _checked_size(name: str, data: bytes, spec: ImageSpec, settings: ServeOptions) -> tuple[int, int] | str:
    """(width, height) as decoding will produce them, the reason the file is not an image, or 413."""
    try:
        return decoded_size(data, spec.resize_to, limit=settings.pixel_limit)
    except ImageTooLarge as error:
        raise _too_large(name, str(error)) from None
    except ImageRejected as error:
        return str(error)


def _too_large(name: str, reason: str) -> ClientError:
    return ClientError(413, f"{name}: {reason}", rejected=[{"file": name, "reason": reason}])


def _raise_for_rejects(rejected: list[tuple[str, str]]) -> None:
    if rejected:
        names = ", ".join(f"{name}: {reason}" for name, reason in rejected)
        raise ClientError(400, f"not a usable image: {names}",
                          rejected=[{"file": name, "reason": reason} for name, reason in rejected])


async def _predict_images(uploads: list[tuple[str, bytes]], pixels: np.ndarray, stats: list[dict[str, float]],
                          batcher: Batcher) -> tuple[list[dict[str, Any]], list[tuple[dict, dict]]]:
    results = await batcher.submit(pixels, len(uploads))
    predictions = [{"file": name, **result} for (name, _), result in zip(uploads, results)]
    logged = [({"file": name, **stat},
               {"predicted_class": result["top1"], "confidence": result["top1_probability"]})
              for (name, _), stat, result in zip(uploads, stats, results)]
    return predictions, logged


async def _predict_rows(body: bytes, spec: TableSpec, batcher: Batcher, max_rows: int
                        ) -> tuple[list[dict[str, Any]], list[tuple[dict, dict]], dict[str, Any]]:
    """Predictions, what the log writes, and the cleansed inputs (what drift compares)."""
    rows, problems = table_rows(parse_json(body), spec, max_rows)
    prepared = prepare_rows(rows, spec)
    for index, reason in prepared.rejects.items():
        problems[index] = f"{problems[index]}; {reason}" if index in problems else reason
    if problems:
        raise rejected_rows(problems)
    results = await batcher.submit(prepared.feeds(), len(rows))
    return results, list(zip(rows, results)), prepared.values


def _rolling_drift(model: OnnxModel, window: int) -> RollingDrift | None:
    """The drift windows ``drift_window`` asks for; a ConfigError when the model has no reference to compare."""
    if not window:
        return None
    reference = model.metadata.reference_stats
    if not reference:
        raise ConfigError("drift_window", f"{model.path.name} carries no reference statistics to compare with "
                          "(exported by an older visiontrain?)", "drift_window=0, or re-export the model")
    return RollingDrift(reference, window)


def _split(results: list[Any], counts: list[int]) -> list[list[Any]]:
    out, start = [], 0
    for count in counts:
        out.append(results[start:start + count])
        start += count
    return out


def _image_runner(model: OnnxModel, settings: ServeOptions):
    """Payloads are [k, 3, H, W] arrays, one per request; one model call per ``max_batch_size`` images."""
    def run(payloads: list[np.ndarray]) -> list[list[dict[str, Any]]]:
        pixels = payloads[0] if len(payloads) == 1 else np.concatenate(payloads)
        results: list[dict[str, Any]] = []
        for start in range(0, len(pixels), settings.max_batch_size):
            results.extend(model.classify(pixels[start:start + settings.max_batch_size], settings.top_k))
        return _split(results, [len(p) for p in payloads])
    return run


def _table_runner(model: OnnxModel, settings: ServeOptions):
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
