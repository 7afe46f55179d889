"""An exported ONNX file as a predictor: session, decoded metadata, the task it solves, batched calls.

Works for both kinds `visiontrain train` writes: image classifiers (``image`` in; ``logits``,
``probabilities`` out) and tables (one [N, 1] input per raw column; ``probability`` + ``label`` or
``prediction`` out). What the file is comes from its metadata, read by :class:`ModelMetadata`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np
import onnxruntime as ort

from visiontrain.core.files import sha256_of_file
from visiontrain.core.model_metadata import ModelMetadata
from visiontrain.core.providers import CPU_ONLY, check_session, choose_providers
from visiontrain.core.providers import describe as describe_providers
from visiontrain.errors import MetadataError, ModelError

if TYPE_CHECKING:
    from visiontrain.core.image_decode import PixelLimit

IMAGE, TABLE = "image", "table"

if sys.version_info >= (3, 12):
    from itertools import batched
else:  # the recipe in the itertools documentation; drop it with Python 3.11
    from itertools import islice

    def batched(items: Iterable[Any], size: int) -> Iterator[tuple[Any, ...]]:
        """Consecutive tuples of at most ``size`` items, as ``itertools.batched`` of Python 3.12 yields."""
        if size < 1:
            raise ValueError("n must be at least one")
        iterator = iter(items)
        while chunk := tuple(islice(iterator, size)):
            yield chunk




class OnnxModel:
    """One onnxruntime session over ``path`` plus what its metadata says about inputs and outputs."""

    def __init__(self, path: str | Path, threads: int = 0, spin: bool = True, providers: str = "cpu") -> None:
        """``providers``: auto | cpu | cuda | tensorrt (see :mod:`visiontrain.core.providers`); the commands pass
        their ``providers`` option, and a caller without one (drift's reference) stays on the CPU."""
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise ModelError(f"{self.path} does not exist: pass a model.onnx written by `visiontrain train`")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        options.log_severity_level = 3
        if not spin:  # idle onnxruntime threads sleep instead of spinning: they share the CPU with a server
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = self._session(options, providers)
        check_session(self.session, providers)
        self.providers: list[str] = list(self.session.get_providers())  # what the session uses, not what was asked
        self.providers_line = describe_providers(self.session, providers)
        try:
            self.metadata = ModelMetadata.read(self.session)
        except MetadataError as error:
            raise ModelError(f"{self.path}: {error}") from None
        self.input_names = [node.name for node in self.session.get_inputs()]
        self.output_names = [node.name for node in self.session.get_outputs()]
        self.kind = IMAGE if self.metadata.is_image else TABLE
        self._check_outputs()
        self.version = sha256_of_file(self.path)  # identical bytes, identical predictions
        self.class_names: list[str] = self.metadata.class_names

    def _session(self, options: ort.SessionOptions, choice: str) -> ort.InferenceSession:
        """The session on the providers ``choice`` asks for; under ``auto``, a GPU session that fails to start
        (rather than falling back by itself) is retried on the CPU."""
        wanted = choose_providers(choice)
        attempts = [wanted, list(CPU_ONLY)] if choice == "auto" and wanted != list(CPU_ONLY) else [wanted]
        failures: list[Exception] = []
        for providers in attempts:
            try:
                return ort.InferenceSession(str(self.path), options, providers=providers)
            except Exception as error:  # noqa: BLE001 - onnxruntime raises its own error classes
                failures.append(error)
        raise ModelError(f"{self.path} is not a loadable ONNX model: {failures[-1]}") from None

    def _check_outputs(self) -> None:
        """The outputs ``classify`` and ``score`` read must be there: a clear error now, not a KeyError later."""
        needed = "probabilities" if self.kind == IMAGE else "prediction" if self.is_regression else "probability"
        if needed not in self.output_names:
            what = "an image model" if self.kind == IMAGE else f"a {self.metadata.task} model"
            raise ModelError(f"{self.path}: {what} must output `{needed}` (it outputs "
                             f"{', '.join(self.output_names)}): re-export it with `visiontrain export`")

    @property
    def is_regression(self) -> bool:
        return self.metadata.is_regression

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One onnxruntime call; outputs by name (onnxruntime releases the GIL, so threads overlap)."""
        return dict(zip(self.output_names, self.session.run(None, feeds)))

    def describe(self) -> dict[str, Any]:
        """What `GET /metadata` and the predict report show: task, classes, inputs, version, source metric."""
        info: dict[str, Any] = {"task": self.metadata.task, "model_file": self.path.name,
                                "model_version": f"sha256:{self.version}",
                                "metric": self.metadata.metric, "outputs": self.output_names,
                                "providers": self.providers}
        if self.kind == IMAGE:
            keys = ("class_names", "input_size", "mean", "std", "resize_to", "crop", "interpolation",
                    "backbone")
            info.update({key: getattr(self.metadata, key) for key in keys})
            info["input"] = "multipart/form-data image file(s), field `files`"
        else:
            keys = ("target", "positive_label", "class_names", "threshold")
            info.update({key: getattr(self.metadata, key) for key in keys})
            info["input_columns"] = self.input_columns()
            info["input"] = 'application/json {"rows": [{column: value, ...}, ...]}'
        return info

    def input_columns(self) -> dict[str, str]:
        """Column name -> "float" | "string", from the metadata or else from the graph's input types."""
        declared = self.metadata.input_columns
        if isinstance(declared, dict) and declared:
            return {str(k): str(v) for k, v in declared.items()}
        return {node.name: "string" if node.type == "tensor(string)" else "float"
                for node in self.session.get_inputs()}

    # --- images -----------------------------------------------------------------------------------------

    def classify(self, pixels: np.ndarray, top_k: int = 5) -> list[dict[str, Any]]:
        """[N, 3, H, W] float32 -> per image the top-k classes: ``top1``, ``top1_probability``, ``top2``..."""
        probabilities = self.run({self.input_names[0]: pixels})["probabilities"]
        k = max(1, min(int(top_k), probabilities.shape[1]))
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        names = self.class_names or [str(i) for i in range(probabilities.shape[1])]
        results = []
        for row, indices in zip(probabilities, order):
            result: dict[str, Any] = {}
            for rank, index in enumerate(indices, start=1):
                result[f"top{rank}"] = names[int(index)]
                result[f"top{rank}_probability"] = float(row[int(index)])
            results.append(result)
        return results

    def predict_images(self, sources: Sequence[str | Path | bytes], top_k: int = 5, batch_size: int = 32,
                       limit: PixelLimit | None = None) -> list[dict[str, Any]]:
        """Decode, preprocess and classify ``sources`` (all must be readable images within ``limit``, default
        50 M pixels; see ImageRejected)."""
        from visiontrain.core.image_decode import PixelLimit
        from visiontrain.core.image_preprocess import ImageSpec, model_input

        limit = limit or PixelLimit()
        spec = ImageSpec.from_metadata(self.metadata.as_dict())
        table = spec.lookup_table()
        results: list[dict[str, Any]] = []
        for chunk in batched(sources, max(1, int(batch_size))):
            pixels = np.stack([model_input(source, spec, table, limit=limit) for source in chunk])
            results.extend(self.classify(pixels, top_k))
        return results

    # --- tables -----------------------------------------------------------------------------------------

    def score(self, feeds: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        """Raw-column feeds -> per row ``probability`` + ``label`` text, or ``prediction`` for regression."""
        outputs = self.run(feeds)
        if self.is_regression:
            return [{"prediction": float(value)} for value in outputs["prediction"]]
        positive = str(self.metadata.positive_label if self.metadata.positive_label is not None else "1")
        negative = next((name for name in self.class_names if name != positive), f"not {positive}")
        labels = outputs.get("label")
        if labels is None:
            threshold = float(self.metadata.threshold if self.metadata.threshold is not None else 0.5)
            labels = (outputs["probability"] >= threshold).astype(np.int64)
        return [{"probability": float(p), "label": positive if int(flag) == 1 else negative}
                for p, flag in zip(outputs["probability"], labels)]


def open_model(path: Any, threads: int = 0, spin: bool = True, providers: str = "cpu") -> OnnxModel:
    """The model named by the ``model`` config key on the ``providers`` it names, or a ConfigError saying what is
    wrong with either."""
    from visiontrain.errors import ConfigError

    if not path:
        raise ConfigError("model", "is required", "model=outputs/<experiment>/runs/<time>/model.onnx")
    try:
        return OnnxModel(str(path), threads=threads, spin=spin, providers=providers)
    except ModelError as error:
        raise ConfigError("model", str(error), "model=<a model.onnx from `visiontrain train`>") from None
