"""The HTTP prediction service of ``visiontrain serve`` (the command: :mod:`visiontrain.commands.serve`).

``POST /predict`` takes multipart image uploads (image classifiers) or ``{"rows": [...]}`` JSON (table
models); ``GET /health`` and ``GET /metadata`` describe the service, ``GET /metrics`` is its Prometheus
exposition (:mod:`visiontrain.deploy.metrics`; ``drift_window=N``: rolling drift over every N inputs).
Concurrent requests are batched into one model call (:mod:`visiontrain.deploy.batcher`). With ``registry=``
it serves a registered model's production and candidate versions at once, following their aliases
(:mod:`visiontrain.deploy.rollout`): each request is routed (:mod:`visiontrain.deploy.routing`), production's
answers may be shadowed by the candidate (:mod:`visiontrain.deploy.shadow`), and every answer names the version
that gave it (``model_version``, the ``X-Model-Version`` header, the metrics' ``version`` label). Client mistakes get
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
from dataclasses import dataclass
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
from visiontrain.core.redaction import redact_url
from visiontrain.deploy.access import BearerAuth
from visiontrain.deploy.batcher import Batcher
from visiontrain.deploy.deployed import Deployed
from visiontrain.deploy.metrics import VERSION_HEADER, RequestMetrics
from visiontrain.deploy.request_body import ClientError, parse_json, read_body, rejected_rows, table_rows
from visiontrain.deploy.rollout import FixedVersion, Versions
from visiontrain.deploy.routing import SHADOW, Routing
from visiontrain.deploy.shadow import ShadowCopy, ShadowQueue
from visiontrain.deploy.table_input import prepare_rows
from visiontrain.errors import ImageRejected, ImageTooLarge
from visiontrain.inference.onnx_model import OnnxModel
from visiontrain.monitoring.current import prediction_outputs

logger = logging.getLogger("visiontrain")

OPEN_PATHS = ("/health",)  # answered without the token: load balancers and liveness probes call it
DOCS_PATHS = {"docs_url": "/docs", "redoc_url": "/redoc", "openapi_url": "/openapi.json"}


class PredictionLog:
    """JSON lines of inputs and outputs, one per prediction, for `visiontrain drift` later.

    Table inputs are written as the client sent them (identifiers and personal data included), less the
    ``log_drop_columns``; image inputs as file name, size and colour statistics (never the pixels). Each line
    names the version that scored it; serving from a registry, also its ``role`` (production, candidate, or
    shadow: a copy scored but never returned, which `visiontrain drift` leaves out).
    """

    def __init__(self, path: Path, drop: tuple[str, ...] = ()) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.drop = frozenset(drop)
        self._file = open(path, "a", buffering=1)  # line-buffered: a crash loses at most one line
        self._lock = threading.Lock()

    def write(self, pairs: list[tuple[dict[str, Any], dict[str, Any]]], model_version: str,
              role: str | None = None) -> None:
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
        head: dict[str, Any] = {"time": now, "model_version": model_version, **({"role": role} if role else {})}
        lines = "".join(json.dumps({**head, "input": {k: v for k, v in given.items() if k not in self.drop},
                                    "output": output}, default=str) + "\n" for given, output in pairs)
        with self._lock:
            self._file.write(lines)

    def close(self) -> None:
        self._file.close()


@dataclass
class Answered:
    """The inputs of one request that one version scored: positions in the request, predictions, log lines."""

    deployed: Deployed
    positions: list[int]
    results: list[dict[str, Any]]
    logged: list[tuple[dict[str, Any], dict[str, Any]]]
    drift_inputs: dict[str, Any]  # what the drift window compares (cleansed values, image statistics)
    payload: Any  # what a shadow copy re-scores: the rows, or the uploads with their pixels and statistics


def create_app(source: OnnxModel | Versions, settings: ServeOptions, token: str | None = None) -> FastAPI:
    """The service for ``source`` (a model file's :class:`OnnxModel`, or a registry :class:`Rollout`): routes,
    batchers, the optional token, CORS, prediction log, shadow queue and metrics."""
    versions: Versions = FixedVersion(source, settings) if isinstance(source, OnnxModel) else source
    metrics = versions.metrics
    first = versions.routing.production
    is_image = first.is_image
    log = PredictionLog(Path(settings.log_predictions), settings.log_drop_columns) \
        if settings.log_predictions else None
    # decoding holds up to max_request_pixels per request in memory: one request per core decodes at a time
    decoding = asyncio.Semaphore(max(1, available_cores()))
    sticky_header = settings.sticky.name if settings.sticky and settings.sticky.source == "header" else None

    async def score_shadow(copy: ShadowCopy) -> None:
        """The candidate's answers to what production answered: logged and measured, never returned."""
        target = copy.target
        if is_image:
            uploads, pixels, stats = copy.payload
            if pixels is None:  # the candidate preprocesses differently: decode again, for it
                async with decoding:
                    pixels, stats = await run_in_threadpool(_prepare_images, uploads, target.image_spec,
                                                            target.lookup, settings)
            results, logged = await _predict_images(uploads, pixels, stats, target.batcher)
        else:
            prepared = prepare_rows(copy.payload, target.table_spec)
            if prepared.rejects:
                raise ValueError(f"its input rules reject {len(prepared.rejects)} of the {len(copy.payload)} rows "
                                 f"production scored (first: {next(iter(prepared.rejects.values()))})")
            results = await target.batcher.submit(prepared.feeds(), len(copy.payload))
            logged = list(zip(copy.payload, results))
        comparable = [(ours, theirs) for ours, theirs in zip(copy.answered, results) if _decision(ours) is not None]
        if comparable:
            agreed = sum(_decision(ours) == _decision(theirs) for ours, theirs in comparable)
            metrics.shadow_compared(target.label, agreed, len(comparable) - agreed)
        metrics.routed_inputs(target.label, SHADOW, len(results))
        if log is not None:
            log.write(logged, target.label, SHADOW)

    def shadow_dropped(copy: ShadowCopy) -> None:
        metrics.shadow_dropped.labels(version=copy.target.label).inc()

    def shadow_failed(copy: ShadowCopy, error: Exception) -> None:
        metrics.shadow_failures.labels(version=copy.target.label).inc()
        logger.warning("serve: shadow %s could not score a copy of %s's answers: %s", copy.target.label,
                       copy.production, error)

    shadows = ShadowQueue(score_shadow, shadow_dropped, shadow_failed) if settings.shadow else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        versions.start()
        if shadows is not None:
            shadows.start()
        yield
        if shadows is not None:
            await shadows.close()
        await versions.close()
        if log is not None:
            log.close()

    docs = DOCS_PATHS if settings.docs else dict.fromkeys(DOCS_PATHS)
    what = f"{settings.model} from {redact_url(settings.registry or '')}" if versions.registered \
        else first.model.path.name
    app = FastAPI(title="visiontrain", summary=f"predictions from {what}", lifespan=lifespan, **docs)
    if token is not None:
        app.add_middleware(BearerAuth, token=token, open_paths=OPEN_PATHS)
    if settings.cors_origins:  # added last: outermost, so browsers' preflight requests need no token
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["authorization", "content-type"],
                           expose_headers=[VERSION_HEADER])
    app.add_middleware(RequestMetrics, metrics=metrics)  # outermost: 401s and CORS answers are counted too

    def watch(deployed: Deployed, inputs: dict[str, Any], predictions: list[dict[str, Any]],
              rejected: int = 0) -> None:
        """Feed ``deployed``'s drift window; publish each one finished, and log a warning when it drifted."""
        if deployed.drift is None:
            return
        outputs = prediction_outputs(predictions) if predictions else None
        for window in deployed.drift.add(inputs, outputs, rejected):
            metrics.drift(window)
            if window.alert:
                logger.warning("visiontrain serve: %s", window.describe())

    @app.exception_handler(ClientError)
    async def client_error(_: Request, error: ClientError) -> JSONResponse:
        # rows or files refused, each listed: counted in production's window
        watch(versions.routing.production, {}, [], rejected=len(error.extra.get("rejected", ())))
        return JSONResponse({"detail": error.detail, **error.extra}, status_code=error.status_code)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return versions.health()

    @app.get("/metadata")
    async def metadata() -> dict[str, Any]:
        limits = ("max_batch_size", "max_wait_ms", "max_request_mb", "max_rows", "max_images",
                  "max_image_pixels", "max_request_pixels", "read_timeout_s")
        return {**versions.describe(), "server": {**{key: getattr(settings, key) for key in limits},
                                                  "authentication": "bearer" if token else "none"}}

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        content, content_type = metrics.exposition()
        return Response(content, media_type=content_type)

    @app.post("/predict")
    async def predict(request: Request, response: Response) -> dict[str, Any]:
        wanted = "multipart/form-data" if is_image else "application/json"
        given = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if given != wanted:
            what = "image files as multipart/form-data (field `files`)" if is_image else \
                'JSON {"rows": [{column: value, ...}]} as application/json'
            raise HTTPException(415, f"content type {given[:80] or '(none)'} is not accepted: "
                                f"this model takes {what}")
        key = request.headers.get(sticky_header) if sticky_header else None
        with versions.routing.lease() as routing:  # the versions this request started with, held to its answer
            body = await read_body(request, settings.max_request_bytes, settings.read_timeout_s)
            if is_image:
                answered = [await _answer_images(request, body, routing.choose(key), settings, decoding)]
            else:
                answered = await _answer_rows(body, routing, key, settings.max_rows)
            for part in answered:
                if part.deployed is routing.production:
                    watch(part.deployed, part.drift_inputs, part.results)
                role = routing.role(part.deployed) if versions.registered else None
                if versions.registered:
                    metrics.routed_inputs(part.deployed.label, role, len(part.results))
                if log is not None:
                    log.write(part.logged, part.deployed.label, role)
                if shadows is not None and (target := routing.shadow_of(part.deployed)) is not None:
                    shadows.offer(ShadowCopy(target, _shadow_payload(part, target), part.results,
                                             part.deployed.label))
        labels = [part.deployed.label for part in answered]
        response.headers[VERSION_HEADER] = ", ".join(labels)
        if not versions.registered:
            return {"model_version": labels[0], "predictions": answered[0].results}
        predictions: list[dict[str, Any]] = [{}] * sum(len(part.positions) for part in answered)
        for part in answered:
            for position, result in zip(part.positions, part.results):
                predictions[position] = {**result, "model_version": part.deployed.label}
        single = answered[0].deployed if len(answered) == 1 else None
        return {"model_version": single.label if single else "mixed",
                "model_sha256": single.sha256 if single else None, "predictions": predictions}

    return app


def _decision(result: dict[str, Any]) -> Any:
    """What a shadow comparison compares: a classifier's label (tables) or top1 (images); None for regression."""
    return result.get("label", result.get("top1"))


def _shadow_payload(part: Answered, target: Deployed) -> Any:
    """The copy a shadow scores: the rows, or the uploads with their pixels when the target preprocesses alike."""
    if not part.deployed.is_image:
        return part.payload
    uploads, pixels, stats = part.payload
    return (uploads, pixels, stats) if target.image_spec == part.deployed.image_spec else (uploads, None, None)


async def _answer_images(request: Request, body: bytes, deployed: Deployed, settings: ServeOptions,
                         decoding: asyncio.Semaphore) -> Answered:
    """Every file of the request, scored by ``deployed`` (one version answers a whole image request)."""
    uploads = await _uploads(request, body, settings)
    async with decoding:
        pixels, stats = await run_in_threadpool(_prepare_images, uploads, deployed.image_spec, deployed.lookup,
                                                settings)
    predictions, logged = await _predict_images(uploads, pixels, stats, deployed.batcher)
    inputs = {name: [stat[name] for stat in stats] for name in IMAGE_STATISTICS}
    return Answered(deployed, list(range(len(uploads))), predictions, logged, inputs, (uploads, pixels, stats))


async def _answer_rows(body: bytes, routing: Routing, key: str | None, max_rows: int) -> list[Answered]:
    """The rows of the request, grouped by the version each is routed to, each group cleansed by its version's
    rules and scored on its batcher (the groups at once); a 422 listing every unusable row first."""
    rows, problems = table_rows(parse_json(body), routing.production.table_spec, max_rows)
    groups = _route_rows(rows, routing, key)
    prepared = []
    for deployed, positions in groups:
        inputs = prepare_rows([rows[position] for position in positions], deployed.table_spec)
        for index, reason in inputs.rejects.items():
            position = positions[index]
            problems[position] = f"{problems[position]}; {reason}" if position in problems else reason
        prepared.append(inputs)
    if problems:
        raise rejected_rows(problems)
    scored = await asyncio.gather(*(deployed.batcher.submit(inputs.feeds(), len(positions))
                                    for (deployed, positions), inputs in zip(groups, prepared)))
    answered = []
    for (deployed, positions), inputs, results in zip(groups, prepared, scored):
        given = [rows[position] for position in positions]
        answered.append(Answered(deployed, positions, results, list(zip(given, results)), inputs.values, given))
    return answered


def _route_rows(rows: list[dict[str, Any]], routing: Routing, key: str | None) -> list[tuple[Deployed, list[int]]]:
    """(version, row positions) for each version that gets rows, production first: per row by a field sticky
    key (rows without it share one draw), else the whole request by the header key or one draw."""
    everything = list(range(len(rows)))
    sticky = routing.sticky
    if not routing.splits or sticky is None or sticky.source != "field":
        return [(routing.choose(key), everything)]
    groups: dict[Deployed, list[int]] = {}
    unkeyed: Deployed | None = None
    for position, row in enumerate(rows):
        value = row.get(sticky.name)
        if value is None or str(value).strip() == "":
            unkeyed = unkeyed or routing.choose(None)
            target = unkeyed
        else:
            target = routing.choose(str(value).strip())
        groups.setdefault(target, []).append(position)
    return sorted(groups.items(), key=lambda group: group[0] is not routing.production)


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
