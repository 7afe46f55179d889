"""Drift on live traffic: tumbling windows of ``window`` scored inputs, each compared with the reference.

A window is judged by :func:`visiontrain.monitoring.drift.compare`, the code ``visiontrain drift`` runs, on the
values the model was fed: for a table, the cleansed columns of the scored rows (``ModelInputs.values`` from
:func:`visiontrain.deploy.table_input.prepare_rows`, as :func:`visiontrain.monitoring.current.table_inputs`
produces them for a file); for images, :func:`visiontrain.core.image_statistics.image_statistics` per image.
``serve`` and ``stream`` feed it after each scored request or batch, and turn a window whose measures crossed a
threshold into an alert (a log line, metrics, a message on the stream's alert topic).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

from visiontrain.monitoring.drift import Thresholds, compare


@dataclass(frozen=True)
class WindowResult:
    """One finished window: how many inputs were scored and rejected in it, and every measure of the compare."""

    index: int  # 0 for the first window
    inputs: int  # scored inputs compared
    rejected: int  # inputs refused (unparsable, invalid) while the window filled
    drifted: tuple[str, ...]  # features (and ``output: <name>``) that crossed a threshold
    psi: dict[str, float]
    ks_statistic: dict[str, float] = field(default_factory=dict)  # numeric features only
    ks_pvalue: dict[str, float] = field(default_factory=dict)
    missing_features: tuple[str, ...] = ()  # reference features the inputs never carried

    @property
    def alert(self) -> bool:
        return bool(self.drifted)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values, for an alert message or a log."""
        return {**asdict(self), "drifted": list(self.drifted), "missing_features": list(self.missing_features),
                "alert": self.alert}

    def describe(self) -> str:
        """One log line: the window, its counts, and the drifted features with their PSI (or the largest PSI)."""
        counts = f"drift window {self.index} ({self.inputs} scored, {self.rejected} rejected)"
        if self.drifted:
            moved = ", ".join(f"{name} (PSI {self.psi[name]:.3f})" for name in self.drifted)
            return f"{counts}: DRIFT in {moved}"
        if not self.psi:
            return f"{counts}: no feature of the reference to compare"
        largest = max(self.psi, key=self.psi.__getitem__)
        return f"{counts}: no drift (largest PSI: {largest} {self.psi[largest]:.3f})"


class RollingDrift:
    """Collects scored inputs (and outputs) until ``window`` are in, then compares them and starts a new window.

    ``reference``: the ``reference_stats`` of the model (its ONNX metadata or the run's reference_stats.json).
    Not thread-safe: one caller (serve's event loop, the stream's consumer loop) feeds it.
    """

    def __init__(self, reference: Mapping[str, Any], window: int, thresholds: Thresholds = Thresholds()) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a whole number of inputs above 0, got {window!r}")
        if not isinstance(reference, Mapping) or not isinstance(reference.get("inputs"), Mapping):
            raise ValueError("reference must be a model's reference_stats (with `inputs`): the model carries none")
        self.reference = dict(reference)
        self.window = window
        self.thresholds = thresholds
        self.windows_done = 0
        self._inputs: dict[str, list[Any]] = {}
        self._outputs: dict[str, list[Any]] = {}
        self._count = 0
        self._rejected = 0

    def add(self, inputs: Mapping[str, Sequence[Any]], outputs: Mapping[str, Sequence[Any]] | None = None,
            rejected: int = 0) -> list[WindowResult]:
        """Add scored inputs (column -> one value per input) with their outputs; the windows this completed.

        ``rejected`` inputs count towards the window being filled; inputs beyond a window's end start the next.
        """
        count = _length(inputs, "inputs")
        if outputs and _length(outputs, "outputs") != count:
            raise ValueError(f"outputs hold {_length(outputs, 'outputs')} values per name for {count} inputs: "
                             "pass one output per scored input")
        if isinstance(rejected, bool) or not isinstance(rejected, int) or rejected < 0:
            raise ValueError(f"rejected must be a count of 0 or more, got {rejected!r}")
        self._rejected += rejected
        finished: list[WindowResult] = []
        start = 0
        while start < count:
            take = min(self.window - self._count, count - start)
            _extend(self._inputs, inputs, start, take)
            if outputs:
                _extend(self._outputs, outputs, start, take)
            self._count += take
            start += take
            if self._count == self.window:
                finished.append(self._close())
        return finished

    def _close(self) -> WindowResult:
        """Compare the full window, then empty it (the next window starts from nothing)."""
        compared = compare(self.reference, self._inputs, self._outputs or None, self.thresholds)
        rows = compared["features"] + compared["outputs"]
        result = WindowResult(
            index=self.windows_done, inputs=self._count, rejected=self._rejected,
            drifted=tuple(compared["drifted"]), psi={row["feature"]: row["psi"] for row in rows},
            ks_statistic={row["feature"]: row["ks_statistic"] for row in rows if "ks_statistic" in row},
            ks_pvalue={row["feature"]: row["ks_pvalue"] for row in rows if "ks_pvalue" in row},
            missing_features=tuple(compared["missing_features"]))
        self.windows_done += 1
        self._inputs, self._outputs, self._count, self._rejected = {}, {}, 0, 0
        return result


def _length(columns: Mapping[str, Sequence[Any]], what: str) -> int:
    """The common length of the columns (0 for none); a ValueError when they differ."""
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"the {what} columns differ in length ({lengths}): pass one value per input in each")
    return next(iter(lengths.values()), 0)


def _extend(collected: dict[str, list[Any]], columns: Mapping[str, Sequence[Any]], start: int, take: int) -> None:
    for name, values in columns.items():
        collected.setdefault(name, []).extend(values[start:start + take])
