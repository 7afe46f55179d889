"""One model version ready to answer: its onnxruntime session, its own batcher, its input rules, its drift window.

`visiontrain serve model=<file>` serves one of these; `serve registry=...` several at once (the production and
candidate aliases' versions, :mod:`visiontrain.deploy.rollout`), each with its own batcher so that versions never
share a model call. A request holds a *lease* on the versions it may use (:meth:`Deployed.acquire`), and a
version that routing no longer references is closed only once no request holds it.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from visiontrain.config.commands import ServeOptions
from visiontrain.core.image_preprocess import ImageSpec
from visiontrain.deploy.batcher import Batcher
from visiontrain.deploy.table_input import TableSpec
from visiontrain.errors import ConfigError
from visiontrain.inference.onnx_model import IMAGE, OnnxModel
from visiontrain.monitoring.rolling import RollingDrift


BACKGROUND_NICENESS = 19  # the lowest priority: a shadow's model calls get only the cores answers leave idle


class Deployed:
    """``model`` served as ``label`` (``sha256:<hex>`` for a file, ``churn:v3`` for a registered version).

    ``on_scored(inputs, seconds)`` is told of every model call (the metrics). Nothing runs until :meth:`start`
    (inside the server's event loop); :meth:`close` stops the batcher once the last lease is released.
    """

    def __init__(self, model: OnnxModel, label: str, settings: ServeOptions,
                 on_scored: Callable[[int, float], None] | None = None, number: int | None = None,
                 background: bool = False) -> None:
        """``background``: this version only scores shadow copies, on a lowest-priority thread (see
        :meth:`visiontrain.deploy.rollout.Rollout`), so it uses only the CPU the answers leave idle."""
        self.model, self.label, self.number = model, label, number  # number: the registry's version number
        self.background = background
        self.is_image = model.kind == IMAGE
        runner = _image_runner(model, settings) if self.is_image else _table_runner(model, settings)
        self.batcher: Batcher = Batcher(runner, settings.max_batch_size, settings.max_wait_ms, on_scored=on_scored,
                                        nice=BACKGROUND_NICENESS if background else 0)
        self.image_spec = ImageSpec.from_metadata(model.metadata.as_dict()) if self.is_image else None
        self.lookup = self.image_spec.lookup_table() if self.image_spec else None
        self.table_spec = None if self.is_image else TableSpec.from_metadata(model.metadata, model.input_columns())
        self.drift = rolling_drift(model, settings.drift_window)
        self.in_flight = 0  # requests (and shadow copies) holding a lease on this version
        self.retired = False  # routing no longer references it: closed once in_flight is 0
        self.started = self.closed = False

    def __repr__(self) -> str:
        return f"Deployed({self.label!r}, in_flight={self.in_flight}, retired={self.retired})"

    @property
    def sha256(self) -> str:
        return self.model.version

    def acquire(self) -> None:
        """A request (or a shadow copy) will use this version: it is not closed before :meth:`release`."""
        if self.closed:
            raise RuntimeError(f"{self.label} was closed: a routing that still references it was used")
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1

    def start(self) -> None:
        """Start the batcher (in the server's event loop); once."""
        if not self.started:
            self.batcher.start()
            self.started = True

    async def close(self, force: bool = False) -> None:
        """Stop the batcher: once nothing holds a lease, or (``force``) because the server is stopping."""
        if self.in_flight and not force:
            raise RuntimeError(f"{self.label} is closed with {self.in_flight} requests still using it")
        if not self.closed:
            self.closed = True
            await self.batcher.close()

    def describe(self) -> dict[str, Any]:
        """What /health lists per version: label, sha256, leases and batch statistics."""
        return {"version": self.label, "sha256": self.sha256, "in_flight": self.in_flight,
                "background": self.background, "providers": self.model.providers, **self.batcher.stats.as_dict()}


def rolling_drift(model: OnnxModel, window: int) -> RollingDrift | None:
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


def _image_runner(model: OnnxModel, settings: ServeOptions) -> Callable[[list[np.ndarray]], list[list[dict]]]:
    """Payloads are [k, 3, H, W] arrays, one per request; one model call per ``max_batch_size`` images."""
    def run(payloads: list[np.ndarray]) -> list[list[dict[str, Any]]]:
        pixels = payloads[0] if len(payloads) == 1 else np.concatenate(payloads)
        results: list[dict[str, Any]] = []
        for start in range(0, len(pixels), settings.max_batch_size):
            results.extend(model.classify(pixels[start:start + settings.max_batch_size], settings.top_k))
        return _split(results, [len(p) for p in payloads])
    return run


def _table_runner(model: OnnxModel, settings: ServeOptions
                  ) -> Callable[[list[dict[str, np.ndarray]]], list[list[dict]]]:
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
